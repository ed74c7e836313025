"""A deadline for reading a request, for the workers that have none: gthread and gevent.

gunicorn's sync worker is killed when one request outlives GUNICORN_TIMEOUT, a slow client
included (it then answers 408, hooks._client_fault). Its gthread and gevent workers stay
alive, so nothing bounded a client that sends its head or body a byte at a time: each held
a thread (gthread) or a connection slot (gevent) for as long as it kept sending, and a few
such clients held the whole worker. gthread waits a few seconds for a request's first byte,
and gevent's keep-alive timeout covers a head, but not a body.

`DeadlineSocket` wraps a connection's socket: once a request's first byte has arrived, the
rest of its head and body must arrive within GUNICORN_TIMEOUT, the same deadline a sync
worker has. Past it, a read raises `ReadDeadlineExceeded`: a head not yet read closes the
connection (gunicorn takes it for a client that left), and a body the app is reading gets
the 408 envelope (chassis/web/errors.py, `RequestTooSlow`). Writes are not wrapped.
"""

from __future__ import annotations

import time
from typing import Any

from gunicorn.http.errors import NoMoreData

from chassis.web.errors import RequestTooSlow


class ReadDeadlineExceeded(NoMoreData, RequestTooSlow):  # type: ignore[misc]  # untyped
    """The client took longer than the deadline to send its request. gunicorn's workers
    close a connection on NoMoreData; the chassis answers 408 for `RequestTooSlow`."""

    def __str__(self) -> str:
        return "request timeout: the request was sent too slowly"


class DeadlineSocket:
    """A socket whose reads of one request must end by a deadline, counted from the
    request's first byte; `rearm` starts the count again for the connection's next request.
    Waiting for that first byte is not counted: keep-alive's own timeout bounds it."""

    def __init__(self, sock: Any, seconds: float) -> None:
        self.sock = sock
        self.seconds = seconds
        self.deadline: float | None = None
        # Once past a deadline, the connection is done: the rest of that body is never read
        # (a keep-alive worker would otherwise drain it, on a fresh deadline).
        self.expired = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)  # everything but reading: the socket's own

    def rearm(self) -> None:
        """Count the next request's deadline from its first byte."""
        self.deadline = None

    def recv(self, size: int) -> bytes:
        if self.expired:
            raise ReadDeadlineExceeded
        if self.deadline is None:
            data: bytes = self.sock.recv(size)
            if data:
                self.deadline = time.monotonic() + self.seconds
            return data
        remaining = self.deadline - time.monotonic()
        timeout = self.sock.gettimeout()
        try:
            if remaining <= 0:
                raise TimeoutError
            self.sock.settimeout(remaining)
            received: bytes = self.sock.recv(size)
        except TimeoutError:
            self.expired = True
            raise ReadDeadlineExceeded from None
        finally:
            self.sock.settimeout(timeout)
        return received
