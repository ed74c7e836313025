"""chassis/serving/probe.py run as Docker runs the image's HEALTHCHECK: a separate process
probing a real server on 127.0.0.1, answering with its exit status and one line."""

from __future__ import annotations

import contextlib
import http.server
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from chassis.serving.probe import DEFAULT_PORT, TIMEOUT_S
from chassis.settings import ServerSettings
from harness.processes import ROOT, Gunicorn, base_env, free_port

Server = Callable[[], AbstractContextManager[int]]


def test_the_probe_defaults_to_the_declared_port() -> None:
    """The probe reads PORT itself (it imports only the standard library, to stay cheap), so
    its default must be the one ServerSettings declares."""
    assert int(DEFAULT_PORT) == ServerSettings.model_fields["port"].default


def healthcheck(port: int | str | None) -> subprocess.CompletedProcess[str]:
    """Run `python -m chassis.serving.probe` with PORT set to `port` (None: unset)."""
    env = base_env() if port is None else base_env(PORT=str(port))
    return subprocess.run(
        [sys.executable, "-m", "chassis.serving.probe"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S + 10,
        check=False,
    )


@contextlib.contextmanager
def answering(status: int, port: int = 0) -> Iterator[int]:
    """A real HTTP server on 127.0.0.1 that answers every GET with `status`; yields its port."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            """Keep the test output quiet."""

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@contextlib.contextmanager
def never_answering() -> Iterator[int]:
    """A socket whose backlog accepts connections that nobody ever answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield int(sock.getsockname()[1])


@contextlib.contextmanager
def nothing_listening() -> Iterator[int]:
    """A port nothing listens on."""
    yield free_port()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Gunicorn]:
    """The kit under gunicorn with its own configuration, as the image serves it."""
    server = Gunicorn(tmp_path, base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}"))
    server.start()
    yield server
    server.stop()


def test_exits_0_while_gunicorn_serves_healthz(server: Gunicorn) -> None:
    """A running kit server is healthy: exit 0 and nothing printed."""
    result = healthcheck(server.port)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_exits_1_once_gunicorn_has_stopped(server: Gunicorn) -> None:
    """After SIGTERM has stopped the server the check fails, naming the refused URL."""
    assert server.stop() == 0
    result = healthcheck(server.port)
    assert result.returncode == 1
    assert result.stderr == (
        f"unhealthy: GET http://127.0.0.1:{server.port}/healthz failed: "
        "[Errno 111] Connection refused\n"
    )


@pytest.mark.parametrize(
    ("serve", "problem"),
    [
        pytest.param(nothing_listening, "failed: [Errno 111] Connection refused", id="refused"),
        pytest.param(lambda: answering(503), "answered HTTP 503", id="503"),
        pytest.param(lambda: answering(500), "answered HTTP 500", id="500"),
        pytest.param(lambda: answering(404), "answered HTTP 404", id="404"),
        pytest.param(never_answering, "failed: timed out", id="never-answers"),
    ],
)
def test_anything_but_200_exits_1_with_one_line(serve: Server, problem: str) -> None:
    """Every way of not answering 200 is exit 1 and one stderr line saying what happened."""
    with serve() as port:
        begun = time.monotonic()
        result = healthcheck(port)
        elapsed = time.monotonic() - begun
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == f"unhealthy: GET http://127.0.0.1:{port}/healthz {problem}\n"
    # A hung server is given TIMEOUT_S, not Docker's whole --timeout.
    assert elapsed < TIMEOUT_S + 3


def test_port_defaults_to_8000() -> None:
    """Without PORT the check probes 8000, the image's GUNICORN_BIND port."""
    try:
        with answering(200, port=8000):
            result = healthcheck(None)
    except OSError as exc:  # only binding can raise it: the check runs in a subprocess
        pytest.skip(f"port 8000 is busy on this machine ({exc}); nothing can stand in for the app")
    assert (result.returncode, result.stderr) == (0, "")


def test_a_port_that_is_not_a_number_exits_1_naming_port() -> None:
    """A malformed PORT is reported by name rather than as a URL error."""
    result = healthcheck("eighty")
    assert result.returncode == 1
    assert result.stderr == "unhealthy: PORT: must be a port number (got 'eighty')\n"


def test_health_check_imports_only_the_standard_library() -> None:
    """Run as the image runs it, the check imports no package of the kit's but its own, and
    neither Flask, SQLAlchemy nor pydantic."""
    code = (
        "import runpy, sys; runpy.run_module('chassis.serving.probe', run_name='probe'); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'app', 'flask', 'sqlalchemy', 'pydantic', 'werkzeug'} "
        "or m.startswith('chassis.') and m != 'chassis.serving.probe' "
        "and m != 'chassis.serving'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
