"""One set of settings per process, and the app's.

A process reads its settings once: `current_settings()` reads the environment (over a
`.env` file, `Declared.from_env`) the first time and hands out that same object after. A
gunicorn worker inherits the master's, and under gevent sizes the pool for its greenlets
(`Settings.for_greenlets`) before the app is built; nothing is passed through `os.environ`.
Inside the app, `get_settings()` is the settings it was built with (beside `get_db()`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from chassis.settings.declarations import Settings

# The service's pyproject.toml: beside the chassis, in a checkout and in the image (/app).
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"

if TYPE_CHECKING:
    from flask import Flask

_current: Settings | None = None


def current_settings() -> Settings:
    """This process's settings: read from the environment the first time, then the same."""
    global _current
    if _current is None:
        _current = Settings.from_env()
    return _current


def use_settings(settings: Settings) -> None:
    """Make `settings` this process's (a gevent worker's pool size, before the app loads)."""
    global _current
    _current = settings


def get_settings(app: Flask | None = None) -> Settings:
    """The settings `app` (default: the current app) was built with."""
    if app is None:
        from flask import current_app  # only here: importing settings never loads Flask

        app = current_app
    settings: Settings = app.extensions["settings"]
    return settings


# Whether a process that started this one said it already (see below).
_development_secret_said = False


def say_development_secret(settings: Settings, say: Callable[[str], object]) -> None:
    """Say that SECRET_KEY is the fixed development key, unless a parent said it already.

    Once per process tree: a gunicorn master says it when ready, before it forks, and its
    workers inherit that it was said; the development server's reloader says it, and tells
    the process it starts to serve (`development_secret_said`)."""
    if settings.uses_development_secret and not _development_secret_said:
        say(f"SECRET_KEY is not set: using the fixed development key (APP_ENV={settings.app_env})")


def development_secret_said() -> None:
    """Record that this process, or the one that started it, said it: its apps stay silent."""
    global _development_secret_said
    _development_secret_said = True
