"""Give every request a tracking id, echo it in a response header and expose it to logs.

Use this outermost around the WSGI app, so that every response carries the header:
successes, 404 and 405 from routing, 413 from body limits, 500 from unhandled errors.

Trust model: a client (or nginx in front) may send its own id in the header, and it is
reused only when it is 1-128 characters of ``A-Z a-z 0-9 . _ : -``. Anything else (empty,
too long, spaces, CR/LF, quotes, non-ASCII) is replaced by a fresh uuid4 hex and never
written anywhere, so a client cannot forge log lines or inject headers through it.

The current id lives in a `contextvars.ContextVar`, which is per thread and per gevent
greenlet, and is reset when the response is closed, so it never leaks into the next
request. Work outside a request (threads, greenlets, jobs, CLI) uses `tracking_scope` or
`call_with_tracking_id` to run under an id of its own.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from operator import itemgetter
from typing import TYPE_CHECKING, ParamSpec, TypeVar

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# What log records carry when no request or scope is active: a constant, never an error.
NO_TRACKING_ID = "-"
ENVIRON_KEY = "app.tracking_id"

VALID_TRACKING_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}", re.ASCII)
_current: ContextVar[str | None] = ContextVar("tracking_id", default=None)

_P = ParamSpec("_P")
_R = TypeVar("_R")


def current_tracking_id() -> str:
    """Return the active tracking id, or `NO_TRACKING_ID` outside any request or scope."""
    return _current.get() or NO_TRACKING_ID


def new_tracking_id() -> str:
    """Return a fresh tracking id: a random (version 4) UUID's 32 hex digits.

    Made from 16 random bytes with the version and variant bits set, as `uuid.uuid4().hex`
    makes it, without building a `UUID` object on every request that sends no id."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


def accept_tracking_id(candidate: str | None) -> str:
    """Return `candidate` when it is a safe tracking id, else a fresh one."""
    if candidate is not None and VALID_TRACKING_ID.fullmatch(candidate):
        return candidate
    return new_tracking_id()


@contextmanager
def tracking_scope(tracking_id: str | None = None) -> Iterator[str]:
    """Run the body under `tracking_id` (validated; a fresh id when None) and restore after."""
    active = accept_tracking_id(tracking_id)
    token = _current.set(active)
    try:
        yield active
    finally:
        _current.reset(token)


def call_with_tracking_id(
    tracking_id: str | None, func: Callable[_P, _R], /, *args: _P.args, **kwargs: _P.kwargs
) -> _R:
    """Call `func(*args, **kwargs)` with its log records carrying `tracking_id`.

    Pass it as a thread's or greenlet's target (``Thread(target=call_with_tracking_id,
    args=(current_tracking_id(), work))``) to carry a request's id into background work.
    """
    with tracking_scope(tracking_id):
        return func(*args, **kwargs)


class CloseHook:
    """A WSGI response body whose `close()` closes `body`, then calls `callback`.

    werkzeug's `ClosingIterator` does the same through a Python call per chunk; this hands
    the server `body`'s own iterator, so the wrapper costs nothing while the body is sent.
    """

    __slots__ = ("body", "callback")

    def __init__(self, body: Iterable[bytes], callback: Callable[[], object]) -> None:
        self.body = body
        self.callback = callback

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.body)

    def close(self) -> None:
        """Close the body (if it can be), then run the callback, even if closing failed."""
        try:
            close = getattr(self.body, "close", None)
            if close is not None:
                close()
        finally:
            self.callback()


class TrackingIdMiddleware:
    """WSGI middleware that assigns the tracking id and adds it to the response headers.

    :param app: the WSGI application to wrap.
    :param header: the request and response header name, such as ``X-Tracking-ID``.
    """

    def __init__(self, app: WSGIApplication, header: str) -> None:
        self.app = app
        self.header = header
        self.header_lower = header.lower()
        self.environ_name = "HTTP_" + header.upper().replace("-", "_")

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        tracking_id = accept_tracking_id(environ.get(self.environ_name))
        environ[self.environ_name] = tracking_id
        environ[ENVIRON_KEY] = tracking_id
        token = _current.set(tracking_id)

        def start_with_header(
            status: str, headers: list[tuple[str, str]], exc_info: object = None
        ) -> Callable[[bytes], object]:
            # The scan runs in C (map), the rebuild only when the app set the header itself.
            if self.header_lower in map(str.lower, map(itemgetter(0), headers)):
                headers = [(k, v) for k, v in headers if k.lower() != self.header_lower]
            headers.append((self.header, tracking_id))
            return start_response(status, headers, exc_info)  # type: ignore[arg-type]

        try:
            app_iter = self.app(environ, start_with_header)
        except BaseException:
            _current.reset(token)
            raise
        # The body may be streamed after this returns; reset the id when the server
        # closes the response, not before.
        return CloseHook(app_iter, lambda: _current.reset(token))
