"""gunicorn.conf.py under real gunicorn processes, sync and gevent: cooperative database I/O,
graceful shutdown and reload, worker replacement, timeouts, JSON access logs, tracking ids.

Every server here listens on 127.0.0.1 and every load is bounded in count and time.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import NullPool, create_engine, text

from harness.apps.sleepy import POOL_VARIABLES
from harness.processes import (
    Gunicorn,
    Load,
    base_env,
    free_port,
    get,
    in_parallel,
    serve_test_app,
    wait_until,
)

WORKER_CLASSES = [pytest.param("sync", id="sync"), pytest.param("gevent", id="gevent")]


def worker_pids(server: Gunicorn) -> set[int]:
    """The master's current child processes."""
    assert server.proc is not None
    pid = server.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return {int(child) for child in children}


@pytest.mark.parametrize(
    ("worker_class", "limit"),
    [pytest.param("gevent", 2.0, id="gevent-under-2s"), pytest.param("sync", None, id="sync")],
)
def test_one_worker_overlaps_postgres_waits_only_under_gevent(
    tmp_path: Path,
    started: list[Gunicorn],
    postgres_url: str,
    worker_class: str,
    limit: float | None,
) -> None:
    """20 requests each waiting 0.5 s in PostgreSQL: gevent overlaps them, sync queues them."""
    server = serve_test_app(tmp_path, worker_class, WEB_CONCURRENCY="1", DATABASE_URL=postgres_url)
    started.append(server)
    begun = time.monotonic()
    statuses = in_parallel(20, lambda _: get(server.port, "/test/pg-sleep?s=0.5", timeout=30)[0])
    elapsed = time.monotonic() - begun
    assert statuses == [200] * 20
    if limit is not None:
        assert elapsed < limit
    else:
        assert elapsed > 9  # one at a time: 20 x 0.5 s
    assert "MonkeyPatchWarning" not in server.stderr()


