"""The envelope as Flask responses: `ok`, `created`, `error` and `envelope`, written by the
one writer (chassis/web/envelope.py, where the envelope's shape and every error status are
listed), the JSON provider Flask reads request bodies and writes `jsonify` with, and the
response class whose failed preconditions are envelopes too.

The JSON provider writes what chassis/web/envelope.py `encode` writes and non-ASCII
unescaped. It reads UTF-8 only and refuses an object that repeats a key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from flask import Response, current_app
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import PreconditionFailed

from chassis.observability.tracking import current_tracking_id
from chassis.web.envelope import CONTENT_TYPE, common_headers, encode, envelope_json

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment
    from werkzeug.wrappers.request import Request


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
        """Encode the types `json` cannot, as the envelope does; Flask's own for the rest."""
        try:
            return encode(o)
        except TypeError:
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


class ChassisResponse(Response):
    """Flask's response, whose failed `If-Match` is the 412 envelope rather than the file.

    `make_conditional` (what `send_file` and Flask's static route call) answers a
    `Range` it cannot satisfy by raising 416, which the error handler writes as the
    envelope, but a failed `If-Match` by setting 412 on the file's own response: the file
    would be the body. It raises 412 here instead."""

    def make_conditional(
        self,
        request_or_environ: WSGIEnvironment | Request,
        accept_ranges: bool | str = False,
        complete_length: int | None = None,
    ) -> ChassisResponse:
        """Make the answer conditional as werkzeug does, raising 412 where werkzeug sets it."""
        super().make_conditional(request_or_environ, accept_ranges, complete_length)
        if self.status_code == 412:
            self.close()  # the file send_file opened, never sent
            raise PreconditionFailed("If-Match matches no current version")
        return self


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
        mimetype=CONTENT_TYPE,
    )
    # The tracking id's header is added by its middleware, around every answer. A view that
    # wants caching passes its own Cache-Control in `headers`.
    for name, value in common_headers():
        response.headers.add(name, value)
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
