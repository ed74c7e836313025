"""The one JSON envelope that every response body uses.

    {"code": 200, "msg": "ok", "data": {...} | [...] | null, "tracking_id": "3f2a..."}

`code` repeats the HTTP status, `msg` is a sentence a client can show or act on, `data`
is the payload (null on errors), and `tracking_id` matches the `X-Tracking-ID` response
header and every log line the request wrote. Every response also carries `X-DateTime`,
the server time as ISO-8601 with offset, to the second.

Error statuses and their messages:

    400 bad request          the body is not valid JSON, or a field breaks a rule (named)
    404 not found            no route, or no such resource
    405 method not allowed   the `Allow` header lists the methods that are
    409 conflict             the resource already exists (a unique field is taken)
    413 request entity too large  the body is over MAX_CONTENT_LENGTH
    500 internal server error     a bug; the traceback is in the log, never in the body
    503 service unavailable  the database is down or its connection pool is exhausted

The JSON provider writes datetimes as ISO-8601 with offset (naive ones are taken as UTC),
UUIDs as strings, Decimals as strings (no float rounding) and non-ASCII unescaped. It reads
UTF-8 only and refuses an object that repeats a key.
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import orjson
from flask import Response, current_app
from flask.json.provider import DefaultJSONProvider

from chassis.tracking import current_tracking_id

DATETIME_HEADER = "X-DateTime"
# Naive datetimes are taken as UTC, as `JSONProvider.default` takes them; one line each.
_ORJSON_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_APPEND_NEWLINE


class NestedTooDeeply(ValueError):
    """A JSON document nested deeper than the parser's recursion allows."""


class DuplicateKey(ValueError):
    """A JSON object naming one key twice."""


def _unique_keys(hook: Callable[[dict[str, Any]], Any] | None) -> Callable[..., Any]:
    """An `object_pairs_hook` refusing a repeated key, then applying `hook` (if any)."""

    def build(pairs: list[tuple[str, Any]]) -> Any:
        built = dict(pairs)
        if len(built) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise DuplicateKey(key)
                seen.add(key)
        return hook(built) if hook else built

    return build


class JSONProvider(DefaultJSONProvider):
    """Flask's JSON provider with lossless, offset-carrying encodings."""

    ensure_ascii = False
    sort_keys = False

    @staticmethod
    def default(o: Any) -> Any:
        """Encode the types `json` cannot."""
        if isinstance(o, dt.datetime):
            return (o if o.tzinfo else o.replace(tzinfo=dt.UTC)).isoformat()
        if isinstance(o, dt.date):
            return o.isoformat()
        if isinstance(o, uuid.UUID | decimal.Decimal):
            return str(o)
        return DefaultJSONProvider.default(o)

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        """Parse JSON; a document nested past the recursion limit (5,000 `[`) is invalid
        input, not an internal error: RecursionError is not a ValueError, so Flask would
        let it through as a 500 with a traceback."""
        if isinstance(s, bytes | bytearray):
            # RFC 8259 section 8.1: JSON between systems is UTF-8. json.loads would guess
            # UTF-16 or UTF-32 from the first bytes and accept the body; a BOM stays
            # tolerated, as json.loads tolerates it.
            s = s.decode("utf-8-sig")
        # Parsers disagree on `{"a": 1, "a": 2}` (the first wins, the last, or an error),
        # so a proxy or validator in front may have read another value than this app would
        # store: refuse it. A caller's own hooks still run on the unique objects.
        if "object_pairs_hook" not in kwargs:
            kwargs["object_pairs_hook"] = _unique_keys(kwargs.pop("object_hook", None))
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise NestedTooDeeply("nested too deeply") from None


def envelope_body(code: int, msg: str, data: Any, tracking_id: str) -> dict[str, Any]:
    """The envelope itself, in its key order: the one definition every writer uses (the app
    here, gunicorn's own error pages in chassis/gunicorn.py; nginx keeps a copy in
    nginx/kit/app.conf, and a test checks that it agrees)."""
    return {"code": code, "msg": msg, "data": data, "tracking_id": tracking_id}


def to_json(value: Any) -> bytes:
    """`value` as one line of compact UTF-8 JSON ending in a newline, encoded as
    `JSONProvider` encodes it.

    orjson writes it in C, several times faster than the json module (bench/instructions.py
    counts it); the json module takes over for what orjson refuses: integers past 64 bits,
    keys that are not strings, nesting past 254 levels. Unlike the json module, orjson writes
    NaN and the infinities as null, which keeps the body valid JSON."""
    try:
        return orjson.dumps(value, default=JSONProvider.default, option=_ORJSON_OPTIONS)
    except orjson.JSONEncodeError:
        text = json.dumps(
            value, default=JSONProvider.default, ensure_ascii=False, separators=(",", ":")
        )
        return (text + "\n").encode()


def envelope_json(code: int, msg: str, data: Any, tracking_id: str) -> bytes:
    """The envelope as a response body (`to_json` of `envelope_body`)."""
    return to_json(envelope_body(code, msg, data, tracking_id))


class _DateHeader:
    """`X-DateTime`'s value, formatted once per second rather than once per response."""

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


def envelope(
    data: Any = None,
    *,
    code: int = 200,
    msg: str = "ok",
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Build a response holding `data` in the envelope, with status `code`."""
    response = current_app.response_class(
        envelope_json(code, msg, data, current_tracking_id()),
        status=code,
        mimetype="application/json",
    )
    # API answers are per request and may be private: no browser or proxy keeps a copy.
    # A view that wants caching passes its own Cache-Control in `headers`.
    response.headers.add("Cache-Control", "no-store")
    response.headers.add(DATETIME_HEADER, _date_header.now())
    if headers:
        response.headers.update(headers)
    return response


def ok(data: Any = None, msg: str = "ok") -> Response:
    """200 with `data`."""
    return envelope(data, msg=msg)


def created(data: Any, msg: str = "created") -> Response:
    """201 with the created resource."""
    return envelope(data, code=201, msg=msg)


def error(code: int, msg: str, headers: Mapping[str, str] | None = None) -> Response:
    """An error envelope: `data` is null and `msg` says what went wrong."""
    return envelope(None, code=code, msg=msg, headers=headers)
