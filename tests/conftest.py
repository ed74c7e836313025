"""Fixtures shared by the whole suite: the app, its client, captured JSON log lines, and
migrated databases (SQLite always; PostgreSQL when its server binaries are installed). The
deployments that take minutes to start (a Docker engine, compose.yaml's stack, a host
booting the systemd unit) are session fixtures of the plugin tests/deploy/fixtures.py,
loaded below. What tests import lives in harness/ and tests/support/, never here.

Tests that need PostgreSQL, nginx or a Docker engine skip with a message saying what to
install, unless KIT_REQUIRE_SERVICES=1 (CI sets it), which turns the skip into a failure.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app import create_app
from chassis.database.sessions import Database
from chassis.settings import Settings
from harness import tempdirs
from harness.apps import records
from harness.postgres import PostgresServer, postgres_unavailable_reason
from harness.processes import Gunicorn
from harness.programs import require_service
from harness.proxy import nginx_unavailable_reason
from tests.support.flask_app import AppFactory, ClosingClient, LogReader, migrate

# Defined once for the whole session, whichever folder's tests ask first.
pytest_plugins = ["tests.deploy.fixtures"]


@pytest.fixture(autouse=True, scope="session")
def _ignore_env_file() -> Iterator[None]:
    """Leave a developer's `.env` out, here and in every process started with this
    environment: every entry point reads one (chassis/settings/declaring.py), and the suite
    tests what it sets, not what a checkout's file says. harness's base_env does the same."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("FLASK_SKIP_DOTENV", "1")
        yield


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Put the root logger back as it was: create_app() installs a handler on it."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def started() -> Iterator[list[Gunicorn]]:
    """gunicorn servers a test starts; any still running afterwards are killed."""
    servers: list[Gunicorn] = []
    yield servers
    for server in servers:
        if server.proc is not None and server.proc.poll() is None:
            server.stop(signal.SIGKILL)


@pytest.fixture(scope="session")
def requires_nginx() -> None:
    """Skip (or fail, under KIT_REQUIRE_SERVICES) unless nginx and envsubst are installed."""
    reason = nginx_unavailable_reason()
    if reason:
        require_service(reason)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server owned by this test session (stopped at the end), outside
    pytest's base temp folder, which other pytest runs re-permission (harness/tempdirs.py)."""
    reason = postgres_unavailable_reason()
    if reason:
        require_service(reason)
    server = PostgresServer(tempdirs.for_other_users("postgres"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres: PostgresServer) -> str:
    """A migrated PostgreSQL database shared by the session's transactional tests."""
    url = postgres.create_database("kit_test")
    migrate(url)
    records.create_tables(url)
    return url


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite database file shared by the session's transactional tests."""
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'kit.db'}"
    migrate(url)
    records.create_tables(url)
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each migrated backend in turn: the same test runs on SQLite and on PostgreSQL."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url


@pytest.fixture
def log_stream() -> io.StringIO:
    """Where the app's log handler writes during a test, instead of stdout."""
    return io.StringIO()


@pytest.fixture
def make_app(log_stream: io.StringIO, tmp_path: Path) -> AppFactory:
    """Return a function building an app from Settings keywords (test env, JSON logs)."""

    def make(**overrides: Any) -> Flask:
        values: dict[str, Any] = {
            "app_env": "test",
            "log_format": "json",
            "log_level": "DEBUG",
            "database_url": f"sqlite:///{tmp_path / 'app.db'}",
        }
        # The app's handler writes to whatever sys.stdout is when it is built.
        with contextlib.redirect_stdout(log_stream):
            app = create_app(Settings(**(values | overrides)))
        # The chassis's tests need a database resource that is not the service's example.
        app.register_blueprint(records.bp)
        app.test_client_class = ClosingClient
        return app

    return make


@pytest.fixture
def app(make_app: AppFactory) -> Flask:
    """The application with test settings and its log lines captured in `log_stream`."""
    return make_app()


@pytest.fixture
def db_app(make_app: AppFactory, database_url: str) -> Iterator[Flask]:
    """The app on a migrated backend, each test inside a transaction rolled back after it.

    The app's sessions join the outer transaction through savepoints, so a view's commit()
    commits only its savepoint and nothing outlives the test.
    """
    app = make_app(database_url=database_url)
    db: Database = app.extensions["db"]
    connection = db.engine.connect()
    transaction = connection.begin()
    db.session.configure(bind=connection, join_transaction_mode="create_savepoint")
    yield app
    db.session.remove()
    transaction.rollback()
    connection.close()
    db.engine.dispose()


@pytest.fixture
def db_client(db_app: Flask) -> FlaskClient:
    """Test client of `db_app`."""
    return db_app.test_client()


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
