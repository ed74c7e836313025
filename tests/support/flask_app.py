"""The app under test, as the fixtures hand it out: the type of `make_app` and `read_logs`,
the client class every test app uses, and `migrate`, for the databases tests create."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from alembic import command
from alembic.config import Config
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from chassis.settings import Settings
from harness.processes import ROOT

# `make_app(**settings)`: an app built from Settings keywords on top of the test defaults.
AppFactory = Callable[..., Flask]
# `read_logs()`: the JSON log lines the app wrote since the last call, parsed.
LogReader = Callable[[], list[dict[str, Any]]]


class ClosingClient(FlaskClient):
    """A test client that reads and closes every response, as a real WSGI server does.

    Closing is when the tracking id middleware resets its context variable; Flask's default
    client leaves responses open, which would leak one test's id into the next.
    """

    def open(self, *args: Any, buffered: bool = True, **kwargs: Any) -> TestResponse:
        return super().open(*args, buffered=buffered, **kwargs)


def migrate(database_url: str) -> None:
    """Bring the database at `database_url` to the latest migration, as `make migrate` does."""
    config = Config(toml_file=str(ROOT / "pyproject.toml"))
    config.attributes["settings"] = Settings(app_env="test", database_url=database_url)
    command.upgrade(config, "heads")
