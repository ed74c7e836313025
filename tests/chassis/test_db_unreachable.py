"""A PostgreSQL that stops answering (packets dropped, as in a failover or a lost route), under
real gunicorn with sync and gevent workers: requests get the 503 envelope within
DB_CONNECT_TIMEOUT + DB_NETWORK_TIMEOUT and a second, no worker is killed for a timeout,
/readyz answers 503 within 2 s without piling up threads or connections, and everything
recovers when packets flow again.

The packets are dropped for real, by iptables rules on the port of a PostgreSQL server of this
module's own (so no other test's database is touched): nothing refuses, nothing answers. That
needs root and iptables.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import programs, tempdirs
from harness.apps import records
from harness.postgres import PostgresServer, postgres_unavailable_reason
from harness.processes import Gunicorn, base_env, get, wait_until

SLEEPY = "harness.apps.sleepy:app"
# DB_CONNECT_TIMEOUT and DB_NETWORK_TIMEOUT, both.
TIMEOUT_S = 2
# What a request may take on top of the two timeouts: scheduling on two noisy cores.
SLACK_S = 1.5
# /readyz's promise to a load balancer's probe.
READINESS_BOUND_S = 2.0


class Blackhole:
    """iptables rules that drop every packet to and from one TCP port on loopback."""

    def __init__(self, port: int) -> None:
        self.rules = [["--dport", str(port)], ["--sport", str(port)]]
        self.dropping = False

    def _iptables(self, action: str, match: list[str]) -> None:
        command = ["iptables", "-w", "5", action, "INPUT", "-i", "lo", "-p", "tcp", *match]
        subprocess.run([*command, "-j", "DROP"], check=True, timeout=10)

    def drop(self) -> None:
        """Start dropping packets."""
        for match in self.rules:
            self._iptables("-I", match)
        self.dropping = True

    def restore(self) -> None:
        """Let packets through again (a no-op when they already flow)."""
        if self.dropping:
            for match in self.rules:
                self._iptables("-D", match)
            self.dropping = False


@pytest.fixture(scope="module")
def unreliable_postgres() -> Iterator[PostgresServer]:
    """A PostgreSQL server of this module's own, with the test tables, whose packets a
    Blackhole can drop."""
    reason = postgres_unavailable_reason()
    if reason:
        programs.require_service(reason)
    programs.require("iptables")
    if os.geteuid() != 0:
        programs.require_service("dropping packets with iptables needs root")
    server = PostgresServer(tempdirs.for_other_users("unreliable-postgres"))
    server.start()
    records.create_tables(server.url())
    yield server
    server.stop()


@pytest.fixture
def blackhole(unreliable_postgres: PostgresServer) -> Iterator[Blackhole]:
    """Drops packets to and from the module's PostgreSQL while a test asks; always undone."""
    rules = Blackhole(unreliable_postgres.port)
    try:
        yield rules
    finally:
        rules.restore()


def serve(worker_class: str, database: PostgresServer, directory: Path, timeout: int) -> Gunicorn:
    """Start one gunicorn worker of `worker_class` on `database`, with `timeout` seconds for
    both DB_CONNECT_TIMEOUT and DB_NETWORK_TIMEOUT."""
    env = base_env(
        GUNICORN_WORKER_CLASS=worker_class,
        WEB_CONCURRENCY="1",
        LOG_FORMAT="json",
        DATABASE_URL=database.url(),
        DB_CONNECT_TIMEOUT=str(timeout),
        DB_NETWORK_TIMEOUT=str(timeout),
    )
    return Gunicorn(directory, env, args=[SLEEPY]).start()


@pytest.fixture(params=["sync", "gevent"])
def worker_class(request: pytest.FixtureRequest) -> str:
    """Each worker class in turn."""
    param: str = request.param
    return param


@pytest.fixture
def server(
    worker_class: str, unreliable_postgres: PostgresServer, tmp_path: Path
) -> Iterator[Gunicorn]:
    """One gunicorn worker of the class on the module's PostgreSQL, with short timeouts."""
    server = serve(worker_class, unreliable_postgres, tmp_path, TIMEOUT_S)
    yield server
    server.stop()


