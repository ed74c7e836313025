"""What a view takes and answers, declared once: the view gets its input parsed by it, and the
API document (chassis/web/openapi.py) is written from it.

    @bp.put("/by-name/<name>")
    @operation(
        path={"name": TextParam(max_length=NAME_MAX_LENGTH)},
        body=ItemPut,
        answers={201: Item, 200: Item},
    )
    def put_item(name: str, body: ItemPut) -> Response: ...

`path` and `query` map a route variable or query parameter to its rule; the view receives
each parsed value under its name, and `body` (a pydantic model, checked by `parse_body`)
as `body`. `answers` maps each status the view returns itself to the model of the envelope's
`data`, or to a sentence for an error (`data` null). The statuses every view can answer
(chassis/web/openapi.py COMMON_ANSWERS, from the one list in chassis/web/envelope.py: 400
for input that breaks a rule, 404, 413, 429, 500, and 503 and 504 from the database unless
`database=False`) are added by the document, not declared.
A broken rule is a 400 naming the parameter, in the words `chassis.web.validation` uses.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from flask import Response, request
from pydantic import BaseModel
from werkzeug.exceptions import BadRequest

from chassis.web.validation import NO_NUL_PATTERN, parse_body, parse_int

View = Callable[..., Response]
# Where a declaration is kept on the view that Flask registers.
OPERATION_ATTRIBUTE = "chassis_operation"


class Parameter(Protocol):
    """A rule for one path or query value: how it is parsed, and its JSON Schema."""

    def parse(self, name: str, raw: str | None) -> Any:
        """Return the value, or raise BadRequest naming `name` and the rule."""
        ...

    def schema(self) -> dict[str, Any]:
        """Return the value's JSON Schema."""
        ...

    @property
    def required(self) -> bool:
        """Whether a request must send it."""
        ...


@dataclass(frozen=True)
class IntParam:
    """An integer from `minimum` to `maximum` in decimal digits; `default` when absent."""

    minimum: int
    maximum: int
    default: int | None = None
    description: str = ""

    @property
    def required(self) -> bool:
        """Whether a request must send it: when it has no default."""
        return self.default is None

    def parse(self, name: str, raw: str | None) -> int:
        """Return the integer, or raise BadRequest saying the range."""
        if raw is None and self.default is None:
            raise BadRequest(f"{name}: is required")
        default = self.minimum if self.default is None else self.default
        return parse_int(raw, name, default=default, minimum=self.minimum, maximum=self.maximum)

    def schema(self) -> dict[str, Any]:
        """Return the JSON Schema: an integer in range, with the default."""
        schema: dict[str, Any] = {
            "type": "integer",
            "minimum": self.minimum,
            "maximum": self.maximum,
        }
        if self.default is not None:
            schema["default"] = self.default
        return _described(schema, self.description)


@dataclass(frozen=True)
class TextParam:
    """Text of `min_length` to `max_length` characters, without NUL characters."""

    max_length: int
    min_length: int = 1
    description: str = ""
    required: bool = field(default=True, init=False)

    def parse(self, name: str, raw: str | None) -> str:
        """Return the text, or raise BadRequest saying the rule."""
        if raw is None or not self.min_length <= len(raw) <= self.max_length or "\x00" in raw:
            rule = f"must be {self.min_length} to {self.max_length} characters"
            raise BadRequest(f"{name}: {rule}, without NUL characters")
        return raw

    def schema(self) -> dict[str, Any]:
        """Return the JSON Schema: a string of bounded length, without NUL."""
        schema = {
            "type": "string",
            "minLength": self.min_length,
            "maxLength": self.max_length,
            "pattern": NO_NUL_PATTERN,
        }
        return _described(schema, self.description)


def _described(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {**schema, "description": description} if description else schema


@dataclass(frozen=True)
class Operation:
    """One view's declaration: its input rules and the answers it gives itself."""

    answers: Mapping[int, type[BaseModel] | str]
    body: type[BaseModel] | None = None
    path: Mapping[str, Parameter] = field(default_factory=dict)
    query: Mapping[str, Parameter] = field(default_factory=dict)
    database: bool = True

    def call(self, view: View, route_values: Mapping[str, str]) -> Response:
        """Parse the route values, the query and the body, then call `view` with them."""
        values: dict[str, Any] = {}
        for name, raw in route_values.items():
            rule = self.path.get(name)
            values[name] = rule.parse(name, raw) if rule else raw
        for name, rule in self.query.items():
            values[name] = rule.parse(name, request.args.get(name))
        if self.body is not None:
            values["body"] = parse_body(self.body)
        return view(**values)


def operation(
    *,
    answers: Mapping[int, type[BaseModel] | str],
    body: type[BaseModel] | None = None,
    path: Mapping[str, Parameter] | None = None,
    query: Mapping[str, Parameter] | None = None,
    database: bool = True,
) -> Callable[[View], View]:
    """Declare what the decorated view takes and answers (see the module's docstring)."""
    declared = Operation(answers, body, dict(path or {}), dict(query or {}), database)

    def decorate(view: View) -> View:
        if not (declared.path or declared.query or declared.body):
            # Nothing to parse: the view itself, marked, with no wrapper to call through.
            setattr(view, OPERATION_ATTRIBUTE, declared)
            return view

        @functools.wraps(view)
        def parsed(**route_values: str) -> Response:
            return declared.call(view, route_values)

        setattr(parsed, OPERATION_ATTRIBUTE, declared)
        return parsed

    return decorate


def declaration(view: Callable[..., Any]) -> Operation | None:
    """Return the declaration of a view registered on a Flask app, if it has one."""
    found = getattr(view, OPERATION_ATTRIBUTE, None)
    return found if isinstance(found, Operation) else None
