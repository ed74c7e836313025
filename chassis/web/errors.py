"""Turn every error into the JSON envelope, keeping its status and headers.

Only `HTTPException` gets a handler. Flask wraps any other unhandled exception in
`InternalServerError` after logging it with its traceback (`Flask.handle_exception`), so
that handler serves the 500 too. Registering a handler for `Exception` instead is the
classic trap: it also catches routing's 404 and 405 and turns them into 500s.
See https://flask.palletsprojects.com/en/stable/errorhandling/#generic-exception-handlers
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NoReturn

from flask import Flask, Request, Response
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import (
    BadRequest,
    HTTPException,
    RequestEntityTooLarge,
    RequestTimeout,
)

from chassis.database.engine import unreachable
from chassis.database.sessions import connection_failed, failure, get_db, redacted
from chassis.observability.metrics import current_metrics
from chassis.web.responses import DuplicateKey, NestedTooDeeply, error

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

log = logging.getLogger(__name__)


class RequestTooSlow(TimeoutError):
    """Raised while the body is read when the client took too long to send it (gunicorn's
    gthread and gevent workers: chassis/serving/deadline.py); answered 408."""


class JSONRequest(Request):
    """Request whose body is read whole or refused, and whose JSON parsing failures say what
    is wrong, in the envelope's words."""

    def get_data(
        self, cache: bool = True, as_text: bool = False, parse_form_data: bool = False
    ) -> Any:
        """Read the body as werkzeug does, refusing one that did not arrive as framed."""
        if parse_form_data:  # the form parser reads the body itself; b"" is its answer
            data = super().get_data(cache=cache, parse_form_data=True)
            return data.decode(errors="replace") if as_text else data
        try:
            data = super().get_data(cache=cache)
            # gunicorn sets wsgi.input_terminated, so werkzeug reads a chunked body up to
            # MAX_CONTENT_LENGTH and stops there without a word: one byte more is too large.
            over = (
                self.content_length is None
                and len(data) == self.max_content_length
                and self.environ["wsgi.input"].read(1)
            )
        except (HTTPException, RequestTooSlow) as exc:
            # werkzeug turns a failed read into its 400 ClientDisconnected; a deadline passed
            # (chassis/serving/deadline.py) is the client's slowness: 408.
            if isinstance(exc, RequestTooSlow) or isinstance(exc.__context__, RequestTooSlow):
                raise RequestTimeout("request timeout: the request was sent too slowly") from None
            raise
        except Exception as exc:
            # The server's own framing errors surface here, as the body is read: gunicorn's
            # InvalidChunkSize and ChunkMissingTerminator are neither OSError nor
            # ValueError, so werkzeug lets them through and Flask would answer 500.
            raise BadRequest("request body framing is invalid") from exc
        if over:
            raise RequestEntityTooLarge(f"request body is over the {len(data)}-byte limit")
        # A client gone before sending all it declared: gunicorn ends the body early without
        # an error, and the part that came may parse (a truncated request is never acted on).
        if self.content_length is not None and len(data) < self.content_length:
            raise BadRequest("request body is shorter than its Content-Length")
        return data.decode(errors="replace") if as_text else data

    def on_json_loading_failed(self, e: ValueError | None) -> NoReturn:
        if e is None:
            # Werkzeug answers 415 here; an API template answers 400 with the rule broken.
            raise BadRequest("request body must be JSON (Content-Type: application/json)")
        if isinstance(e, NestedTooDeeply):
            raise BadRequest("request body is nested too deeply")
        if isinstance(e, DuplicateKey):
            raise BadRequest(f"request body repeats the key {str(e)[:100]!r}")
        raise BadRequest("request body is not valid JSON")


def handle_http_exception(exc: HTTPException) -> Response | HTTPException:
    """Render `exc` as the envelope with its own status and headers (405 keeps `Allow`)."""
    if exc.response is not None:  # abort(response): the caller built the response already
        return exc
    code = exc.code or 500
    # A description passed to abort() is meant for the client; werkzeug's stock ones are
    # long HTML-era sentences, so the short status name is used instead.
    custom = exc.description != type(exc).description
    msg = str(exc.description) if custom else str(exc.name).lower()
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return error(code, msg, headers)


def handle_database_error(exc: sa_exc.SQLAlchemyError) -> Response:
    """Roll back, then answer by what the database layer says the error means: 504 for a
    query that ran out of time, 503 with Retry-After when the database is unreachable or
    busy, 500 for anything else."""
    db = get_db()
    db.remove_session()
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection within DB_POOL_TIMEOUT
        current_metrics().pool_timeouts.inc()
    logged = redacted(exc)
    kind = failure(exc)
    if kind == "timed_out":
        # Retrying at once would run the same slow query again: no Retry-After.
        log.warning("database query timed out: %s", type(exc).__name__, exc_info=logged)
        return error(504, "database query timed out")
    if kind == "unavailable":
        if connection_failed(exc):  # nothing ran: where and why say it all
            log.warning("%s", unreachable(db.engine.url, exc))
        else:
            log.warning("database unavailable: %s", type(exc).__name__, exc_info=logged)
        return error(503, "database unavailable, retry shortly", {"Retry-After": "1"})
    log.error("database error: %s", type(exc).__name__, exc_info=logged)
    return error(500, "internal server error")


def reject_oversized_body(limit: int | None, environ: WSGIEnvironment) -> None:
    """Answer 413 before the view runs when the declared body is over `limit` (called by
    `ChassisFlask.preprocess_request` with MAX_CONTENT_LENGTH, before every request hook).

    Werkzeug only checks MAX_CONTENT_LENGTH when the body is read, so a view that never
    reads it would otherwise accept any size.
    """
    declared = environ.get("CONTENT_LENGTH", "")  # the raw header: cheap to read
    if limit is not None and declared.isdigit() and int(declared) > limit:
        raise RequestEntityTooLarge(f"request body is over the {limit}-byte limit")


def reject_undecodable_path(environ: WSGIEnvironment) -> None:
    """Answer 400 before the view runs when the percent-decoded path is not UTF-8 (called by
    `ChassisFlask.preprocess_request`, before every request hook).

    werkzeug decodes the path with errors="replace", so `%FF%FE` and `%C0%AF` would both
    reach the view as the same two U+FFFD characters, naming one resource. PATH_INFO holds the
    path's bytes as latin-1 text (PEP 3333), so they can be checked here. An ASCII path,
    nearly every one, is valid UTF-8 and costs only `isascii()`."""
    path = environ.get("PATH_INFO", "")
    if path.isascii():
        return
    try:
        path.encode("latin-1").decode("utf-8")
    except UnicodeError:  # not bytes as latin-1 (a server breaking PEP 3333), or not UTF-8
        raise BadRequest("request path is not valid UTF-8") from None


def init_app(app: Flask) -> None:
    """Install the request class and the error handlers on `app`."""
    app.request_class = JSONRequest
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(sa_exc.SQLAlchemyError, handle_database_error)
