"""Turn every error into the JSON envelope, keeping its status and headers.

Only `HTTPException` gets a handler. Flask wraps any other unhandled exception in
`InternalServerError` after logging it with its traceback (`Flask.handle_exception`), so
that handler serves the 500 too. Registering a handler for `Exception` instead is the
classic trap: it also catches routing's 404 and 405 and turns them into 500s.
See https://flask.palletsprojects.com/en/stable/errorhandling/#generic-exception-handlers
"""

from __future__ import annotations

from typing import NoReturn

from flask import Flask, Request, Response, request
from werkzeug.exceptions import BadRequest, HTTPException, RequestEntityTooLarge

from chassis.responses import NestedTooDeeply, error


class JSONRequest(Request):
    """Request whose JSON parsing failures say what is wrong, in the envelope's words."""

    def on_json_loading_failed(self, e: ValueError | None) -> NoReturn:
        if e is None:
            # Werkzeug answers 415 here; an API template answers 400 with the rule broken.
            raise BadRequest("request body must be JSON (Content-Type: application/json)")
        if isinstance(e, NestedTooDeeply):
            raise BadRequest("request body is nested too deeply")
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


def reject_oversized_body() -> None:
    """Answer 413 before the view runs when the declared body is over the limit.

    Werkzeug only checks MAX_CONTENT_LENGTH when the body is read, so a view that never
    reads it would otherwise accept any size.
    """
    limit = request.max_content_length
    declared = request.environ.get("CONTENT_LENGTH", "")  # the raw header: cheap to read
    if limit is not None and declared.isdigit() and int(declared) > limit:
        raise RequestEntityTooLarge(f"request body is over the {limit}-byte limit")


def init_app(app: Flask) -> None:
    """Install the request class and the error handlers on `app`."""
    app.request_class = JSONRequest
    app.before_request(reject_oversized_body)
    app.register_error_handler(HTTPException, handle_http_exception)
