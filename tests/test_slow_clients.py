"""Slow clients against each worker class alone, with no nginx in front: as many clients as
the worker has room for (threads, connection slots) send their request's head, or its body,
a byte at a time, and keep at it. Each is cut off within GUNICORN_TIMEOUT of its first byte
(a 408 envelope or a closed connection), and a well-behaved client is answered as soon as
room frees, not after the slow ones give up.

gthread and gevent read each request under the kit's deadline (chassis/serving/deadline.py);
a sync worker is killed at GUNICORN_TIMEOUT and answers 408 (chassis/serving/hooks.py). Every
server listens on 127.0.0.1; each slow client stops after DRIBBLE_LIMIT seconds at most.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.processes import Gunicorn, get, serve_test_app

TIMEOUT = 3
# What "at once" means for each class: its threads (gthread), connection slots (gevent) or
# its one process (sync), all taken by slow clients.
ROOM = {"sync": 1, "gthread": 2, "gevent": 3}
# Slow clients stop on their own after this long; the deadline is far shorter.
DRIBBLE_LIMIT = 12.0
# The master checks workers once a second, and a killed sync worker is booted again.
MARGIN = 2.5
HEAD = b"GET /healthz HTTP/1.1\r\nHost: kit.test\r\n"
BODY = (
    b"POST /test/records HTTP/1.1\r\nHost: kit.test\r\nContent-Type: application/json\r\n"
    b"Content-Length: 1000\r\n\r\n{"
)


@dataclass
class Outcome:
    """What a slow client got: a status, or None for a closed connection, and when."""

    status: int | None
    seconds: float
    envelope: dict[str, object] | None = None


def dribble(port: int, start: bytes, outcomes: list[Outcome]) -> None:
    """Send `start`, then one byte every half second until the server answers or closes
    (or DRIBBLE_LIMIT passes); record what came back and how long after the first byte."""
    with socket.create_connection(("127.0.0.1", port), timeout=DRIBBLE_LIMIT) as sock:
        began = time.monotonic()
        sock.sendall(start)
        sock.settimeout(0.5)
        reply = b""
        while time.monotonic() - began < DRIBBLE_LIMIT:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                try:
                    sock.sendall(b"X-Slow: 1\r\n" if start is HEAD else b" ")
                except OSError:  # the server closed while this client was still sending
                    break
                continue
            except OSError:
                break
            if not chunk:
                break
            reply += chunk
            if answered(reply):
                break
        seconds = time.monotonic() - began
    if not reply:
        outcomes.append(Outcome(None, seconds))
        return
    head, _, body = reply.partition(b"\r\n\r\n")
    outcomes.append(Outcome(int(head.split()[1]), seconds, json.loads(body)))


def answered(reply: bytes) -> bool:
    """Whether `reply` holds a whole answer: its head and as much body as it declares."""
    head, found, body = reply.partition(b"\r\n\r\n")
    length = [line.split(b":", 1)[1] for line in head.split(b"\r\n")
              if line.lower().startswith(b"content-length:")]  # fmt: skip
    return bool(found) and len(body) >= int(length[0] if length else 0)


@pytest.mark.parametrize("part", ["head", "body"])
@pytest.mark.parametrize("worker_class", list(ROOM))
def test_slow_clients_are_cut_at_the_deadline_and_others_served(
    tmp_path: Path, started: list[Gunicorn], worker_class: str, part: str
) -> None:
    """Slow clients filling the worker get a 408 envelope (a body) or a closed connection
    (a head) within GUNICORN_TIMEOUT of their first byte; a /healthz sent meanwhile is
    answered within that time too, not after DRIBBLE_LIMIT."""
    places = {
        "gthread": {"GUNICORN_THREADS": str(ROOM["gthread"])},
        "gevent": {"GUNICORN_WORKER_CONNECTIONS": str(ROOM["gevent"])},
    }
    server = serve_test_app(
        tmp_path, worker_class, WEB_CONCURRENCY="1", GUNICORN_TIMEOUT=str(TIMEOUT),
        **places.get(worker_class, {}),
    )  # fmt: skip
    started.append(server)
    outcomes: list[Outcome] = []
    start = HEAD if part == "head" else BODY
    clients = [
        threading.Thread(target=dribble, args=(server.port, start, outcomes))
        for _ in range(ROOM[worker_class])
    ]
    for client in clients:
        client.start()
    time.sleep(0.5)  # the slow clients hold the room
    began = time.monotonic()
    assert get(server.port, "/healthz", timeout=DRIBBLE_LIMIT)[0] == 200
    waited = time.monotonic() - began
    for client in clients:
        client.join(DRIBBLE_LIMIT + 5)
    assert len(outcomes) == ROOM[worker_class]
    assert all(outcome.seconds < TIMEOUT + MARGIN for outcome in outcomes), outcomes
    assert waited < TIMEOUT + MARGIN, f"/healthz waited {waited:.1f} s"
    expected = {None, 408} if part == "head" else {408}
    assert {outcome.status for outcome in outcomes} <= expected, outcomes
    if part == "body":  # the chassis answered, in its envelope, and logged each request
        envelopes = [outcome.envelope or {} for outcome in outcomes]
        assert [envelope.get("code") for envelope in envelopes] == [408] * len(outcomes)
        logged = {line.get("tracking_id") for line in server.json_lines()}
        assert {envelope["tracking_id"] for envelope in envelopes} <= logged
