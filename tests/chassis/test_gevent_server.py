"""`chassis/serving/gevent_server.py` as a real process: the envelope, a database round trip,
concurrent slow requests in one process, cooperative PostgreSQL waits, graceful and bounded
stops, idle connections closed, and the access log fields of gunicorn's.

Every server listens on 127.0.0.1 and every wait is bounded.
"""

from __future__ import annotations

import http.client
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from chassis.serving.gevent_server import STOPPED_MID_REQUEST, listen_address
from harness.apps import records
from harness.processes import (
    PROBE,
    ROOT,
    Gunicorn,
    base_env,
    free_port,
    get,
    request,
    wait_until,
)
from tests.support.answers import ENVELOPE_HEADERS, header_names

SLEEPY = "harness.apps.sleepy:app"
T = TypeVar("T")


@dataclass
class GeventServer:
    """`python -m chassis.serving.gevent_server [app]` on a free loopback port, as `make serve-gevent`
    runs it."""

    log_dir: Path
    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20) -> GeventServer:
        """Start the server and return once /healthz answers 200."""
        env = {"GUNICORN_BIND": f"127.0.0.1:{self.port}", **self.env}
        cmd = [sys.executable, "-m", "chassis.serving.gevent_server", *self.args]
        # Files, not pipes: a chatty server can never block on a full pipe.
        with (
            (self.log_dir / "stdout.log").open("wb") as out,
            (self.log_dir / "stderr.log").open("wb") as err,
        ):
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err)

        def answered() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}:\n{self.output()}")
            try:
                return get(self.port, "/healthz", PROBE, timeout=1)[0] == 200
            except OSError:
                return False

        wait_until(answered, timeout, self.output)
        return self

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 10) -> int:
        """Send `sig` and return the exit status; fail if the server outlives `timeout`."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"still running {timeout}s after {sig.name}") from None

    def output(self) -> str:
        """Everything written to stdout and stderr so far."""
        return "".join(
            (self.log_dir / name).read_text(errors="replace")
            for name in ("stdout.log", "stderr.log")
        )

    def json_lines(self) -> list[dict[str, Any]]:
        """Every stdout line parsed as JSON, without wait_ready's probes."""
        text = (self.log_dir / "stdout.log").read_text()
        lines = [json.loads(line) for line in text.split("\n") if line.strip()]
        return [line for line in lines if line.get("tracking_id") != PROBE["X-Tracking-ID"]]


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., GeventServer]]:
    """Start a server with `args` and `env` on SQLite in tmp_path; kill it after the test."""
    servers: list[GeventServer] = []

    def start(*args: str, **env: str) -> GeventServer:
        values = {"LOG_FORMAT": "json", "DATABASE_URL": f"sqlite:///{tmp_path / 'app.db'}"}
        server = GeventServer(tmp_path, base_env(**(values | env)), list(args))
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        if server.proc is not None and server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()


def in_parallel(count: int, call: Callable[[int], T]) -> list[T]:
    """Run `call(0..count-1)` on `count` threads at once; return the results in order."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(call, range(count)))


def in_background(call: Callable[[], T]) -> tuple[threading.Thread, list[T | Exception]]:
    """Start `call` on a thread; its result (or exception) lands in the returned list."""
    outcome: list[T | Exception] = []

    def run() -> None:
        try:
            outcome.append(call())
        except Exception as exc:  # the client's view of a cut-off request
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def test_healthz_answers_the_envelope_with_the_tracking_id(
    serve: Callable[..., GeventServer],
) -> None:
    """The app gunicorn.conf.py names answers /healthz in the envelope, echoing the id."""
    server = serve()
    status, headers, body = get(server.port, "/healthz", {"X-Tracking-ID": "gevent-1"})
    assert status == 200
    assert headers["X-Tracking-ID"] == "gevent-1"
    assert json.loads(body) == {
        "code": 200,
        "msg": "ok",
        "data": {"status": "alive"},
        "tracking_id": "gevent-1",
    }
    assert server.stop() == 0
    assert "MonkeyPatchWarning" not in server.output()


def test_a_row_is_stored_and_read_back(tmp_path: Path, serve: Callable[..., GeventServer]) -> None:
    """POST a record then list it, on a SQLite file migrated as `make migrate` does (plus the
    tests' own table, harness/apps/records.py)."""
    database_url = f"sqlite:///{tmp_path / 'records.db'}"
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "heads"],
        cwd=ROOT,
        env=base_env(DATABASE_URL=database_url),
        check=True,
        capture_output=True,
        timeout=60,
    )
    records.create_tables(database_url)
    server = serve(SLEEPY, DATABASE_URL=database_url)
    status, _, body = request(
        server.port, "POST", "/test/records", json.dumps({"name": "x"}).encode()
    )
    assert status == 201
    record = json.loads(body)["data"]
    status, _, body = get(server.port, "/test/records")
    assert status == 200
    assert json.loads(body)["data"] == {"records": [record], "total": 1}
    assert record["name"] == "x"