def terminate_backends(url: str) -> int:
    """Have PostgreSQL close every other connection to `url`'s database, as a restart does
    (a FATAL message, then the socket closed); return how many it closed."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            closed = connection.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
    finally:
        engine.dispose()
    return int(closed or 0)


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_connections_the_server_closed_are_replaced_on_checkout(
    tmp_path: Path, started: list[Gunicorn], postgres_url: str, worker_class: str
) -> None:
    """Once PostgreSQL has closed every pooled connection, the next requests reconnect and
    answer 200: checkout refuses a connection whose socket the server closed, with no
    `SELECT 1` round trip (under gevent, with its patched `select`, too)."""
    server = serve_test_app(tmp_path, worker_class, WEB_CONCURRENCY="1", DATABASE_URL=postgres_url)
    started.append(server)

    def five() -> list[int]:
        return in_parallel(5, lambda _: get(server.port, "/test/pg-sleep?s=0.1", timeout=30)[0])

    assert five() == [200] * 5
    assert terminate_backends(postgres_url) >= 1  # each connection the pool holds
    time.sleep(0.2)  # the server's FATAL message and FIN reach the worker's sockets
    assert five() == [200] * 5
    assert "DisconnectionError" not in server.stderr()


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_sigterm_lets_accepted_requests_finish(
    tmp_path: Path, started: list[Gunicorn], worker_class: str
) -> None:
    """Requests in flight at SIGTERM complete with 200; the master exits 0 in time."""
    server = serve_test_app(tmp_path, worker_class, GUNICORN_GRACEFUL_TIMEOUT="10")
    started.append(server)
    in_flight = 2 if worker_class == "sync" else 10
    results: list[int] = []

    def call(_: int) -> int:
        return get(server.port, "/test/sleep?s=2", timeout=30)[0]

    def load() -> None:
        results.extend(in_parallel(in_flight, call))

    thread = threading.Thread(target=load)
    thread.start()
    time.sleep(0.8)  # every request has been accepted and is sleeping
    begun = time.monotonic()
    assert server.stop(signal.SIGTERM, timeout=15) == 0
    thread.join()
    assert results == [200] * in_flight
    assert time.monotonic() - begun < 10


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_sighup_under_load_fails_no_request(
    tmp_path: Path, started: list[Gunicorn], worker_class: str
) -> None:
    """Reloading the workers while requests keep coming loses none of them."""
    server = serve_test_app(tmp_path, worker_class)
    started.append(server)
    before = worker_pids(server)
    with Load(server.port) as load:
        time.sleep(0.5)
        assert server.proc is not None
        server.proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 15
        while worker_pids(server) & before and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)
    assert not worker_pids(server) & before, "old workers still running"
    assert len(load.outcomes) > 50
    assert set(load.outcomes) == {200}


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_killed_worker_is_replaced_and_service_continues(
    tmp_path: Path, started: list[Gunicorn], worker_class: str
) -> None:
    """SIGKILL of one worker: the master starts another and requests keep succeeding."""
    server = serve_test_app(tmp_path, worker_class)
    started.append(server)
    before = worker_pids(server)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while (len(worker_pids(server)) < 2 or victim in worker_pids(server)) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert victim not in worker_pids(server)
    assert len(worker_pids(server)) == 2
    assert [get(server.port, "/healthz")[0] for _ in range(20)] == [200] * 20


def test_a_request_past_the_timeout_keeps_its_tracking_id_everywhere(
    tmp_path: Path, started: list[Gunicorn]
) -> None:
    """A sync request running past GUNICORN_TIMEOUT: the worker is replaced; the 500
    envelope, the line naming the request and its access line all carry the client's
    tracking id, and the metrics count it under its route, not as unmatched."""
    metrics_port = free_port()
    server = serve_test_app(
        tmp_path, "sync", WEB_CONCURRENCY="1", GUNICORN_TIMEOUT="2",
        METRICS_BIND=f"127.0.0.1:{metrics_port}",
    )  # fmt: skip
    started.append(server)
    before = worker_pids(server)
    status, headers, body = get(
        server.port, "/test/sleep?s=6", headers={"X-Tracking-ID": "slow-1"}, timeout=20
    )
    assert (status, headers["X-Tracking-ID"], json.loads(body)["tracking_id"]) == (
        500,
        "slow-1",
        "slow-1",
    )
    wait_until(lambda: bool(worker_pids(server) - before), 10, "no replacement worker")
    assert get(server.port, "/healthz")[0] == 200
    timed_out = [line for line in server.json_lines("stderr") if "timed out" in line["message"]]
    assert [(line["message"], line["tracking_id"]) for line in timed_out] == [
        ("worker timed out after 2s while serving GET /test/sleep", "slow-1")
    ]
    (access,) = [line for line in server.json_lines() if line.get("tracking_id") == "slow-1"]
    assert (access["logger"], access["path"], access["status"]) == (
        "gunicorn.access",
        "/test/sleep",
        500,
    )
    assert access["duration_ms"] >= 2000
    exposed = get(metrics_port, "/metrics")[2].decode()
    assert 'http_requests_total{method="GET",route="/test/sleep",status_class="5xx"} 1.0' in (
        exposed
    ), exposed


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_max_requests_with_jitter_fails_no_request(
    tmp_path: Path, started: list[Gunicorn], worker_class: str
) -> None:
    """Workers recycled every ~20 requests under load: every request still succeeds."""
    server = serve_test_app(
        tmp_path, worker_class, GUNICORN_MAX_REQUESTS="20", GUNICORN_MAX_REQUESTS_JITTER="5"
    )
    started.append(server)
    statuses = in_parallel(8, lambda _: [get(server.port, "/healthz")[0] for _ in range(40)])
    assert [status for batch in statuses for status in batch] == [200] * 320
    assert "Autorestarting worker" in server.stderr()


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_access_log_is_json_and_carries_the_response_tracking_id(
    tmp_path: Path, started: list[Gunicorn], worker_class: str
) -> None:
    """Odd paths, queries and user agents still give one JSON line with the right id."""
    server = serve_test_app(tmp_path, worker_class)
    started.append(server)
    # http.client sends header text as latin-1; this sends the UTF-8 bytes of "café".
    agent = 'agent "quoted" \\ back\tslash caf\u00e9'.encode().decode("latin-1")
    odd = {"User-Agent": agent, "Referer": "a'b\"c"}
    responses = [
        get(server.port, "/healthz?q=%22%5C%0A%C3%A9&x=1", headers=odd),
        get(server.port, "/caf%C3%A9/%22%5C?a=%00"),
        get(server.port, "/healthz", headers={"X-Tracking-ID": "given-1"}),
    ]
    server.stop()
    # Each worker writes its line once its response is sent, so two workers' lines may land
    # in either order: find each response's line by its tracking id.
    lines = [line for line in server.json_lines() if line["logger"] == "gunicorn.access"]
    by_id = {line["tracking_id"]: line for line in lines}
    assert len(by_id) == len(lines) == len(responses)
    access = [by_id[headers["X-Tracking-ID"]] for _, headers, _ in responses]
    assert access[2]["tracking_id"] == "given-1"
    first = access[0]
    assert (first["method"], first["path"], first["status"]) == ("GET", "/healthz", 200)
    assert first["query"] == "q=%22%5C%0A%C3%A9&x=1"
    assert first["user_agent"] == 'agent "quoted" \\ back\tslash caf\u00e9'
    assert first["bytes"] > 0
    assert first["duration_ms"] >= 0
    assert first["client"] == "127.0.0.1"
    assert access[1]["path"] == '/caf\u00e9/"\\'
    assert access[1]["status"] == 404


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_concurrent_requests_each_keep_their_own_tracking_id(
    tmp_path: Path, started: list[Gunicorn], worker_class: str
) -> None:
    """200 concurrent requests with distinct ids: every response and log line has its own."""
    server = serve_test_app(tmp_path, worker_class)
    started.append(server)

    def call(n: int) -> int:
        status, headers, body = get(server.port, "/test/log", {"X-Tracking-ID": f"c-{n}"})
        assert headers["X-Tracking-ID"] == f"c-{n}"
        assert json.loads(body)["tracking_id"] == f"c-{n}"
        return status

    assert in_parallel(200, call) == [200] * 200
    server.stop()
    lines = server.json_lines()
    handled = sorted(line["tracking_id"] for line in lines if line["message"] == "handled")
    access = sorted(line["tracking_id"] for line in lines if line["logger"] == "gunicorn.access")
    expected = sorted(f"c-{n}" for n in range(200))
    assert handled == expected
    assert access == expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nReferer: a\x7fb\r\n\r\n", id="ctl-header"
        ),
        pytest.param(b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n", id="header-name"),
        pytest.param(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", id="uri-too-long"),
        pytest.param(b"BREW /healthz HTCPCP/1.0\r\n\r\n", id="bad-version"),
    ],
)
@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_requests_gunicorn_rejects_get_the_json_envelope(
    tmp_path: Path, started: list[Gunicorn], worker_class: str, raw: bytes
) -> None:
    """Malformed requests never see gunicorn's HTML page: JSON, status and a tracking id."""
    server = serve_test_app(tmp_path, worker_class)
    started.append(server)
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(raw)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    envelope = json.loads(body)
    assert 400 <= status < 500
    assert b"Content-Type: application/json" in head
    assert envelope["code"] == status
    assert envelope["data"] is None
    assert f"X-Tracking-ID: {envelope['tracking_id']}".encode() in head
    assert b"Cache-Control: no-store" in head


