"""/openapi.json: a valid OpenAPI 3.1 document of every route, written from the code, with
the envelope and the tracking header around every answer, and links between operations."""

from __future__ import annotations

import tomllib
from typing import Any

import pytest
from flask import Blueprint, Flask, Response
from flask.testing import FlaskClient
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from chassis.web.envelope import envelope_body
from chassis.web.openapi import envelope_schema
from chassis.web.responses import ok
from harness.processes import ROOT
from tests.support.flask_app import AppFactory

COMMON = {"413", "429", "500"}
DATABASE = {"503", "504"}


def document(client: FlaskClient) -> dict[str, Any]:
    """GET /openapi.json and return it."""
    response = client.get("/openapi.json")
    assert (response.status_code, response.mimetype) == (200, "application/json")
    assert isinstance(response.json, dict)
    return response.json


def answers(doc: dict[str, Any], path: str, method: str) -> dict[str, dict[str, Any]]:
    """The operation's responses, with each shared one (a $ref) looked up."""
    found = {}
    for code, answer in doc["paths"][path][method]["responses"].items():
        if "$ref" in answer:
            answer = doc["components"]["responses"][answer["$ref"].rsplit("/", 1)[-1]]
        found[code] = answer
    return found


def test_the_document_is_valid_openapi_3_1(client: FlaskClient) -> None:
    """openapi-spec-validator accepts the document, which says it is OpenAPI 3.1."""
    doc = document(client)
    validate(doc)
    assert doc["openapi"] == "3.1.0"
    assert doc["info"]["title"]
    assert doc["info"]["version"]


def test_the_documents_own_routes_are_not_in_it(client: FlaskClient) -> None:
    """The document, the docs page and its files are not API operations."""
    paths = document(client)["paths"]
    assert [path for path in paths if path.startswith(("/openapi", "/docs", "/static"))] == []


def test_the_health_endpoints_are_documented_without_database_errors(client: FlaskClient) -> None:
    """/healthz never touches the database; /readyz answers its own 503 with Retry-After."""
    doc = document(client)
    assert set(answers(doc, "/healthz", "get")) == {"200"} | COMMON
    assert set(answers(doc, "/readyz", "get")) == {"200", "503"} | COMMON
    alive = doc["components"]["schemas"]["Alive"]
    assert alive["properties"]["status"]["const"] == "alive"
    assert "Retry-After" in answers(doc, "/readyz", "get")["503"]["headers"]


def test_every_answer_is_the_envelope_with_the_tracking_header(client: FlaskClient) -> None:
    """Each answer of each operation is the envelope (the keys envelope_body writes, `code`
    its status) and carries the tracking id header and Cache-Control."""
    doc = document(client)
    keys = list(envelope_body(200, "", None, ""))
    checked = 0
    for path, methods in doc["paths"].items():
        for method in methods:
            for code, answer in answers(doc, path, method).items():
                schema = answer["content"]["application/json"]["schema"]
                assert (list(schema["properties"]), schema["required"]) == (keys, keys)
                assert schema["properties"]["code"] == {"const": int(code)}
                assert {"X-Tracking-ID", "Cache-Control"} <= set(answer["headers"])
                checked += 1
    assert checked > 20


def test_the_envelope_schema_has_the_envelopes_keys() -> None:
    """The one schema of the envelope lists envelope_body's keys, in its order."""
    keys = list(envelope_body(201, "created", {}, "id"))
    schema = envelope_schema(201, {})
    assert (list(schema["properties"]), schema["required"]) == (keys, keys)
    assert schema["additionalProperties"] is False


