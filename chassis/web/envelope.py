"""The one JSON envelope every answer uses, and the one writer of its bytes and headers.

    {"code": 200, "msg": "ok", "data": {...} | [...] | null, "tracking_id": "3f2a..."}

`code` repeats the HTTP status, `msg` is a sentence a client can show or act on, `data`
is the payload (null on errors), and `tracking_id` matches the tracking header
(`X-Tracking-ID`) and every log line the request wrote. Every answer also carries
`X-DateTime`, the server time as ISO-8601 with offset, to the second, and
`Cache-Control: no-store`.

The error statuses the kit answers, and what each means (ERROR_STATUSES below):

    400 Bad Request          the body is not valid JSON, a field breaks a rule (named), or
                             the path is not UTF-8 once percent-decoded
    404 Not Found            no route, or no such resource
    405 Method Not Allowed   the `Allow` header lists the methods that are
    408 Request Timeout      the request was sent too slowly (gunicorn, nginx)
    409 Conflict             the resource already exists (a unique field is taken)
    412 Precondition Failed  a file's `If-Match` names no current version of it
    413 Content Too Large    the body is over MAX_CONTENT_LENGTH
    416 Range Not Satisfiable  a file's `Range` is malformed or starts past its end
    429 Too Many Requests    nginx in front: over the per-address connection or rate limit
    500 Internal Server Error  a bug; the traceback is in the log, never in the body
    502 Bad Gateway          nginx in front: the app is not answering
    503 Service Unavailable  the database is unreachable or busy: retry after Retry-After
    504 Gateway Timeout      a database query (or, behind nginx, the app) ran out of time

Answers made inside Flask (chassis/web/responses.py) and outside it (gunicorn's own error
pages, the metrics listener, the gevent and development servers) are written here alike.
This module imports neither Flask nor werkzeug, so a server may use it before it patches.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import json
import time
import uuid
from collections.abc import Iterable
from http import HTTPStatus
from typing import Any, NamedTuple

import orjson

DATETIME_HEADER = "X-DateTime"
CONTENT_TYPE = "application/json"
# Naive datetimes are taken as UTC, as `encode` takes them; one line each.
_ORJSON_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_APPEND_NEWLINE


class ErrorStatus(NamedTuple):
    """An error status the kit answers: its OpenAPI component name, and what it means."""

    component: str
    meaning: str


# The one list of error statuses: the table above, the API document's common answers
# (chassis/web/openapi.py) and the view declarations (chassis/web/operations.py) read it.
ERROR_STATUSES: dict[int, ErrorStatus] = {
    400: ErrorStatus("BadRequest", "The request breaks a rule: `msg` names the field or parameter."),
    404: ErrorStatus("NotFound", "No such route, or no such resource."),
    405: ErrorStatus("MethodNotAllowed", "The `Allow` header lists the methods that are."),
    408: ErrorStatus("RequestTimeout", "The request was sent too slowly."),
    409: ErrorStatus("Conflict", "The resource already exists: a unique field is taken."),
    412: ErrorStatus("PreconditionFailed", "A file's `If-Match` names no current version of it."),
    413: ErrorStatus("PayloadTooLarge", "The request body is over MAX_CONTENT_LENGTH."),
    416: ErrorStatus("RangeNotSatisfiable", "A file's `Range` is malformed or starts past its end."),
    429: ErrorStatus("TooManyRequests", "nginx in front: over the per-address connection or rate limit."),
    500: ErrorStatus("InternalServerError", "A bug: the traceback is in the log, never in the body."),
    502: ErrorStatus("BadGateway", "nginx in front: the app is not answering."),
    503: ErrorStatus("ServiceUnavailable", "The database is unavailable or busy: retry after Retry-After."),
    504: ErrorStatus("GatewayTimeout", "A database query (or, behind nginx, the app) ran out of time."),
}  # fmt: skip


def encode(o: Any) -> Any:
    """Encode what JSON has no type for: datetimes as ISO-8601 with offset (naive ones taken
    as UTC), dates as ISO-8601, UUIDs and Decimals as strings (no float rounding),
    dataclasses as objects."""
    if isinstance(o, dt.datetime):
        return (o if o.tzinfo else o.replace(tzinfo=dt.UTC)).isoformat()
    if isinstance(o, dt.date):
        return o.isoformat()
    if isinstance(o, uuid.UUID | decimal.Decimal):
        return str(o)
    if dataclasses.is_dataclass(o) and not isinstance(o, type):
        return dataclasses.asdict(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def to_json(value: Any) -> bytes:
    """`value` as one line of compact UTF-8 JSON ending in a newline.

    orjson writes it in C, several times faster than the json module (bench/instructions.py
    counts it); the json module takes over for what orjson refuses: integers past 64 bits,
    keys that are not strings, nesting past 254 levels. Unlike the json module, orjson writes
    NaN and the infinities as null, which keeps the body valid JSON."""
    try:
        return orjson.dumps(value, default=encode, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        text = json.dumps(value, default=encode, ensure_ascii=False, separators=(",", ":"))
        return (text + "\n").encode()


def envelope_body(code: int, msg: str, data: Any, tracking_id: str) -> dict[str, Any]:
    """The envelope itself, in its key order (nginx keeps a copy in nginx/kit/app.conf, and
    a test checks that it agrees)."""
    return {"code": code, "msg": msg, "data": data, "tracking_id": tracking_id}


def envelope_json(code: int, msg: str, data: Any, tracking_id: str) -> bytes:
    """The envelope as a response body (`to_json` of `envelope_body`)."""
    return to_json(envelope_body(code, msg, data, tracking_id))


class _DateHeader:
    """`X-DateTime`'s value, formatted once per second rather than once per answer."""

    def __init__(self) -> None:
        self.formatted = (-1, "")  # (second, text), replaced whole so threads never mix them

    def now(self) -> str:
        """The current time as ISO-8601 with offset (UTC), to the second."""
        second = int(time.time())
        known, text = self.formatted
        if second != known:
            text = dt.datetime.fromtimestamp(second, dt.UTC).isoformat()
            self.formatted = (second, text)
        return text


_date_header = _DateHeader()


def common_headers() -> list[tuple[str, str]]:
    """The headers every answer carries beside its body's: no cache keeps a copy (answers
    are per request and may be private), and the server's time."""
    return [("Cache-Control", "no-store"), (DATETIME_HEADER, _date_header.now())]


class Answer(NamedTuple):
    """An answer written outside Flask: the status line's text, the headers, the body."""

    status: str
    headers: list[tuple[str, str]]
    body: bytes


def error_answer(
    code: int,
    msg: str,
    *,
    tracking_header: str | None,
    tracking_id: str,
    headers: Iterable[tuple[str, str]] = (),
) -> Answer:
    """The error envelope for `code` with every header an app answer has, plus `headers`.

    The tracking id's header is written here unless `tracking_header` is None: inside the
    tracking middleware (chassis/observability/tracking.py), which adds it to every answer."""
    body = envelope_json(code, msg, None, tracking_id)
    tracking = [(tracking_header, tracking_id)] if tracking_header else []
    return Answer(
        f"{code} {HTTPStatus(code).phrase}",
        [
            ("Content-Type", CONTENT_TYPE),
            ("Content-Length", str(len(body))),
            *common_headers(),
            *tracking,
            *headers,
        ],
        body,
    )
