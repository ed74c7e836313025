"""Fixtures shared by the whole suite: the app, its client, captured JSON log lines."""

from __future__ import annotations

import contextlib
import io
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app import create_app
from app.settings import Settings

LogReader = Callable[[], list[dict[str, Any]]]


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Put the root logger back as it was: create_app() installs a handler on it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


class ClosingClient(FlaskClient):
    """A test client that reads and closes every response, as a real WSGI server does.

    Closing is when the tracking id middleware resets its context variable; Flask's default
    client leaves responses open, which would leak one test's id into the next.
    """

    def open(self, *args: Any, buffered: bool = True, **kwargs: Any) -> TestResponse:
        return super().open(*args, buffered=buffered, **kwargs)


AppFactory = Callable[..., Flask]


@pytest.fixture
def log_stream() -> io.StringIO:
    """Where the app's log handler writes during a test, instead of stdout."""
    return io.StringIO()


@pytest.fixture
def make_app(log_stream: io.StringIO) -> AppFactory:
    """Return a function building an app from Settings keywords (test env, JSON logs)."""

    def make(**overrides: Any) -> Flask:
        values: dict[str, Any] = {"app_env": "test", "log_format": "json", "log_level": "DEBUG"}
        # The app's handler writes to whatever sys.stdout is when it is built.
        with contextlib.redirect_stdout(log_stream):
            app = create_app(Settings(**(values | overrides)))
        app.test_client_class = ClosingClient
        return app

    return make


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    """The application with test settings and its log lines captured in `log_stream`."""
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """Flask's test client for `app`."""
    return app.test_client()


@pytest.fixture
def read_logs(log_stream: io.StringIO) -> LogReader:
    """Return a function that parses each log line written since its last call as JSON."""

    def read() -> list[dict[str, Any]]:
        out = log_stream.getvalue()
        log_stream.seek(0)
        log_stream.truncate()
        # Split on "\n" only: that is what a log shipper splits on; U+2028 stays inside a line.
        return [json.loads(line) for line in out.split("\n") if line]

    return read