def test_a_declared_operation_documents_its_parameters_body_and_answers(
    client: FlaskClient,
) -> None:
    """The test resource's declarations: query and path rules, the body's model with its
    rules, the declared answers, and what the chassis adds (400, 404 with a path variable,
    413, 429, 500, 503, 504)."""
    doc = document(client)
    listing = doc["paths"]["/test/records"]["get"]
    assert listing["parameters"] == [
        {
            "name": "limit",
            "in": "query",
            "required": False,
            "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
        }
    ]
    assert set(answers(doc, "/test/records", "get")) == {"200", "400"} | COMMON | DATABASE
    create = doc["paths"]["/test/records"]["post"]
    body = create["requestBody"]["content"]["application/json"]["schema"]
    schema = doc["components"]["schemas"][body["$ref"].rsplit("/", 1)[-1]]
    assert schema["required"] == ["name"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["name"]["maxLength"] == 100
    assert schema["properties"]["name"]["pattern"] == "^[^\\x00]*$"
    assert set(answers(doc, "/test/records", "post")) == {"201", "400", "409"} | COMMON | DATABASE
    put = doc["paths"]["/test/records/by-name/{name}"]["put"]
    (name,) = put["parameters"]
    assert (name["in"], name["schema"]["minLength"], name["schema"]["maxLength"]) == (
        "path",
        1,
        100,
    )
    assert set(answers(doc, "/test/records/by-name/{name}", "put")) == (
        {"200", "201", "400", "404"} | COMMON | DATABASE
    )


def test_an_answer_links_to_the_operations_on_the_same_row(client: FlaskClient) -> None:
    """A created record's `data.name` feeds the PUT by name (schemathesis follows it)."""
    created = document(client)["paths"]["/test/records"]["post"]["responses"]["201"]
    assert created["links"] == {
        "records.put_record": {
            "operationId": "records.put_record",
            "parameters": {"path.name": "$response.body#/data/name"},
        }
    }


def test_a_view_without_a_declaration_is_documented_as_an_envelope(make_app: AppFactory) -> None:
    """A plain view still appears: 200 with any `data`, and the chassis's answers."""
    app = make_app()
    extra = Blueprint("extra", __name__)

    @extra.get("/test/plain")
    def plain() -> Response:
        """Answer with nothing in particular."""
        return ok()

    app.register_blueprint(extra)
    doc = document(app.test_client())
    operation = doc["paths"]["/test/plain"]["get"]
    assert (operation["operationId"], operation["summary"]) == (
        "extra.plain",
        "Answer with nothing in particular.",
    )
    assert set(answers(doc, "/test/plain", "get")) == {"200"} | COMMON | DATABASE
    validate(doc)


def test_each_app_has_its_own_document(make_app: AppFactory) -> None:
    """A route added to one app is in that app's document only, whichever app asked first."""
    first, second = make_app(), make_app()
    document(first.test_client())
    second.add_url_rule("/test/only-here", "only_here", lambda: ok())
    assert "/test/only-here" in document(second.test_client())["paths"]
    assert "/test/only-here" not in document(first.test_client())["paths"]


def test_the_tracking_header_is_the_one_configured(make_app: AppFactory) -> None:
    """TRACKING_ID_HEADER names the documented header."""
    doc = document(make_app(tracking_id_header="X-Request-ID").test_client())
    assert "X-Request-ID" in answers(doc, "/healthz", "get")["200"]["headers"]
    assert "X-Request-ID" in doc["components"]["headers"]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        pytest.param("post", "/test/records", {"name": "c", "quantity": 2}, 201, id="create"),
        pytest.param("post", "/test/records", {"name": "a"}, 409, id="taken"),
        pytest.param("put", "/test/records/by-name/a", {"quantity": 3}, 200, id="update"),
        pytest.param("put", "/test/records/by-name/b", {"quantity": 1}, 201, id="upsert"),
        pytest.param("get", "/test/records?limit=5", None, 200, id="list"),
        pytest.param("get", "/test/records?limit=0", None, 400, id="bad-limit"),
        pytest.param("put", "/test/records/by-name/a", {"quantity": -1}, 400, id="bad-body"),
        pytest.param("get", "/healthz", None, 200, id="alive"),
    ],
)
def test_real_answers_match_their_documented_schema(
    db_app: Flask, method: str, path: str, body: Any, status: int
) -> None:
    """Each answer validates against the schema the document gives for its status (with
    a record named "a" stored first)."""
    client = db_app.test_client()
    client.post("/test/records", json={"name": "a"})
    doc = document(client)
    response = getattr(client, method)(path, json=body)
    assert response.status_code == status
    template = path.split("?")[0].replace("/by-name/a", "/by-name/{name}")
    template = template.replace("/by-name/b", "/by-name/{name}")
    schema = answers(doc, template, method)[str(status)]["content"]["application/json"]["schema"]
    # The schema's references (#/components/...) resolve in a root that holds them.
    validator = Draft202012Validator({**schema, "components": doc["components"]})
    assert [error.message for error in validator.iter_errors(response.json)] == []


def test_the_document_is_titled_with_the_services_name_and_version(app: Flask) -> None:
    """`info` is pyproject.toml's name, version and description (what a rename changes)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    info = app.test_client().get("/openapi.json").get_json()["info"]
    assert (info["title"], info["version"], info["description"]) == (
        project["name"],
        project["version"],
        project["description"],
    )
