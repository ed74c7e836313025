"""The example's five operations in /openapi.json: their parameters, bodies, answers and the
links that chain them on one item (what schemathesis's stateful phase follows)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

# What the chassis adds to every operation, and to those that reach the database.
COMMON = {"413", "429", "500", "503", "504"}


@pytest.fixture
def doc(client: FlaskClient) -> dict[str, Any]:
    """The service's document."""
    response = client.get("/openapi.json")
    assert response.status_code == 200
    assert isinstance(response.json, dict)
    return response.json


def schema_of(doc: dict[str, Any], ref: dict[str, str]) -> dict[str, Any]:
    """The component a `$ref` names."""
    found: dict[str, Any] = doc["components"]["schemas"][ref["$ref"].rsplit("/", 1)[-1]]
    return found


@pytest.mark.parametrize(
    ("path", "method", "operation_id", "statuses"),
    [
        pytest.param("/api/items", "post", "items.create_item", {"201", "400", "409"}, id="create"),
        pytest.param("/api/items", "get", "items.list_items", {"200", "400"}, id="list"),
        pytest.param("/api/items/{id}", "get", "items.get_item", {"200", "400", "404"}, id="read"),
        pytest.param("/api/items/by-name/{name}", "put", "items.put_item", {"200", "201", "400", "404"}, id="put"),
        pytest.param("/api/items/{id}", "delete", "items.delete_item", {"200", "400", "404"}, id="delete"),
    ],
)  # fmt: skip
def test_each_operation_documents_every_status_it_answers(
    doc: dict[str, Any], path: str, method: str, operation_id: str, statuses: set[str]
) -> None:
    """Its own answers, and the chassis's (too large, nginx's limit, bug, database)."""
    operation = doc["paths"][path][method]
    assert operation["operationId"] == operation_id
    assert operation["tags"] == ["items"]
    assert set(operation["responses"]) == statuses | COMMON


def test_the_page_parameters_are_documented_with_their_ranges(doc: dict[str, Any]) -> None:
    """limit 1-100 (20), offset from 0 (0): the rules list_items enforces."""
    parameters = {p["name"]: p for p in doc["paths"]["/api/items"]["get"]["parameters"]}
    limit = {k: v for k, v in parameters["limit"]["schema"].items() if k != "description"}
    assert limit == {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}
    assert (parameters["offset"]["schema"]["minimum"], parameters["offset"]["required"]) == (
        0,
        False,
    )


def test_the_item_id_is_a_positive_integer(doc: dict[str, Any]) -> None:
    """GET and DELETE name the same `id` path parameter, an INTEGER from 1."""
    for method in ("get", "delete"):
        (parameter,) = doc["paths"]["/api/items/{id}"][method]["parameters"]
        assert (parameter["name"], parameter["in"], parameter["schema"]["type"]) == (
            "id",
            "path",
            "integer",
        )
        assert (parameter["schema"]["minimum"], parameter["schema"]["maximum"]) == (1, 2**31 - 1)


def test_the_bodies_are_the_views_models(doc: dict[str, Any]) -> None:
    """POST takes ItemCreate (name required), PUT takes ItemPut (quantity required); both
    refuse unknown fields and say the columns' limits."""
    create = doc["paths"]["/api/items"]["post"]["requestBody"]
    put = doc["paths"]["/api/items/by-name/{name}"]["put"]["requestBody"]
    create_schema = schema_of(doc, create["content"]["application/json"]["schema"])
    put_schema = schema_of(doc, put["content"]["application/json"]["schema"])
    assert (create["required"], create_schema["required"], put_schema["required"]) == (
        True,
        ["name"],
        ["quantity"],
    )
    assert create_schema["additionalProperties"] is False
    assert put_schema["additionalProperties"] is False
    assert create_schema["properties"]["quantity"]["maximum"] == 2**31 - 1
    assert create_schema["properties"]["name"]["maxLength"] == 100


def test_an_item_answer_is_the_envelope_around_the_item(doc: dict[str, Any]) -> None:
    """201 from POST: `data` is the item with every field, and nothing else."""
    created = doc["paths"]["/api/items"]["post"]["responses"]["201"]
    envelope = created["content"]["application/json"]["schema"]
    item = schema_of(doc, envelope["properties"]["data"])
    assert set(item["properties"]) == {"id", "name", "quantity", "note", "created_at", "updated_at"}
    assert item["additionalProperties"] is False
    assert envelope["properties"]["code"] == {"const": 201}


def test_a_created_item_links_to_reading_updating_and_deleting_it(doc: dict[str, Any]) -> None:
    """POST's 201 gives GET and DELETE its `id` and PUT its `name`."""
    links = doc["paths"]["/api/items"]["post"]["responses"]["201"]["links"]
    assert {name: link["parameters"] for name, link in links.items()} == {
        "items.get_item": {"path.id": "$response.body#/data/id"},
        "items.delete_item": {"path.id": "$response.body#/data/id"},
        "items.put_item": {"path.name": "$response.body#/data/name"},
    }
