"""`gunicorn -c gunicorn.conf.py` serves the app, and refuses bad settings before forking."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.processes import ROOT, Gunicorn, base_env, get


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Gunicorn]:
    """A real gunicorn with the kit's configuration and no environment of its own."""
    env = base_env(
        WEB_CONCURRENCY="2", LOG_FORMAT="json", DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}"
    )
    gunicorn = Gunicorn(tmp_path, env).start()
    yield gunicorn
    gunicorn.stop()


def test_serves_healthz_in_the_envelope(server: Gunicorn) -> None:
    """The default configuration answers /healthz with 200 and the envelope."""
    status, headers, body = get(server.port, "/healthz", {"X-Tracking-ID": "gc-1"})
    assert status == 200
    assert headers["X-Tracking-ID"] == "gc-1"
    assert json.loads(body) == {
        "code": 200,
        "msg": "ok",
        "data": {"status": "alive"},
        "tracking_id": "gc-1",
    }


def test_sigterm_stops_the_master_cleanly(server: Gunicorn) -> None:
    """SIGTERM ends the master with status 0."""
    assert server.stop() == 0


def test_production_without_secret_key_refuses_to_start(tmp_path: Path) -> None:
    """The master exits before forking, with one line naming SECRET_KEY."""
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        cwd=ROOT,
        env=base_env(APP_ENV="production"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "configuration error: SECRET_KEY: is required when APP_ENV=production; generate one "
        "with `python -c 'import secrets; print(secrets.token_hex(32))'`"
    ]
