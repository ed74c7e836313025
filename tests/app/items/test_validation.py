"""Bad input to `/api/items`: 400 in the envelope, naming the field, and nothing stored.

Each case runs on SQLite and PostgreSQL against a table holding one item, "bolt", and
checks afterwards that the table reads exactly as before: no row added, none changed or
deleted. Messages from pydantic are checked by their `field:` prefix only, since pydantic
owns the wording of its rules; messages the app writes itself are checked in full.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

HEADER = "X-Tracking-ID"
MAX_INT = 2**31 - 1
ID_RULE = f"id: must be an integer from 1 to {MAX_INT}"
LIMIT_RULE = "limit: must be an integer from 1 to 100"
OFFSET_RULE = f"offset: must be an integer from 0 to {MAX_INT}"
NOT_AN_OBJECT = "request body must be a JSON object"
NOT_JSON = "request body is not valid JSON"
WRONG_TYPE = "request body must be JSON (Content-Type: application/json)"


def refusal(response: TestResponse, status: int = 400) -> str:
    """Assert `response` is an error envelope with `status` and its tracking id; return msg."""
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = dict(response.json or {})
    msg = body.pop("msg")
    assert body == {"code": status, "data": None, "tracking_id": response.headers[HEADER]}
    assert isinstance(msg, str)
    return msg


def stored(client: FlaskClient) -> Any:
    """Return the first page of items as the API lists it."""
    response = client.get("/api/items?limit=100")
    assert response.status_code == 200
    assert response.json is not None
    return response.json["data"]


@pytest.fixture
def before(db_client: FlaskClient) -> Any:
    """The table holding one item, "bolt", as listed before the bad request."""
    response = db_client.post("/api/items", json={"name": "bolt", "quantity": 3, "note": "M6"})
    assert response.status_code == 201
    page = stored(db_client)
    assert page["total"] == 1
    return page


@pytest.mark.parametrize(
    ("kwargs", "msg"),
    [
        pytest.param({"json": {"quantity": 1}}, "name: ", id="name-missing"),
        pytest.param({"json": {"name": ""}}, "name: ", id="name-empty"),
        pytest.param({"json": {"name": "n" * 101}}, "name: ", id="name-101-chars"),
        pytest.param({"json": {"name": 123}}, "name: ", id="name-not-a-string"),
        pytest.param({"json": {"name": "nut", "quantity": "5"}}, "quantity: ", id="quantity-str"),
        pytest.param({"json": {"name": "nut", "quantity": 1.5}}, "quantity: ", id="quantity-float"),
        pytest.param({"json": {"name": "nut", "quantity": -1}}, "quantity: ", id="quantity-neg"),
        pytest.param(
            {"json": {"name": "nut", "quantity": 2**31}}, "quantity: ", id="quantity-too-large"
        ),
        pytest.param({"json": {"name": "nut", "quantity": True}}, "quantity: ", id="quantity-bool"),
        pytest.param({"json": {"name": "nut", "note": "x" * 1001}}, "note: ", id="note-1001-chars"),
        pytest.param({"json": {"name": "nut", "note": 5}}, "note: ", id="note-not-a-string"),
        pytest.param({"json": {"name": "nut", "color": "red"}}, "color: ", id="unknown-field"),
        # PostgreSQL cannot store NUL in text; SQLite can: refusing it keeps the backends alike.
        pytest.param({"json": {"name": "n\x00t"}}, "name: ", id="name-nul-char"),
        pytest.param({"json": {"name": "nut", "note": "M6\x00"}}, "note: ", id="note-nul-char"),
        pytest.param(
            {"data": b'{"name": "\\ud800"}', "content_type": "application/json"},
            "name: ",
            id="name-lone-surrogate",
        ),
        pytest.param({"json": [{"name": "nut"}]}, NOT_AN_OBJECT, id="body-list"),
        pytest.param({"json": "nut"}, NOT_AN_OBJECT, id="body-string"),
        pytest.param(
            {"data": b"null", "content_type": "application/json"}, NOT_AN_OBJECT, id="body-null"
        ),
        pytest.param(
            {"data": b'{"name": "nut",', "content_type": "application/json"},
            NOT_JSON,
            id="invalid-json",
        ),
        pytest.param(
            {"data": json.dumps({"name": "nut"}), "content_type": "text/plain"},
            WRONG_TYPE,
            id="text-plain",
        ),
        pytest.param({"data": b"", "content_type": "application/json"}, NOT_JSON, id="empty-body"),
    ],
)
def test_bad_post_body_is_refused_and_stores_nothing(
    db_client: FlaskClient, before: Any, kwargs: dict[str, Any], msg: str
) -> None:
    """POST with a broken body answers 400 naming the field or rule; no row is added."""
    assert refusal(db_client.post("/api/items", **kwargs)).startswith(msg)
    assert stored(db_client) == before


@pytest.mark.parametrize(
    ("path", "body", "msg"),
    [
        pytest.param("bolt", {"note": "no quantity"}, "quantity: ", id="quantity-missing"),
        pytest.param("bolt", {"quantity": -5}, "quantity: ", id="quantity-negative"),
        pytest.param("bolt", {"quantity": "5"}, "quantity: ", id="quantity-str"),
        pytest.param("bolt", {"quantity": 5, "color": "red"}, "color: ", id="unknown-field"),
        pytest.param("bolt", {"quantity": 5, "name": "nut"}, "name: ", id="name-in-body"),
        pytest.param("bolt", {"quantity": 5, "note": "x" * 1001}, "note: ", id="note-1001-chars"),
        pytest.param("bolt", [{"quantity": 5}], NOT_AN_OBJECT, id="body-list"),
        pytest.param(
            "n" * 101, {"quantity": 5}, "name: must be 1 to 100 characters", id="name-101-chars"
        ),
        pytest.param("n%00t", {"quantity": 5}, "name: ", id="name-nul-char"),
    ],
)
def test_bad_put_is_refused_and_leaves_the_item_unchanged(
    db_client: FlaskClient, before: Any, path: str, body: Any, msg: str
) -> None:
    """PUT with a broken body or name answers 400 naming it; "bolt" and the table stay."""
    response = db_client.put(f"/api/items/by-name/{path}", json=body)
    assert refusal(response).startswith(msg)
    assert stored(db_client) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        # PATH_INFO as a server passes it: the percent-decoded bytes as latin-1 text (PEP 3333).
        # Flask's test client would decode `%FF` with errors="replace" before the app saw it.
        pytest.param("put", "/api/items/by-name/\xff\xfe", id="put-name-ff-fe"),
        pytest.param("put", "/api/items/by-name/\xc0\xaf", id="put-name-overlong-slash"),
        pytest.param("put", "/api/items/by-name/bolt\x80", id="put-name-lone-continuation"),
        pytest.param("get", "/api/items/\xff", id="get-id-ff"),
        pytest.param("delete", "/api/items/\xe6\x97", id="delete-id-truncated"),
    ],
)
def test_a_path_that_is_not_utf8_is_refused_and_changes_nothing(
    db_client: FlaskClient, before: Any, method: str, path: str
) -> None:
    """A name or id whose percent-decoded bytes are not UTF-8 answers 400 saying so: werkzeug
    would pass `%FF%FE` and `%C0%AF` on as the same two U+FFFD, naming one item."""
    send = getattr(db_client, method)
    response = send("/", json={"quantity": 9}, environ_overrides={"PATH_INFO": path})
    assert refusal(response) == "request path is not valid UTF-8"
    assert stored(db_client) == before


@pytest.mark.parametrize(
    ("method", "url", "msg"),
    [
        pytest.param("get", "/api/items/abc", ID_RULE, id="id-letters"),
        pytest.param("get", "/api/items/0", ID_RULE, id="id-zero"),
        pytest.param("get", "/api/items/-1", ID_RULE, id="id-negative"),
        pytest.param("get", "/api/items/1.5", ID_RULE, id="id-fraction"),
        pytest.param("get", "/api/items/99999999999", ID_RULE, id="id-too-large"),
        pytest.param("get", "/api/items/%D9%A1", ID_RULE, id="id-non-ascii-digit"),
        pytest.param("get", "/api/items/--1", ID_RULE, id="id-double-minus"),
        pytest.param("delete", "/api/items/abc", ID_RULE, id="delete-id-letters"),
        pytest.param("delete", "/api/items/0", ID_RULE, id="delete-id-zero"),
        pytest.param("get", "/api/items?limit=0", LIMIT_RULE, id="limit-zero"),
        pytest.param("get", "/api/items?limit=101", LIMIT_RULE, id="limit-101"),
        pytest.param("get", "/api/items?limit=abc", LIMIT_RULE, id="limit-letters"),
        pytest.param("get", "/api/items?limit=", LIMIT_RULE, id="limit-empty"),
        pytest.param("get", "/api/items?limit=--5", LIMIT_RULE, id="limit-double-minus"),
        pytest.param("get", "/api/items?offset=-1", OFFSET_RULE, id="offset-negative"),
        pytest.param("get", "/api/items?offset=x", OFFSET_RULE, id="offset-letters"),
    ],
)
def test_bad_id_or_page_parameter_is_refused(
    db_client: FlaskClient, before: Any, method: str, url: str, msg: str
) -> None:
    """A path id or paging parameter out of its rule answers 400 naming it; nothing changes."""
    assert refusal(getattr(db_client, method)(url)) == msg
    assert stored(db_client) == before


def test_body_over_the_size_limit_is_refused_and_stores_nothing(
    db_app: Flask, db_client: FlaskClient, before: Any
) -> None:
    """A POST body over MAX_CONTENT_LENGTH (1 MiB by default) answers 413; no row is added."""
    limit = db_app.config["MAX_CONTENT_LENGTH"]
    assert limit == 1024 * 1024
    # A valid item padded with JSON whitespace: only its size is wrong.
    body = b'{"name": "nut", "quantity": 1}'.ljust(limit + 1)
    response = db_client.post("/api/items", data=body, content_type="application/json")
    assert refusal(response, 413) == f"request body is over the {limit}-byte limit"
    assert stored(db_client) == before


def test_body_at_the_size_limit_is_accepted(
    db_app: Flask, db_client: FlaskClient, before: Any
) -> None:
    """A body of exactly MAX_CONTENT_LENGTH bytes is read and stored: the limit is inclusive."""
    limit = db_app.config["MAX_CONTENT_LENGTH"]
    body = b'{"name": "nut", "quantity": 1}'.ljust(limit)
    response = db_client.post("/api/items", data=body, content_type="application/json")
    assert response.status_code == 201
    assert stored(db_client)["total"] == before["total"] + 1


@pytest.mark.parametrize(
    ("body", "msg"),
    [
        pytest.param({"name": ""}, "name: must be at least 1 character", id="name-empty"),
        pytest.param({"name": "n" * 101}, "name: must be at most 100 characters", id="name-long"),
        pytest.param(
            {"name": "nut", "note": "x" * 1001},
            "note: must be at most 1000 characters",
            id="note-long",
        ),
    ],
)
def test_a_length_error_counts_characters(
    db_client: FlaskClient, body: dict[str, Any], msg: str
) -> None:
    """A body's text too short or too long is said in characters, as a path parameter's is,
    never in pydantic's "items"."""
    assert refusal(db_client.post("/api/items", json=body)) == msg