def test_slow_requests_overlap_in_one_process(serve: Callable[..., GeventServer]) -> None:
    """10 requests that each sleep 0.5 s finish together, well under the 5 s of one by one."""
    server = serve(SLEEPY)
    begun = time.monotonic()
    statuses = in_parallel(10, lambda _: get(server.port, "/test/sleep?s=0.5")[0])
    elapsed = time.monotonic() - begun
    assert statuses == [200] * 10
    assert elapsed < 2.5  # one at a time: 5 s


def test_postgres_waits_overlap_with_a_pool_sized_to_the_connections(
    serve: Callable[..., GeventServer], postgres_url: str
) -> None:
    """psycogreen makes psycopg2 yield: 20 waits of 0.5 s in PostgreSQL take under 2 s, on
    a pool of GUNICORN_WORKER_CONNECTIONS connections with no overflow, as under gunicorn."""
    server = serve(SLEEPY, DATABASE_URL=postgres_url, GUNICORN_WORKER_CONNECTIONS="20")
    pool = json.loads(get(server.port, "/test/pool")[2])["data"]
    assert pool == {
        "size": 20,
        "overflow": 0,
        "settings_read_once": True,
        "environ": {"DB_POOL_SIZE": None, "DB_MAX_OVERFLOW": None},
    }
    begun = time.monotonic()
    statuses = in_parallel(20, lambda _: get(server.port, "/test/pg-sleep?s=0.5")[0])
    elapsed = time.monotonic() - begun
    assert statuses == [200] * 20
    assert elapsed < 2.0


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_lets_the_request_in_flight_finish_and_exits_0(
    serve: Callable[..., GeventServer], sig: signal.Signals
) -> None:
    """After the signal no connection is accepted, the request in flight still gets its
    200, and the server exits 0."""
    server = serve(SLEEPY)
    thread, outcome = in_background(lambda: get(server.port, "/test/sleep?s=1.5")[0])
    time.sleep(0.5)  # the request is sleeping in the app
    assert server.proc is not None
    server.proc.send_signal(sig)
    time.sleep(0.2)
    with pytest.raises(ConnectionRefusedError):
        get(server.port, "/healthz", timeout=2)
    thread.join(10)
    assert outcome == [200]
    assert server.stop(sig) == 0


def test_an_idle_keepalive_connection_does_not_delay_the_stop(
    serve: Callable[..., GeventServer],
) -> None:
    """A client keeping its connection open after its answer does not hold SIGTERM for the
    30 s graceful timeout: with nothing in flight the server exits at once."""
    server = serve()
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("GET", "/healthz")
    assert connection.getresponse().read()
    begun = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - begun < 2
    connection.close()


