"""`make serve-gevent` as a user runs it: gunicorn with one gevent worker, never recycled,
whatever WEB_CONCURRENCY and GUNICORN_MAX_REQUESTS say. One process keeps its state across
requests, slow requests overlap, and gunicorn's parser is in front of the app.

The server listens on 127.0.0.1 and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import programs
from harness.processes import PROBE, ROOT, base_env, free_port, get, wait_until
from tests.support.answers import ENVELOPE_HEADERS, raw_header_names

SLEEPY = "harness.apps.sleepy:app"


@dataclass
class ServeGevent:
    """`make serve-gevent` in a process group of its own: make, gunicorn's master, its worker."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def answers(self) -> bool:
        """Whether /healthz answers 200 yet; fail with the output if make has exited."""
        if self.proc.poll() is not None:
            raise AssertionError(f"make exited {self.proc.returncode}:\n{self.output()}")
        try:
            return get(self.port, "/healthz", PROBE, timeout=1)[0] == 200
        except (OSError, http.client.HTTPException):
            return False

    def running(self) -> bool:
        """Whether any process of the group is left."""
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self, timeout: float = 30) -> None:
        """SIGTERM the whole group; if any of it outlives `timeout`, SIGKILL it and fail."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout)  # make waits for gunicorn, which waits for its worker
            wait_until(lambda: not self.running(), 5, "")
        except (subprocess.TimeoutExpired, AssertionError):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"still running after SIGTERM:\n{self.output()}") from None

    def output(self) -> str:
        """Everything make, gunicorn and the app wrote so far."""
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeGevent]:
    """`make serve-gevent app=harness.apps.sleepy:app` on a free loopback port and SQLite,
    with WEB_CONCURRENCY=4 and GUNICORN_MAX_REQUESTS=5 in its environment for the target to
    override; the group is stopped with SIGTERM afterwards."""
    (make,) = programs.require("make")
    directory = tmp_path_factory.mktemp("serve-gevent")
    port = free_port()
    env = base_env(
        GUNICORN_BIND=f"127.0.0.1:{port}",
        DATABASE_URL=f"sqlite:///{directory / 'app.db'}",
        WEB_CONCURRENCY="4",
        GUNICORN_MAX_REQUESTS="5",
    )
    # -o: serve from the virtual environment the tests run in, without syncing it.
    command = [make, "-o", "install", "-o", "runtime", "serve-gevent", f"app={SLEEPY}"]
    log = directory / "output.log"
    # A file, not a pipe: a chatty server can never block on a full pipe.
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True
        )
    server = ServeGevent(proc, port, log)
    try:
        wait_until(server.answers, 60, server.output)
        yield server
    finally:
        server.stop()


def in_parallel(port: int, path: str, count: int, at_once: int) -> list[tuple[int, bytes]]:
    """GET `path` `count` times, `at_once` at a time; return each status and body, in order."""

    def one(_: int) -> tuple[int, bytes]:
        status, _headers, body = get(port, path, timeout=15)
        return status, body

    with ThreadPoolExecutor(max_workers=at_once) as pool:
        return list(pool.map(one, range(count)))


def test_one_process_keeps_its_state_and_is_never_recycled(served: ServeGevent) -> None:
    """50 requests to /test/counter, 10 at a time, then one more, count 1 to 51 in one
    process: the state outlives each request, WEB_CONCURRENCY=4 starts no other worker, and
    GUNICORN_MAX_REQUESTS=5 recycles none."""
    answers = [
        json.loads(body)["data"] for _, body in in_parallel(served.port, "/test/counter", 50, 10)
    ]
    # A gevent worker that decides to recycle keeps accepting until its once-a-second check
    # (gunicorn's GeventWorker.run): after 2 s the last request would reach its successor.
    time.sleep(2)
    answers.append(json.loads(get(served.port, "/test/counter")[2])["data"])
    assert sorted(answer["value"] for answer in answers) == list(range(1, 52))
    assert len({answer["pid"] for answer in answers}) == 1


def test_slow_requests_do_not_hold_each_other_up(served: ServeGevent) -> None:
    """10 requests that each sleep 1 s, all at once, finish well under the 10 s they take one
    after another: the one worker's I/O is cooperative."""
    begun = time.monotonic()
    statuses = [status for status, _ in in_parallel(served.port, "/test/sleep?s=1", 10, 10)]
    elapsed = time.monotonic() - begun
    assert statuses == [200] * 10
    assert elapsed < 3


def test_content_length_with_chunked_is_refused_with_the_envelope(served: ServeGevent) -> None:
    """A body framed both by Content-Length and by Transfer-Encoding: chunked (a smuggling
    attempt gevent's pywsgi let through) gets gunicorn's 400, in the JSON envelope."""
    raw = (
        b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"2\r\n{}\r\n0\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
        sock.sendall(raw)
        reply = sock.makefile("rb").read()  # to the end: gunicorn closes after refusing
    head, _, body = reply.partition(b"\r\n\r\n")
    envelope = json.loads(body)
    assert head.startswith(b"HTTP/1.1 400 "), reply
    assert raw_header_names(head) == ENVELOPE_HEADERS
    assert b"Content-Type: application/json" in head
    assert (envelope["code"], envelope["data"]) == (400, None)
    assert f"X-Tracking-ID: {envelope['tracking_id']}".encode() in head
