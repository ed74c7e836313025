"""The service: its resources and jobs, on the chassis (`chassis/`).

Each resource is a folder with its model, views and migration; it is registered below in
one line. `make resource name=widgets` writes one and its line; `make remove-example`
removes the example's (README: "Your own resources").
"""

from __future__ import annotations

from flask import Flask

from app import items
from chassis.settings import Settings, current_settings
from chassis.web.app import build_app


def create_app(settings: Settings | None = None) -> Flask:
    """Build the service from `settings` (default: this process's, read once)."""
    app = build_app(__name__, settings or current_settings())
    # The service's resources, one line each.
    app.register_blueprint(items.bp)
    return app
