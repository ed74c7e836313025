"""The API's OpenAPI 3.1 document, written from the app's routes, served at /openapi.json.

Every route is in it (the document's own and the docs page's routes, `static`, HEAD and
OPTIONS aside). A view declared with `chassis.web.operations.operation` is documented with its
parameters, body and answers; the chassis adds the envelope around each answer, its headers,
and what it answers on any view's behalf (COMMON_ANSWERS below: 400 where the view takes
input, 404 where its path has variables, 413, 429 from nginx, 500, and 503 and 504 unless
declared with `database=False`). So a resource written the README's way is documented with
no extra step.

Operations on one resource are linked for clients and for schemathesis's stateful tests: an
answer whose `data` holds a field named like another operation's path variables (its `id`,
its `name`) links to that operation in the same blueprint.

Why not spectree (checked at 3.0.0): its request validation reads the body with
`get_json(silent=True) or {}` and pydantic's lax mode, so invalid JSON answers 422 "Field
required" with a bare error list, and "5" passes as an integer, where the chassis answers the
400 envelope naming the rule (chassis/web/validation.py); one process-wide instance caches its
document on itself whichever app asks; and it has no place for response headers or links.
"""

from __future__ import annotations

import http
import re
import tomllib
from typing import Any

from flask import Blueprint, Flask, Response, current_app
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from werkzeug.routing import Rule

from chassis.observability.tracking import VALID_TRACKING_ID
from chassis.settings import PYPROJECT, get_settings
from chassis.web.envelope import DATETIME_HEADER, ERROR_STATUSES
from chassis.web.operations import Operation, declaration

SPEC_PATH = "/openapi.json"
# Blueprints (and Flask's static route) that serve documents, not the API.
UNDOCUMENTED = {"openapi", "apidocs", "static"}
REF = "#/components/schemas/{model}"

