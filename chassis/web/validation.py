"""Request input parsing whose errors name the field and the rule (400 in the envelope).

Bodies are validated with pydantic models in strict mode: "5" is not an integer, unknown
fields are refused, and every message reads `field: rule`, for example
`quantity: Input should be greater than or equal to 0`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any, TypeVar

from flask import request
from pydantic import AfterValidator, BaseModel, Field, ValidationError
from werkzeug.exceptions import BadRequest

ModelT = TypeVar("ModelT", bound=BaseModel)

_INTEGER = re.compile(r"-?[0-9]{1,18}")

# PostgreSQL INTEGER's range: a larger id or count would fail in the database, not here.
MAX_INT = 2**31 - 1


def storable(value: str) -> str:
    """Refuse what a database cannot store as given: NUL characters (PostgreSQL refuses
    them, SQLite keeps them) and lone surrogates (valid in JSON, not encodable as UTF-8)."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text (no lone surrogates)") from None
    return value


# JSON Schema's way of saying `storable`'s first rule, in /openapi.json (the second, no lone
# surrogates, it cannot say: a JSON string may hold them).
NO_NUL_PATTERN = "^[^\\x00]*$"

# The type for every string field of a request body: stored exactly, on every backend.
Text = Annotated[
    str, AfterValidator(storable), Field(json_schema_extra={"pattern": NO_NUL_PATTERN})
]


def parse_body(model: type[ModelT]) -> ModelT:
    """Validate the JSON body against `model`, or raise 400 naming each broken field."""
    body = (
        request.get_json()
    )  # 400 for a wrong content type or invalid JSON (chassis/web/errors.py)
    if not isinstance(body, dict):
        raise BadRequest("request body must be a JSON object")
    try:
        return model.model_validate(whole_numbers(body), strict=True)
    except ValidationError as exc:
        raise BadRequest(describe(exc)) from None


def whole_numbers(body: dict[str, Any]) -> dict[str, Any]:
    """Make each float without a fraction in `body` (`5.0`, `1e3`) an int, in place.

    JSON has one number type, and JSON Schema's `integer` (what /openapi.json promises) is
    any number without a fraction: a client may well write 5 as `5.0`, which strict
    validation would refuse. Strings stay strings ("5" is still no integer). A loop, not
    recursion: the body may be nested as deep as the JSON parser allows."""
    stack: list[dict[str, Any] | list[Any]] = [body]
    while stack:
        node = stack.pop()
        keys: Iterable[Any] = list(node) if isinstance(node, dict) else range(len(node))
        for key in keys:
            value = node[key]
            if isinstance(value, float) and value.is_integer():
                node[key] = int(value)
            elif isinstance(value, dict | list):
                stack.append(value)
    return body


# At most this many `field: rule` parts in one message: a body with 20,000 unknown keys
# would otherwise get an answer of 800 KB, built and sent for a request of 200 KB.
MAX_REPORTED_ERRORS = 10


def describe(exc: ValidationError) -> str:
    """Return pydantic's errors as `field: rule; field: rule` (the first ten, then a count)."""
    errors = exc.errors(include_url=False, include_input=False)
    parts = []
    for err in errors[:MAX_REPORTED_ERRORS]:
        # A field name is the client's own text (an unknown key): long ones are cut.
        field = ".".join(str(part) for part in err["loc"])[:100] or "body"
        parts.append(f"{field}: {_rule(err)}")
    if len(errors) > MAX_REPORTED_ERRORS:
        parts.append(f"and {len(errors) - MAX_REPORTED_ERRORS} more errors")
    return "; ".join(parts)


# pydantic checks the length of a `Text` after its validator, as of any sized value: its
# message says "items". Text is counted in characters, as the path parameters say.
_LENGTH_ERRORS = {"too_short", "too_long", "string_too_short", "string_too_long"}


def _characters(count: int) -> str:
    return f"{count} character" if count == 1 else f"{count} characters"


def _rule(err: Any) -> str:
    """The rule an error broke, in the words a client reads: lengths of text in characters."""
    ctx = err.get("ctx", {})
    text = err["type"].startswith("string") or ctx.get("field_type") == "Value"
    if err["type"] not in _LENGTH_ERRORS or not text:
        return str(err["msg"])
    if "min_length" in ctx:
        return f"must be at least {_characters(ctx['min_length'])}"
    return f"must be at most {_characters(ctx['max_length'])}"


def parse_int(raw: str | None, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """Parse a path or query value as an integer in range, or raise 400 naming it."""
    if raw is None:
        return default
    rule = f"{name}: must be an integer from {minimum} to {maximum}"
    if not _INTEGER.fullmatch(raw):
        raise BadRequest(rule)
    value = int(raw)
    if not minimum <= value <= maximum:
        raise BadRequest(rule)
    return value