@pytest.mark.parametrize("worker_class", [*WORKER_CLASSES, pytest.param("gthread", id="gthread")])
def test_any_wsgi_app_is_served_without_the_chassis_features_it_lacks(
    tmp_path: Path, started: list[Gunicorn], worker_class: str
) -> None:
    """gunicorn.conf.py serves an app the chassis did not build: its hooks start no scheduler
    for it (saying so when one was asked for), and no worker crashes."""
    env = base_env(
        GUNICORN_WORKER_CLASS=worker_class, WEB_CONCURRENCY="2", SCHEDULER_ENABLED="true"
    )
    server = Gunicorn(tmp_path, env, args=["tests.apps.plain:app"]).start()
    started.append(server)
    status, headers, body = get(server.port, "/anything")
    assert (status, headers["Content-Type"], body) == (200, "text/plain", b"plain /anything\n")
    log = server.stderr()
    assert log.count("SCHEDULER_ENABLED ignored") == 2
    assert "Traceback" not in log
    assert "Worker exiting" not in log


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({}, {"size": 50, "overflow": 0}, id="default-connections"),
        pytest.param(
            {"GUNICORN_WORKER_CONNECTIONS": "20"}, {"size": 20, "overflow": 0}, id="connections"
        ),
        pytest.param({"DB_POOL_SIZE": ""}, {"size": 50, "overflow": 0}, id="blank-is-unset"),
        pytest.param({"DB_POOL_SIZE": "7"}, {"size": 7, "overflow": 0}, id="explicit-kept"),
        pytest.param(
            {"GUNICORN_WORKER_CLASS": "sync", "GUNICORN_CMD_ARGS": "--worker-class gevent"},
            {"size": 50, "overflow": 0},
            id="gevent-from-cmd-args",
        ),
    ],
)
def test_gevent_worker_pool_matches_worker_connections(
    tmp_path: Path,
    started: list[Gunicorn],
    postgres_url: str,
    env: dict[str, str],
    expected: dict[str, int],
) -> None:
    """Each gevent worker's pool holds one connection per possible concurrent request,
    decided from the settings the master read (never written back to the environment)."""
    server = serve_test_app(
        tmp_path, env.pop("GUNICORN_WORKER_CLASS", "gevent"), DATABASE_URL=postgres_url, **env
    )
    started.append(server)
    body = json.loads(get(server.port, "/test/pool")[2])
    environ = {name: env.get(name) for name in POOL_VARIABLES}
    assert body["data"] == {**expected, "settings_read_once": True, "environ": environ}