# A route variable, with its converter: `<id>`, `<int:n>`, `<string(length=2):code>`.
_VARIABLE = re.compile(r"<(?:(?P<converter>\w+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
_CONVERTER_SCHEMAS: dict[str, dict[str, Any]] = {
    "int": {"type": "integer", "minimum": 0},
    "float": {"type": "number", "minimum": 0},
    "uuid": {"type": "string", "format": "uuid"},
}

# What the chassis answers on an operation's behalf, from the one list of error statuses.
COMMON_ANSWERS = {code: ERROR_STATUSES[code] for code in (400, 404, 413, 429, 500, 503, 504)}

bp = Blueprint("openapi", __name__)


@bp.get(SPEC_PATH)
def openapi_json() -> Response:
    """Serve the document (itself, not in the envelope: it is what tools read)."""
    document = current_app.extensions.get("openapi")
    if document is None:  # routes are fixed once the app serves: build once, on first use
        document = current_app.extensions["openapi"] = build_document(current_app)
    response = current_app.response_class(
        current_app.json.dumps(document), mimetype="application/json"
    )
    response.headers["Cache-Control"] = "no-cache"
    return response


def build_document(app: Flask) -> dict[str, Any]:
    """Write the OpenAPI 3.1 document for `app`'s routes."""
    routes = [
        (rule, method, declaration(app.view_functions[rule.endpoint]))
        for rule in sorted(app.url_map.iter_rules(), key=lambda rule: rule.rule)
        if rule.endpoint.split(".", 1)[0] not in UNDOCUMENTED
        for method in sorted(_methods(rule))
    ]
    refs, schemas = _model_schemas([op for _, _, op in routes if op is not None])
    tracking = get_settings(app).tracking_id_header
    paths: dict[str, dict[str, Any]] = {}
    for rule, method, op in routes:
        path, variables = _path(rule, op)
        described = _operation(app, rule, method, op, variables, refs, tracking)
        paths.setdefault(path, {})[method.lower()] = described
    _link(paths, schemas)
    return {
        "openapi": "3.1.0",
        "info": _info(app),
        "paths": paths,
        "components": {
            "schemas": {**schemas, "TrackingId": _tracking_id_schema()},
            "responses": {
                name: _answer(text, envelope_schema(code, {"type": "null"}), code, tracking)
                for code, (name, text) in COMMON_ANSWERS.items()
            },
            "headers": _headers(tracking),
        },
    }


def envelope_schema(code: int, data: dict[str, Any]) -> dict[str, Any]:
    """The envelope's JSON Schema, with `data`'s (chassis.web.envelope.envelope_body writes it;
    tests/chassis/test_openapi.py checks the keys agree)."""
    return {
        "type": "object",
        "required": ["code", "msg", "data", "tracking_id"],
        "properties": {
            "code": {"const": code},
            "msg": {"type": "string"},
            "data": data,
            "tracking_id": {"$ref": REF.format(model="TrackingId")},
        },
        "additionalProperties": False,
    }


Refs = dict[tuple[type[Any], JsonSchemaMode], dict[str, Any]]


def _methods(rule: Rule) -> set[str]:
    return (rule.methods or set()) - {"HEAD", "OPTIONS"}


def _model_schemas(operations: list[Operation]) -> tuple[Refs, dict[str, Any]]:
    """Each declared model's reference, and their JSON Schemas as components."""
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = []
    for op in operations:
        if op.body is not None:
            models.append((op.body, "validation"))
        models += [(m, "serialization") for m in op.answers.values() if not isinstance(m, str)]
    refs, defs = models_json_schema(list(dict.fromkeys(models)), ref_template=REF)
    return dict(refs), defs.get("$defs", {})


def _path(rule: Rule, op: Operation | None) -> tuple[str, list[dict[str, Any]]]:
    """The OpenAPI path of `rule` and its path parameters."""
    parameters = []
    for match in _VARIABLE.finditer(rule.rule):
        name, converter = match["name"], match["converter"] or "default"
        declared = op.path.get(name) if op else None
        schema = declared.schema() if declared else _CONVERTER_SCHEMAS.get(converter)
        parameters.append(
            {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}
        )
    return _VARIABLE.sub(r"{\g<name>}", rule.rule), parameters


def _operation(
    app: Flask,
    rule: Rule,
    method: str,
    op: Operation | None,
    variables: list[dict[str, Any]],
    refs: Refs,
    tracking: str,
) -> dict[str, Any]:
    summary, _, description = (app.view_functions[rule.endpoint].__doc__ or "").partition("\n")
    blueprint, _, _ = rule.endpoint.rpartition(".")
    document: dict[str, Any] = {
        # A view serving several methods gets one operation each.
        "operationId": rule.endpoint + ("" if len(_methods(rule)) == 1 else f".{method}"),
        "summary": summary.strip() or rule.endpoint,
        "tags": [blueprint or "service"],
    }
    if description.strip():
        document["description"] = " ".join(description.split())
    query = [
        {"name": name, "in": "query", "required": rule_.required, "schema": rule_.schema()}
        for name, rule_ in (op.query if op else {}).items()
    ]
    if variables or query:
        document["parameters"] = variables + query
    if op is not None and op.body is not None:
        schema = refs[(op.body, "validation")]
        document["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    takes_input = bool(variables or query or (op and op.body))
    document["responses"] = _responses(op, refs, tracking, takes_input, bool(variables))
    return document


def _responses(
    op: Operation | None, refs: Refs, tracking: str, takes_input: bool, has_path: bool
) -> dict[str, Any]:
    """The declared answers, then what the chassis answers on the operation's behalf."""
    responses: dict[str, Any] = {}
    # A view without a declaration: documented as answering 200 with any `data`.
    answers = op.answers if op else {200: "OK: `data` is undocumented."}
    for code, answer in answers.items():
        if isinstance(answer, str):
            data: dict[str, Any] = {"type": "null"} if code >= 400 else {}
            responses[str(code)] = _answer(answer, envelope_schema(code, data), code, tracking)
        else:
            schema = envelope_schema(code, refs[(answer, "serialization")])
            phrase = http.HTTPStatus(code).phrase
            responses[str(code)] = _answer(phrase, schema, code, tracking)
    common = {400: takes_input, 404: has_path, 413: True, 429: True, 500: True}
    if op is None or op.database:
        common |= {503: True, 504: True}
    for code, applies in common.items():
        if applies and str(code) not in responses:
            responses[str(code)] = {"$ref": f"#/components/responses/{COMMON_ANSWERS[code][0]}"}
    return dict(sorted(responses.items()))


def _answer(description: str, schema: dict[str, Any], code: int, tracking: str) -> dict[str, Any]:
    names = [tracking, "Cache-Control", DATETIME_HEADER] + (["Retry-After"] if code == 503 else [])
    headers = {name: {"$ref": f"#/components/headers/{name}"} for name in names}
    return {
        "description": description,
        "headers": headers,
        "content": {"application/json": {"schema": schema}},
    }


def _tracking_id_schema() -> dict[str, Any]:
    return {
        "type": "string",
        "pattern": f"^{VALID_TRACKING_ID.pattern}$",
        "description": "The request's id: the same in the tracking header and its log lines.",
    }


def _headers(tracking_header: str) -> dict[str, Any]:
    return {
        tracking_header: {
            "description": "The request's tracking id, as in the body.",
            "required": True,
            "schema": {"$ref": REF.format(model="TrackingId")},
        },
        "Cache-Control": {
            "description": "`no-store`: no browser or proxy keeps an API answer.",
            "required": True,
            "schema": {"type": "string"},
        },
        DATETIME_HEADER: {
            "description": "The server's time, ISO-8601 with offset, on every answer of the "
            "app (nginx's own errors have none).",
            "schema": {"type": "string", "format": "date-time"},
        },
        "Retry-After": {
            "description": "Seconds to wait before retrying.",
            "required": True,
            "schema": {"type": "string", "pattern": "^[0-9]+$"},
        },
    }


def _link(paths: dict[str, dict[str, Any]], schemas: dict[str, Any]) -> None:
    """Link each success answer to the operations its `data` names the path variables of."""
    operations = [
        (path, operation) for path, methods in paths.items() for operation in methods.values()
    ]
    for _, source in operations:
        for response in source["responses"].values():
            ref = response.get("content", {}).get("application/json", {}).get("schema", {})
            data_ref = ref.get("properties", {}).get("data", {}).get("$ref", "")
            fields = schemas.get(data_ref.rsplit("/", 1)[-1], {}).get("properties", {})
            links = {}
            # Tags are blueprints: only operations on the same resource are linked.
            for path, target in operations:
                variables = re.findall(r"{(\w+)}", path)
                if target is source or not variables or target["tags"] != source["tags"]:
                    continue
                if all(name in fields for name in variables):
                    links[target["operationId"]] = {
                        "operationId": target["operationId"],
                        "parameters": {
                            f"path.{name}": f"$response.body#/data/{name}" for name in variables
                        },
                    }
            if links:
                response["links"] = links


def _info(app: Flask) -> dict[str, Any]:
    """The service's name, version and description, from its pyproject.toml."""
    try:
        project = tomllib.loads(PYPROJECT.read_text())["project"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        project = {}
    return {
        "title": project.get("name", app.import_name),
        "version": project.get("version", "0"),
        "description": project.get("description", ""),
    }
