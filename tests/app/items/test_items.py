"""The example resource `/api/items`: each endpoint's behaviour, on SQLite and on PostgreSQL.

Every test runs once per backend (`db_client`) inside a transaction rolled back after it,
so each starts with an empty `items` table. Ids come from the database and are never
assumed: PostgreSQL's sequence is not rolled back with the transaction.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from typing import Any
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from werkzeug.test import TestResponse

from harness.processes import wait_until
from tests.support.flask_app import AppFactory

HEADER = "X-Tracking-ID"


def unwrap(response: TestResponse, status: int, msg: str = "ok") -> Any:
    """Assert `response` is the envelope with `status`, `msg` and its tracking id; return data."""
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = dict(response.json or {})
    data = body.pop("data")
    assert body == {"code": status, "msg": msg, "tracking_id": response.headers[HEADER]}
    return data


def create(client: FlaskClient, **fields: Any) -> dict[str, Any]:
    """Create an item through the API and return it."""
    item: dict[str, Any] = unwrap(client.post("/api/items", json=fields), 201, "created")
    return item


def instant(value: str) -> dt.datetime:
    """Parse an API timestamp, which must be ISO-8601 in UTC with the "+00:00" offset."""
    assert value.endswith("+00:00")
    return dt.datetime.fromisoformat(value)


def test_create_returns_the_item_with_defaults(db_client: FlaskClient) -> None:
    """POST answers 201 with the id, quantity 0, note null and equal UTC timestamps."""
    before = dt.datetime.now(dt.UTC)
    item = create(db_client, name="bolt")
    after = dt.datetime.now(dt.UTC)
    assert isinstance(item["id"], int)
    assert item == {
        "id": item["id"],
        "name": "bolt",
        "quantity": 0,
        "note": None,
        "created_at": item["created_at"],
        "updated_at": item["created_at"],
    }
    assert before <= instant(item["created_at"]) <= after


def test_create_stores_every_field(db_client: FlaskClient) -> None:
    """What POST answers is what GET reads back, quantity and note included."""
    item = create(db_client, name="nut", quantity=12, note="M6, zinc")
    assert (item["quantity"], item["note"]) == (12, "M6, zinc")
    assert unwrap(db_client.get(f"/api/items/{item['id']}"), 200) == item


def test_create_keeps_non_ascii_names_and_notes(db_client: FlaskClient) -> None:
    """Names and notes round-trip unchanged outside ASCII."""
    item = create(db_client, name="écrou ナット", note="Größe 🔩")
    assert (item["name"], item["note"]) == ("écrou ナット", "Größe 🔩")
    assert unwrap(db_client.get(f"/api/items/{item['id']}"), 200) == item


def test_create_with_a_taken_name_is_409_and_keeps_the_original(db_client: FlaskClient) -> None:
    """A second POST with the same name answers 409 and leaves the first item as it was."""
    original = create(db_client, name="bolt", quantity=3, note="first")
    response = db_client.post("/api/items", json={"name": "bolt", "quantity": 9, "note": "second"})
    assert unwrap(response, 409, "an item named 'bolt' already exists") is None
    assert unwrap(db_client.get(f"/api/items/{original['id']}"), 200) == original
    assert unwrap(db_client.get("/api/items"), 200)["total"] == 1


def test_get_returns_the_item(db_client: FlaskClient) -> None:
    """GET by id answers 200 with the item."""
    item = create(db_client, name="washer", quantity=5)
    assert unwrap(db_client.get(f"/api/items/{item['id']}"), 200) == item


def test_get_an_unknown_id_is_404_naming_it(db_client: FlaskClient) -> None:
    """GET of an id that does not exist answers 404 with the id in the message."""
    assert unwrap(db_client.get("/api/items/999"), 404, "item 999 not found") is None


def test_list_is_empty_with_the_default_page(db_client: FlaskClient) -> None:
    """With no items the list is empty, total 0, limit 20 and offset 0."""
    page = unwrap(db_client.get("/api/items"), 200)
    assert page == {"items": [], "total": 0, "limit": 20, "offset": 0}


@pytest.fixture
def twenty_five(db_client: FlaskClient) -> list[dict[str, Any]]:
    """Twenty-five items, named in descending order so that name order is not id order."""
    return [create(db_client, name=f"item-{n:02}", quantity=n) for n in range(24, -1, -1)]


@pytest.mark.parametrize(
    ("query", "limit", "offset"),
    [
        pytest.param("", 20, 0, id="default-page"),
        pytest.param("?limit=10", 10, 0, id="first-page"),
        pytest.param("?limit=10&offset=10", 10, 10, id="middle-page"),
        pytest.param("?limit=10&offset=20", 10, 20, id="last-page-partial"),
        pytest.param("?offset=24", 20, 24, id="last-item"),
        pytest.param("?offset=25", 20, 25, id="past-the-end"),
        pytest.param("?limit=100", 100, 0, id="max-limit"),
        pytest.param("?limit=1&offset=0", 1, 0, id="one"),
    ],
)
def test_list_pages_items_in_id_order(
    db_client: FlaskClient,
    twenty_five: list[dict[str, Any]],
    query: str,
    limit: int,
    offset: int,
) -> None:
    """A page holds the items from `offset` in id order, at most `limit`, with the total."""
    page = unwrap(db_client.get(f"/api/items{query}"), 200)
    assert page == {
        "items": twenty_five[offset : offset + limit],
        "total": 25,
        "limit": limit,
        "offset": offset,
    }
    ids = [item["id"] for item in page["items"]]
    assert ids == sorted(ids)


def test_list_last_page_holds_the_remainder(
    db_client: FlaskClient, twenty_five: list[dict[str, Any]]
) -> None:
    """limit=10&offset=20 over 25 items returns the last 5 and total 25."""
    page = unwrap(db_client.get("/api/items?limit=10&offset=20"), 200)
    assert len(page["items"]) == 5
    assert page["total"] == 25


def test_put_creates_a_new_item(db_client: FlaskClient) -> None:
    """PUT to an unknown name answers 201 "created" with the new item."""
    before = dt.datetime.now(dt.UTC)
    response = db_client.put("/api/items/by-name/bolt", json={"quantity": 3, "note": "M6"})
    item = unwrap(response, 201, "created")
    assert item == {
        "id": item["id"],
        "name": "bolt",
        "quantity": 3,
        "note": "M6",
        "created_at": item["created_at"],
        "updated_at": item["created_at"],
    }
    assert before <= instant(item["created_at"])
    assert unwrap(db_client.get(f"/api/items/{item['id']}"), 200) == item


@pytest.mark.parametrize(
    "name", [pytest.param("é", id="e-acute"), pytest.param("日本", id="nihon")]
)
def test_put_with_a_non_ascii_name_creates_then_updates_it(
    db_client: FlaskClient, name: str
) -> None:
    """A name outside ASCII, percent-encoded in UTF-8 as clients send it, names one item: the
    first PUT creates it under that name, the second updates the same item."""
    path = f"/api/items/by-name/{quote(name)}"
    item = unwrap(db_client.put(path, json={"quantity": 1}), 201, "created")
    assert item["name"] == name
    updated = unwrap(db_client.put(path, json={"quantity": 2}), 200, "updated")
    assert (updated["id"], updated["name"], updated["quantity"]) == (item["id"], name, 2)


def test_put_note_defaults_to_null(db_client: FlaskClient) -> None:
    """PUT without a note creates the item with note null."""
    item = unwrap(db_client.put("/api/items/by-name/bolt", json={"quantity": 0}), 201, "created")
    assert (item["quantity"], item["note"]) == (0, None)


@pytest.mark.parametrize(
    ("body", "quantity", "note"),
    [
        pytest.param({"quantity": 7, "note": "new"}, 7, "new", id="both-replaced"),
        pytest.param({"quantity": 7}, 7, None, id="omitted-note-becomes-null"),
        pytest.param({"quantity": 3, "note": "old"}, 3, "old", id="same-values"),
    ],
)
def test_put_replaces_quantity_and_note_of_an_existing_item(
    db_client: FlaskClient, body: dict[str, Any], quantity: int, note: str | None
) -> None:
    """PUT to an existing name answers 200 "updated"; id, name and created_at stay."""
    original = create(db_client, name="bolt", quantity=3, note="old")
    item = unwrap(db_client.put("/api/items/by-name/bolt", json=body), 200, "updated")
    assert item == original | {
        "quantity": quantity,
        "note": note,
        "updated_at": item["updated_at"],
    }
    assert instant(item["updated_at"]) >= instant(original["updated_at"])
    assert unwrap(db_client.get(f"/api/items/{original['id']}"), 200) == item
    assert unwrap(db_client.get("/api/items"), 200)["total"] == 1


def test_put_touches_only_the_named_item(db_client: FlaskClient) -> None:
    """Updating one item by name leaves the others unchanged."""
    bolt = create(db_client, name="bolt", quantity=1)
    nut = create(db_client, name="nut", quantity=2)
    unwrap(db_client.put("/api/items/by-name/bolt", json={"quantity": 5}), 200, "updated")
    assert unwrap(db_client.get(f"/api/items/{nut['id']}"), 200) == nut
    assert unwrap(db_client.get(f"/api/items/{bolt['id']}"), 200)["quantity"] == 5


def test_delete_returns_the_item_then_it_is_gone(db_client: FlaskClient) -> None:
    """DELETE answers 200 "deleted" with the item; then GET and DELETE answer 404."""
    item = create(db_client, name="bolt", quantity=4, note="last one")
    path = f"/api/items/{item['id']}"
    assert unwrap(db_client.delete(path), 200, "deleted") == item
    assert unwrap(db_client.get(path), 404, f"item {item['id']} not found") is None
    assert unwrap(db_client.delete(path), 404, f"item {item['id']} not found") is None
    assert unwrap(db_client.get("/api/items"), 200)["total"] == 0


def test_delete_leaves_other_items(db_client: FlaskClient) -> None:
    """Deleting one item leaves the others listed."""
    bolt = create(db_client, name="bolt")
    nut = create(db_client, name="nut")
    unwrap(db_client.delete(f"/api/items/{bolt['id']}"), 200, "deleted")
    page = unwrap(db_client.get("/api/items"), 200)
    assert (page["items"], page["total"]) == ([nut], 1)


def test_delete_an_unknown_id_is_404_naming_it(db_client: FlaskClient) -> None:
    """DELETE of an id that does not exist answers 404 with the id in the message."""
    assert unwrap(db_client.delete("/api/items/999"), 404, "item 999 not found") is None


def test_a_deleted_name_can_be_created_again(db_client: FlaskClient) -> None:
    """After DELETE the name is free: POST creates it again."""
    first = create(db_client, name="bolt", quantity=1)
    unwrap(db_client.delete(f"/api/items/{first['id']}"), 200, "deleted")
    second = create(db_client, name="bolt", quantity=2)
    assert (second["name"], second["quantity"]) == ("bolt", 2)


def test_a_deleted_id_is_never_given_to_a_new_item(db_client: FlaskClient) -> None:
    """An id a client saw deleted never names another item later (no id reuse)."""
    create(db_client, name="bolt")
    last = create(db_client, name="nut")
    unwrap(db_client.delete(f"/api/items/{last['id']}"), 200, "deleted")
    newer = create(db_client, name="washer")
    assert newer["id"] > last["id"]
    path = f"/api/items/{last['id']}"
    assert unwrap(db_client.get(path), 404, f"item {last['id']} not found") is None


def test_an_incoming_tracking_id_is_echoed_by_the_api(db_client: FlaskClient) -> None:
    """A client's tracking id comes back in the header and the body of an API response."""
    response = db_client.post("/api/items", json={"name": "bolt"}, headers={HEADER: "req-42"})
    unwrap(response, 201, "created")
    assert response.headers[HEADER] == "req-42"


