"""gunicorn's gevent worker, stopping as soon as its requests are done, and reading each
request within GUNICORN_TIMEOUT of its first byte (chassis/serving/deadline.py: gunicorn's
bounds a head by the keep-alive timeout, a body not at all): `GUNICORN_WORKER_CLASS=gevent`
runs this class (gunicorn.conf.py).

A stopping gevent worker (SIGTERM, a `HUP` reload, a `max_requests` recycle) waits until no
connection is open, up to `graceful_timeout`. An idle keep-alive connection counts as open:
it waits for a next request that a stopping worker will not serve. nginx's upstream
keepalive always holds such connections, so every stop, reload and recycle took the whole
graceful timeout (30 s), with the old worker's memory and database connections held all
along: https://github.com/benoitc/gunicorn/issues/3227. sync workers close after each
request and gthread closes idle connections on stopping; this worker does as gthread does.

When the worker stops, connections that have waited a second for a request, with nothing
sent yet, are shut down; requests in flight finish, and their connections then close
(gunicorn answers them with `Connection: close`). A request that reaches a connection in
the instant it is shut fails on the client's side before anything was sent: nginx retries
it on another connection (a failed cached upstream connection gets an extra try) unless it
is a POST, as with any keep-alive connection a server closes.
"""

from __future__ import annotations

import contextlib
import select
import socket
import time
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventWorker as GunicornGeventWorker

from chassis.serving.deadline import DeadlineSocket

# How often a running worker checks whether it was told to stop.
STOP_POLL_SECONDS = 0.1
# How long a connection must have waited for a request before a stopping worker shuts it.
# nginx writes a request the moment it has connected, or chosen a cached connection; a
# connection silent for a second is idle, not about to be used.
IDLE_SECONDS = 1.0


class GeventWorker(GunicornGeventWorker):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's gevent worker that shuts idle keep-alive connections when stopping."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Each open connection: since when it waits for a request, or None while serving one.
        self.idle_since: dict[DeadlineSocket, float | None] = {}

    def run(self) -> None:
        gevent.spawn(self.close_idle_when_stopping)
        super().run()

    def handle(self, listener: Any, client: socket.socket, addr: Any) -> None:
        # Each request read within GUNICORN_TIMEOUT of its first byte (deadline.py).
        reader = DeadlineSocket(client, self.cfg.timeout)
        self.idle_since[reader] = time.monotonic()
        try:
            super().handle(listener, reader, addr)
        finally:
            del self.idle_since[reader]

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        self.idle_since[sock] = None
        try:
            return super().handle_request(listener_name, req, sock, addr)
        finally:
            sock.rearm()  # the next request's deadline runs from its own first byte
            self.idle_since[sock] = time.monotonic()

    def close_idle_when_stopping(self) -> None:
        """Wait until the worker stops, then shut every idle connection, and keep doing so
        for connections that become idle while the worker drains."""
        while self.alive:
            gevent.sleep(STOP_POLL_SECONDS)
        while self.idle_since:
            now = time.monotonic()
            for client, since in list(self.idle_since.items()):
                idle = since is not None and now - since >= IDLE_SECONDS
                if idle and not _has_pending_bytes(client):
                    # Wakes the greenlet reading the next request: it sees the end of the
                    # stream, closes the connection and leaves the worker's pool.
                    with contextlib.suppress(OSError):  # the client left first
                        client.shutdown(socket.SHUT_RDWR)
            gevent.sleep(STOP_POLL_SECONDS)


def _has_pending_bytes(client: DeadlineSocket) -> bool:
    """Whether a request has started to arrive on `client` (a byte waits to be read)."""
    try:
        readable, _, _ = select.select([client], [], [], 0)
    except (OSError, ValueError):  # closed meanwhile
        return False
    return bool(readable)