def test_preload_under_gevent_is_refused_with_a_logged_reason(
    tmp_path: Path, started: list[Gunicorn]
) -> None:
    """GUNICORN_PRELOAD=true with gevent: the app is not preloaded, and the log says why."""
    server = serve_test_app(tmp_path, "gevent", GUNICORN_PRELOAD="true")
    started.append(server)
    messages = [line["message"] for line in server.json_lines("stderr")]
    assert any(m.startswith("GUNICORN_PRELOAD ignored") for m in messages)
    assert any("preload_app=False" in m for m in messages if m.startswith("ready:"))
    assert "MonkeyPatchWarning" not in server.stderr()


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_the_development_key_is_warned_of_once_per_server(
    tmp_path: Path, started: list[Gunicorn], worker_class: str
) -> None:
    """Without SECRET_KEY outside production, the master says once that the development
    key is in use; its three workers, and a HUP's new ones, say nothing more."""
    server = serve_test_app(tmp_path, worker_class, APP_ENV="development", WEB_CONCURRENCY="3")
    started.append(server)
    assert server.proc is not None
    server.proc.send_signal(signal.SIGHUP)
    wait_until(
        lambda: server.stderr().count("Worker ready (pid:") >= 6, 30, lambda: server.stderr()
    )
    said = server.stdout() + server.stderr()
    assert said.count("SECRET_KEY is not set: using the fixed development key") == 1


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_an_unreachable_database_is_one_line_at_start_and_per_request(
    tmp_path: Path, started: list[Gunicorn], worker_class: str
) -> None:
    """With nobody listening at DATABASE_URL, the server starts and says so once, in one
    line naming the host and port (never the password); a request that needs the database
    answers the 503 envelope and logs one line under its tracking id, with no traceback."""
    port = free_port()
    url = f"postgresql://kit:sekret-password@127.0.0.1:{port}/kit"
    server = serve_test_app(tmp_path, worker_class, DATABASE_URL=url, WEB_CONCURRENCY="3")
    started.append(server)
    said = f"database unreachable: DATABASE_URL's 127.0.0.1:{port}: "

    def warnings() -> list[dict[str, str]]:
        logs = (server.stdout() + server.stderr()).splitlines()
        logged = [json.loads(line) for line in logs if line[:1] == "{"]
        return [line for line in logged if said in line["message"]]

    wait_until(lambda: bool(warnings()), 10, server.stderr)
    time.sleep(0.5)  # the other workers had their chance to say it too
    (at_start,) = warnings()
    assert at_start["message"].startswith(f"readiness check failed: {said}")
    status, headers, _ = get(server.port, "/test/pg-sleep?s=0", {"X-Tracking-ID": "down-1"})
    assert (status, headers["Retry-After"]) == (503, "1")
    (at_request,) = [line for line in warnings() if line["tracking_id"] == "down-1"]
    assert at_request["message"].startswith(said)
    assert "Traceback" not in server.stderr()
    assert "sekret" not in server.stdout() + server.stderr()