def worker_pids(server: Gunicorn) -> list[int]:
    """The pids of the workers that announced they were ready, in order."""
    lines = server.json_lines("stderr")
    return [int(line["process"]) for line in lines if "Worker ready" in line["message"]]


def sockets_to(pid: int, port: int) -> int:
    """How many TCP sockets process `pid` holds to 127.0.0.1:`port` (in any state)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    rows = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    remote = f":{port:04X}"
    return sum(1 for row in rows if row.split()[2].endswith(remote) and row.split()[9] in inodes)


def threads_of(pid: int) -> int:
    """How many OS threads process `pid` runs."""
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


def timed_get(server: Gunicorn, path: str) -> tuple[int, float, bytes]:
    """GET `path`; return the status, the seconds it took and the body."""
    started = time.monotonic()
    status, _, body = get(server.port, path, timeout=40)
    return status, time.monotonic() - started, body


def test_requests_answer_503_in_time_while_packets_drop(
    server: Gunicorn, blackhole: Blackhole
) -> None:
    """A query on a pooled connection, then a new connection: each the 503 envelope within
    the two timeouts, the worker never killed, and 200 again once packets flow."""
    assert get(server.port, "/test/records")[0] == 200  # a pooled connection to lose
    blackhole.drop()
    bound = 2 * TIMEOUT_S + SLACK_S
    for attempt in ("pooled connection", "new connection"):
        status, took, body = timed_get(server, "/test/records")
        assert (status, attempt) == (503, attempt), body
        assert took < bound, f"{attempt}: 503 after {took:.1f} s, over {bound} s"
    blackhole.restore()
    wait_until(lambda: get(server.port, "/test/records")[0] == 200, 10, "no 200 after restore")
    assert len(worker_pids(server)) == 1, "a worker was replaced"
    assert "WORKER TIMEOUT" not in server.stderr()


def test_concurrent_requests_under_gevent_all_answer_503_in_time(
    unreliable_postgres: PostgresServer, blackhole: Blackhole, tmp_path: Path
) -> None:
    """Ten requests at once on one gevent worker: each its 503 within the two timeouts."""
    server = serve("gevent", unreliable_postgres, tmp_path, TIMEOUT_S)
    try:
        assert get(server.port, "/test/records")[0] == 200
        blackhole.drop()
        answers: list[tuple[int, float, bytes]] = []
        clients = [
            threading.Thread(target=lambda: answers.append(timed_get(server, "/test/records")))
            for _ in range(10)
        ]
        for client in clients:
            client.start()
        for client in clients:
            client.join(60)
        assert sorted(status for status, _, _ in answers) == [503] * 10
        assert max(took for _, took, _ in answers) < 2 * TIMEOUT_S + SLACK_S
    finally:
        blackhole.restore()
        server.stop()


def test_readiness_answers_503_in_time_without_piling_up(
    worker_class: str,
    unreliable_postgres: PostgresServer,
    blackhole: Blackhole,
    tmp_path: Path,
) -> None:
    """Ten probes while packets drop, with timeouts long enough (10 s) that every probe's
    check would still be waiting: each 503 within 2 s, yet the worker never holds more than
    one check's thread and connection; ready again soon after packets flow."""
    server = serve(worker_class, unreliable_postgres, tmp_path, 10)
    try:
        (pid,) = worker_pids(server)
        threads_before = threads_of(pid)
        blackhole.drop()
        for probe in range(10):
            status, took, body = timed_get(server, "/readyz")
            assert status == 503, body
            assert took < READINESS_BOUND_S, f"/readyz took {took:.1f} s"
            held = sockets_to(pid, unreliable_postgres.port), threads_of(pid) - threads_before
            assert max(held) <= 1, f"after probe {probe + 1}: (connections, threads) {held}"
        blackhole.restore()
        wait_until(lambda: get(server.port, "/readyz")[0] == 200, 10, "not ready after restore")
    finally:
        blackhole.restore()
        server.stop()
