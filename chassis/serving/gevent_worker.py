"""gunicorn's gevent worker, stopping as soon as its requests are done, and reading each
request within GUNICORN_TIMEOUT of its first byte (chassis/serving/deadline.py: gunicorn's
bounds a head by the keep-alive timeout, a body not at all): `GUNICORN_WORKER_CLASS=gevent`
runs this class (gunicorn.conf.py).

A stopping gevent worker (SIGTERM, a `HUP` reload, a `max_requests` recycle) waits until no
connection is open, up to `graceful_timeout`. An idle keep-alive connection counts as open:
it waits for a next request, up to the keep-alive timeout (75 s). nginx's upstream
keepalive always holds such connections, so every stop, reload and recycle took the whole
graceful timeout (30 s), with the old worker's memory and database connections held all
along: https://github.com/benoitc/gunicorn/issues/3227. sync workers close after each
request and gthread closes idle connections on stopping; this worker does as gthread does.

When the worker stops, its kept-alive connections stay open for STOP_KEEPALIVE_LINGER (2 s,
gunicorn's own number for its gthread worker), and a request arriving on one meanwhile is
answered with `Connection: close`; then those still idle are shut. Requests in flight
finish, and their connections then close the same way. A server that shuts an idle
connection races the client's next request on it, which fails before anything was sent
(nginx answers a POST there with 502). So the client must drop idle connections sooner:
nginx's upstream keepalive_timeout is 1 s (nginx/templates/), and a connection idle when
the worker stops is gone from nginx's pool before the worker shuts it.
"""

from __future__ import annotations

import contextlib
import select
import socket
from typing import Any

import gevent
from gunicorn.workers.ggevent import GeventWorker as GunicornGeventWorker
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER

from chassis.serving.deadline import DeadlineSocket

# How often a running worker checks whether it was told to stop.
STOP_POLL_SECONDS = 0.1


class GeventWorker(GunicornGeventWorker):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's gevent worker that shuts idle keep-alive connections when stopping."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Each open connection: whether it waits for a request (True) or serves one.
        self.idle: dict[DeadlineSocket, bool] = {}

    def run(self) -> None:
        gevent.spawn(self.close_idle_when_stopping)
        super().run()

    def handle(self, listener: Any, client: socket.socket, addr: Any) -> None:
        # Each request read within GUNICORN_TIMEOUT of its first byte (deadline.py).
        reader = DeadlineSocket(client, self.cfg.timeout)
        self.idle[reader] = True
        try:
            super().handle(listener, reader, addr)
        finally:
            del self.idle[reader]

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        self.idle[sock] = False
        try:
            return super().handle_request(listener_name, req, sock, addr)
        finally:
            sock.rearm()  # the next request's deadline runs from its own first byte
            self.idle[sock] = True

    def close_idle_when_stopping(self) -> None:
        """Wait until the worker stops, then STOP_KEEPALIVE_LINGER, then shut every idle
        connection, and keep doing so for connections that become idle while the worker
        drains (gunicorn answers their requests with `Connection: close`, so most close
        themselves)."""
        while self.alive:
            gevent.sleep(STOP_POLL_SECONDS)
        gevent.sleep(STOP_KEEPALIVE_LINGER)
        while self.idle:
            for client, idle in list(self.idle.items()):
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