def test_cli_command_uses_a_session_scope(make_app: AppFactory, sqlite_url: str) -> None:
    """`flask items count` prints the count through a scoped session."""
    app = make_app(database_url=sqlite_url)
    result = app.test_cli_runner().invoke(args=["items", "count"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "0"
    assert not app.extensions["db"].session.registry.has()


def test_a_delete_racing_another_answers_404_not_500(
    make_app: AppFactory, postgres_url: str
) -> None:
    """Another transaction deletes the item first and holds its row lock: the API's DELETE
    waits for it, then answers 404 (one delete wins, the other finds nothing), never a 500.

    The interleaving is forced, not hoped for: the API's request starts while the other
    delete is uncommitted, and that delete commits once the request waits on its lock."""
    client = make_app(database_url=postgres_url).test_client()
    item = create(client, name=f"raced-{time.monotonic_ns()}")
    engine = create_engine(postgres_url)
    answers: list[TestResponse] = []
    try:
        with engine.connect() as other, engine.connect() as watcher:
            deleting = other.begin()
            other.execute(text("DELETE FROM items WHERE id = :id"), {"id": item["id"]})
            racer = threading.Thread(
                target=lambda: answers.append(client.delete(f"/api/items/{item['id']}"))
            )
            racer.start()
            waiting = text(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE FROM items%'"
            )

            def delete_waits() -> bool:
                # One transaction per look: PostgreSQL keeps a transaction's first snapshot
                # of pg_stat_activity, so a second look inside it would see nothing new.
                with watcher.begin():
                    return watcher.execute(waiting).scalar() == 1

            wait_until(delete_waits, 10, "no DELETE waits")
            deleting.commit()
            racer.join(10)
    finally:
        with engine.begin() as cleanup:  # other tests share the database: leave no row
            cleanup.execute(text("DELETE FROM items WHERE id = :id"), {"id": item["id"]})
        engine.dispose()
    (answer,) = answers
    unwrap(answer, 404, f"item {item['id']} not found")
