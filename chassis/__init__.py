"""The chassis: the reusable layer every service built from this template shares.

Its folders are its layers; each imports only from those below it:

    serving/        gunicorn's hooks and logger, the gevent worker and server, the
                    development server, the container's health probe
    web/            the Flask app (`web.app.build_app`), the envelope and its one writer,
                    errors, validation, operations and the API document, health
    scheduler/      jobs run once per scheduled time across every process
    database/       engine and sessions, the models' base, upsert, the chassis's migrations
    observability/  the tracking id, logging, metrics, tracing
    settings/       every environment variable, declared once

It never imports the service (the `app` package): the service builds its Flask app with
`build_app()`, then registers its own resources and jobs on it. This file imports nothing,
so `import chassis.settings` loads neither Flask nor SQLAlchemy.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    """`from chassis import build_app`, as services made before 0.3 wrote it: loaded on
    first use, never by importing the package."""
    if name == "build_app":
        from chassis.web.app import build_app

        return build_app
    raise AttributeError(f"module 'chassis' has no attribute {name!r}")
