"""Fixtures of the scheduler's real-process tests: a PostgreSQL database per test, and the
servers a test starts, stopped after it. The servers and the readers of what their jobs did
are in tests/support/scheduler_servers.py."""

from __future__ import annotations

import contextlib
import signal
import uuid
from collections.abc import Iterator

import pytest

from harness.postgres import PostgresServer
from harness.processes import Gunicorn
from tests.support.flask_app import migrate


@pytest.fixture
def pg_url(postgres: PostgresServer) -> Iterator[str]:
    """A migrated PostgreSQL database of this test's own, dropped afterwards."""
    name = f"scheduler_{uuid.uuid4().hex[:12]}"
    url = postgres.create_database(name)
    migrate(url)
    yield url
    postgres.drop_database(name)


@pytest.fixture
def started() -> Iterator[list[Gunicorn]]:
    """Servers a test starts; any still running afterwards get SIGTERM (then SIGKILL)."""
    servers: list[Gunicorn] = []
    yield servers
    for server in servers:
        if server.proc is not None and server.proc.poll() is None:
            with contextlib.suppress(AssertionError):
                server.stop(signal.SIGTERM, timeout=20)