def test_a_request_past_the_graceful_timeout_is_cut_off(
    serve: Callable[..., GeventServer],
) -> None:
    """GUNICORN_GRACEFUL_TIMEOUT bounds the stop: a longer request is cut off with the 503
    envelope, the cut is logged, and the server still exits 0."""
    server = serve(SLEEPY, GUNICORN_GRACEFUL_TIMEOUT="1")
    headers = {"X-Tracking-ID": "cut-1"}
    thread, outcome = in_background(
        lambda: get(server.port, "/test/sleep?s=10", headers, timeout=15)
    )
    time.sleep(0.5)
    begun = time.monotonic()
    assert server.stop() == 0
    assert time.monotonic() - begun < 3
    thread.join(10)
    (answer,) = outcome
    assert not isinstance(answer, Exception), answer
    status, answer_headers, body = answer
    assert (status, answer_headers["X-Tracking-ID"]) == (503, "cut-1")
    # The envelope's own writer: the headers of every app answer (tests/chassis/test_envelope.py).
    assert header_names(answer_headers) == ENVELOPE_HEADERS
    assert json.loads(body) == {
        "code": 503,
        "msg": STOPPED_MID_REQUEST,
        "data": None,
        "tracking_id": "cut-1",
    }
    assert "stopped after 1s, cutting off requests still running: 1" in server.output()


def test_an_idle_connection_is_closed_after_the_keepalive(
    serve: Callable[..., GeventServer],
) -> None:
    """A connection that sends nothing is closed after GUNICORN_KEEPALIVE seconds."""
    server = serve(GUNICORN_KEEPALIVE="1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        begun = time.monotonic()
        assert sock.recv(1) == b""  # closed by the server
        assert 0.9 < time.monotonic() - begun < 3


def test_the_access_line_has_the_fields_of_gunicorns(
    tmp_path: Path, serve: Callable[..., GeventServer]
) -> None:
    """One JSON access line per request, with the same keys as gunicorn's access log, the
    request's tracking id and the body's length."""
    gunicorn_dir = tmp_path / "gunicorn"
    gunicorn_dir.mkdir()
    environ = base_env(LOG_FORMAT="json", DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}")
    gunicorn = Gunicorn(gunicorn_dir, environ | {"WEB_CONCURRENCY": "1"}).start()
    try:
        get(gunicorn.port, "/healthz", {"X-Tracking-ID": "access-1"})
    finally:
        assert gunicorn.stop() == 0
    (expected,) = [line for line in gunicorn.json_lines() if line["logger"] == "gunicorn.access"]

    server = serve()
    _, _, body = get(server.port, "/healthz", {"X-Tracking-ID": "access-1"})
    server.stop()
    (line,) = [line for line in server.json_lines() if line["logger"] == "gevent.access"]
    assert sorted(line) == sorted(expected)
    assert (line["status"], line["tracking_id"], line["bytes"]) == (200, "access-1", len(body))


@pytest.mark.parametrize(
    ("bind", "address"),
    [
        pytest.param("127.0.0.1:8000", ("127.0.0.1", 8000), id="ipv4"),
        pytest.param("[::1]:8001", ("::1", 8001), id="ipv6"),
        pytest.param("0.0.0.0:80", ("0.0.0.0", 80), id="any"),
        pytest.param("localhost:65535", ("localhost", 65535), id="name"),
    ],
)
def test_a_tcp_bind_is_split_into_host_and_port(bind: str, address: tuple[str, int]) -> None:
    """HOST:PORT and [IPV6]:PORT, as gunicorn writes them."""
    assert listen_address(bind) == address


@pytest.mark.parametrize(
    "bind",
    [
        pytest.param("unix:/run/kit.sock", id="unix-socket"),
        pytest.param("fd://3", id="file-descriptor"),
        pytest.param("127.0.0.1", id="no-port"),
        pytest.param("::1:8000", id="ipv6-without-brackets"),
        pytest.param(":8000", id="no-host"),
        pytest.param("127.0.0.1:0", id="port-0"),
        pytest.param("127.0.0.1:65536", id="port-too-big"),
    ],
)
def test_any_other_bind_exits_naming_the_variable(bind: str) -> None:
    """What is not a TCP HOST:PORT stops the server with one line naming GUNICORN_BIND."""
    with pytest.raises(SystemExit) as exited:
        listen_address(bind)
    assert str(exited.value) == (
        f"configuration error: GUNICORN_BIND: must be HOST:PORT or [IPV6]:PORT (got {bind!r})"
    )
