"""The example's declared models are the ones that run: ItemOut and ItemPage build every
answer, so what /openapi.json says of an item is what the service sends, and each length
limit is one constant that the column, the bodies, the answer and the path parameter share.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import BaseModel, ValidationError
from sqlalchemy import String, insert, select
from werkzeug.test import TestResponse

from app.items.models import NAME_MAX_LENGTH, NOTE_MAX_LENGTH, Item
from app.items.views import ItemCreate, ItemOut, ItemPage, ItemPut, put_item
from chassis.web.operations import TextParam, declaration

NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
ROW = {"name": "bolt", "quantity": 3, "note": None, "created_at": NOW, "updated_at": NOW}
# SQLite keeps a VARCHAR of any length; PostgreSQL would refuse this row.
TOO_LONG = "n" * (NAME_MAX_LENGTH + 1)


def data_of(response: TestResponse, status: int) -> Any:
    """Assert `response` answered `status`; return the envelope's `data`."""
    assert response.status_code == status
    assert response.json is not None
    return response.json["data"]


def test_the_answer_shows_every_column_in_order() -> None:
    """ItemOut's fields are the table's columns: a column added to Item but not to ItemOut
    fails here (if the API must not show a column, say so in this list)."""
    assert list(ItemOut.model_fields) == [column.key for column in Item.__table__.columns]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        pytest.param("post", "/api/items", {"name": "nut", "note": "M6"}, 201, id="create"),
        pytest.param("get", "/api/items/{id}", None, 200, id="read"),
        pytest.param("put", "/api/items/by-name/bolt", {"quantity": 9}, 200, id="put-update"),
        pytest.param("put", "/api/items/by-name/nut", {"quantity": 1}, 201, id="put-create"),
        pytest.param("delete", "/api/items/{id}", None, 200, id="delete"),
    ],
)
def test_every_item_answer_is_an_item_out(
    db_client: FlaskClient, method: str, path: str, body: Any, status: int
) -> None:
    """Each route's item is valid for ItemOut (strict, unknown fields forbidden), with its
    fields in ItemOut's order."""
    bolt = data_of(db_client.post("/api/items", json={"name": "bolt", "quantity": 3}), 201)
    url = path.format(id=bolt["id"])
    item = data_of(getattr(db_client, method)(url, json=body), status)
    ItemOut.model_validate_json(json.dumps(item))
    assert list(item) == list(ItemOut.model_fields)


def test_the_list_answer_is_an_item_page(db_client: FlaskClient) -> None:
    """The page is valid for ItemPage, each of its items for ItemOut, in their fields' order."""
    for name in ("bolt", "nut"):
        data_of(db_client.post("/api/items", json={"name": name}), 201)
    page = data_of(db_client.get("/api/items?limit=1"), 200)
    ItemPage.model_validate_json(json.dumps(page))
    assert list(page) == list(ItemPage.model_fields)
    assert [list(item) for item in page["items"]] == [list(ItemOut.model_fields)]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("id", None, id="never-flushed-no-id"),
        pytest.param("name", "", id="name-empty"),
        pytest.param("name", TOO_LONG, id="name-too-long"),
        pytest.param("name", "n\x00t", id="name-nul-char"),
        pytest.param("quantity", -1, id="quantity-negative"),
        pytest.param("quantity", "3", id="quantity-a-string"),
        pytest.param("note", "x" * (NOTE_MAX_LENGTH + 1), id="note-too-long"),
        pytest.param("created_at", NOW.replace(tzinfo=None), id="created-at-naive"),
    ],
)
def test_a_row_breaking_a_rule_is_refused_not_shown(field: str, value: object) -> None:
    """ItemOut raises for an item the bodies could not have written: nothing is coerced or
    passed through as it was."""
    with pytest.raises(ValidationError) as refused:
        ItemOut.model_validate(Item(**{"id": 1} | ROW | {field: value}))
    assert [error["loc"][0] for error in refused.value.errors()] == [field]


@pytest.fixture
def stored_too_long(db_app: Flask) -> int:
    """The id of a row whose name is over NAME_MAX_LENGTH, written past the API."""
    with db_app.app_context():
        session = db_app.extensions["db"].session
        written = insert(Item).values(ROW | {"name": TOO_LONG}).returning(Item.id)
        item_id: int = session.execute(written).scalar_one()
        session.commit()
    return item_id


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("get", "/api/items/{id}", id="read"),
        pytest.param("get", "/api/items", id="list"),
        pytest.param("delete", "/api/items/{id}", id="delete"),
    ],
)
def test_a_stored_row_the_answer_refuses_is_a_500_and_stays(
    db_app: Flask, stored_too_long: int, method: str, path: str
) -> None:
    """A row over a limit (SQLite enforces none) answers 500, not the row; DELETE builds its
    answer before it commits, so the row is still there."""
    response = getattr(db_app.test_client(), method)(path.format(id=stored_too_long))
    assert data_of(response, 500) is None
    with db_app.app_context():
        session = db_app.extensions["db"].session
        assert session.scalars(select(Item.name)).all() == [TOO_LONG]


def max_length(model: type[BaseModel], field: str) -> int:
    """The maxLength that `model`'s JSON Schema states for `field` (a nullable field's in its
    string branch)."""
    schema = model.model_json_schema()["properties"][field]
    (length,) = [
        branch["maxLength"] for branch in schema.get("anyOf", [schema]) if "maxLength" in branch
    ]
    assert isinstance(length, int)
    return length


@pytest.mark.parametrize(
    ("field", "limit"),
    [
        pytest.param("name", NAME_MAX_LENGTH, id="name"),
        pytest.param("note", NOTE_MAX_LENGTH, id="note"),
    ],
)
def test_the_column_bodies_and_answer_share_one_limit(field: str, limit: int) -> None:
    """The column's length is the one each body and the answer state for the field."""
    column_type = Item.__table__.c[field].type
    assert isinstance(column_type, String)
    assert column_type.length == limit
    models = [model for model in (ItemCreate, ItemPut, ItemOut) if field in model.model_fields]
    assert {model.__name__: max_length(model, field) for model in models} == {
        model.__name__: limit for model in models
    }


def test_the_name_in_the_path_takes_the_columns_limit() -> None:
    """PUT /api/items/by-name/<name> refuses what the column could not hold, and no less."""
    operation = declaration(put_item)
    assert operation is not None
    rule = operation.path["name"]
    assert isinstance(rule, TextParam)
    assert rule.max_length == NAME_MAX_LENGTH
