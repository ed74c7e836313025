"""upsert: one INSERT ... ON CONFLICT statement that reports each row as inserted or updated.

Every test runs on SQLite and on PostgreSQL (the `db_app` fixture), inside a transaction
rolled back afterwards.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from chassis.database.models import utcnow
from chassis.database.upsert import Where, upsert
from harness.apps.records import Record

# Seeded rows are an hour old, so "unchanged" never depends on two clock readings differing.
AN_HOUR = dt.timedelta(hours=1)


@pytest.fixture
def session(db_app: Flask) -> Session:
    """A session of `db_app`, joined to the test's rolled-back transaction."""
    session: Session = db_app.extensions["db"].session()
    return session


@pytest.fixture
def statements(db_app: Flask) -> Iterator[list[str]]:
    """The SQL of every statement the app's engine sends during the test, in order."""
    engine = db_app.extensions["db"].engine
    sent: list[str] = []

    def record(*args: Any) -> None:
        # before_cursor_execute(conn, cursor, statement, parameters, context, executemany)
        sent.append(args[2])

    event.listen(engine, "before_cursor_execute", record)
    yield sent
    event.remove(engine, "before_cursor_execute", record)


def item(
    name: str, quantity: int = 0, note: str | None = None, at: dt.datetime | None = None
) -> dict[str, Any]:
    """Return the column values of an item created and updated `at` (now by default)."""
    at = at or utcnow()
    return {"name": name, "quantity": quantity, "note": note, "created_at": at, "updated_at": at}


def seed(session: Session, name: str, quantity: int = 0, note: str | None = None) -> dict[str, Any]:
    """Commit an hour-old item without upsert, forget it in the session, return its row."""
    row = item(name, quantity, note, at=utcnow() - AN_HOUR)
    obj = Record(**row)
    session.add(obj)
    session.commit()
    session.expunge(obj)
    return row | {"id": obj.id}


def stored(session: Session, name: str) -> dict[str, Any]:
    """Return the row named `name` as the database holds it (Core query: no identity map)."""
    row = session.execute(select(Record.__table__).where(Record.name == name)).one()
    return dict(row._mapping)


def test_do_nothing_inserts_a_new_row(session: Session) -> None:
    """Without `update`, a new key is inserted and returned as an ORM object with its id."""
    new = item("bolt", quantity=3, note="M6")

    [written] = upsert(session, Record, [new], conflict=["name"])

    assert isinstance(written.obj, Record)
    assert written.inserted is True
    assert stored(session, "bolt") == new | {"id": written.obj.id}


def test_do_nothing_leaves_an_existing_row_alone(session: Session) -> None:
    """Without `update`, a second upsert of the same key returns nothing and changes nothing."""
    upsert(session, Record, [item("bolt", 3, "M6", at=utcnow() - AN_HOUR)], conflict=["name"])
    before = stored(session, "bolt")

    result = upsert(session, Record, [item("bolt", 9, "M8")], conflict=["name"])

    assert result == []
    assert stored(session, "bolt") == before


def test_update_overwrites_only_the_chosen_columns(session: Session) -> None:
    """With `update`, a conflict overwrites the listed columns and keeps every other one."""
    old = seed(session, "bolt", quantity=3, note="M6")

    [written] = upsert(
        session, Record, [item("bolt", 9, "M8")], conflict=["name"], update=["quantity"]
    )

    assert written.inserted is False
    assert (written.obj.id, written.obj.quantity, written.obj.note) == (old["id"], 9, "M6")
    assert stored(session, "bolt") == old | {"quantity": 9}


@pytest.mark.parametrize(
    "quantity",
    [
        pytest.param(1, id="smaller"),
        pytest.param(5, id="equal"),
    ],
)
def test_update_where_false_leaves_the_row_alone(session: Session, quantity: int) -> None:
    """A conflict whose `where` is false neither updates the row nor returns it."""
    old = seed(session, "bolt", quantity=5)

    result = upsert(
        session,
        Record,
        [item("bolt", quantity)],
        conflict=["name"],
        update=["quantity", "updated_at"],
        where=lambda excluded: Record.quantity < excluded.quantity,
    )

    assert result == []
    assert stored(session, "bolt") == old


def test_update_where_true_updates_the_row(session: Session) -> None:
    """A conflict whose `where` is true updates the row and reports it as not inserted."""
    old = seed(session, "bolt", quantity=5)
    new = item("bolt", 9)

    [written] = upsert(
        session,
        Record,
        [new],
        conflict=["name"],
        update=["quantity", "updated_at"],
        where=lambda excluded: Record.quantity < excluded.quantity,
    )

    assert (written.obj.id, written.inserted) == (old["id"], False)
    assert stored(session, "bolt") == old | {"quantity": 9, "updated_at": new["updated_at"]}


def test_returned_row_holds_the_values_in_the_database(session: Session) -> None:
    """The returned object is the row as written: untouched columns keep their stored values."""
    old = seed(session, "bolt", quantity=3, note="M6")
    new = item("bolt", 9, "M8")

    [written] = upsert(session, Record, [new], conflict=["name"], update=["quantity", "updated_at"])

    assert written.obj.to_dict() == old | {"quantity": 9, "updated_at": new["updated_at"]}


def test_returned_row_refreshes_the_object_already_in_the_session(session: Session) -> None:
    """An object loaded before the upsert is the one returned, showing the written values."""
    old = seed(session, "bolt", quantity=3)
    loaded = session.get(Record, old["id"])
    assert loaded is not None

    [written] = upsert(session, Record, [item("bolt", 9)], conflict=["name"], update=["quantity"])

    assert written.obj is loaded
    assert loaded.quantity == 9


def test_many_rows_are_written_in_one_insert_statement(
    session: Session, statements: list[str]
) -> None:
    """A batch of new and existing keys is one INSERT, with one result per row written."""
    seed(session, "bolt", quantity=3)
    statements.clear()

    result = upsert(
        session,
        Record,
        [item("bolt", 9), item("nut", 4), item("washer", 7)],
        conflict=["name"],
        update=["quantity", "updated_at"],
    )

    assert {r.obj.name: r.inserted for r in result} == {
        "bolt": False,
        "nut": True,
        "washer": True,
    }
    assert len(result) == 3
    assert len([sql for sql in statements if sql.startswith("INSERT")]) == 1


def growing(excluded: Any) -> Any:
    """Update only when the new quantity is bigger than the stored one."""
    return Record.quantity < excluded.quantity


@pytest.mark.parametrize(
    ("update", "where", "reported", "quantities"),
    [
        pytest.param(
            None,
            None,
            {"nut": True},
            {"bolt": 5, "screw": 5, "nut": 2},
            id="do-nothing",
        ),
        pytest.param(
            ["quantity"],
            None,
            {"bolt": False, "screw": False, "nut": True},
            {"bolt": 9, "screw": 1, "nut": 2},
            id="update",
        ),
        pytest.param(
            ["quantity"],
            growing,
            {"bolt": False, "nut": True},
            {"bolt": 9, "screw": 5, "nut": 2},
            id="update-where",
        ),
    ],
)
def test_mixed_batch_reports_each_written_row_as_inserted_or_updated(
    session: Session,
    update: list[str] | None,
    where: Where | None,
    reported: dict[str, bool],
    quantities: dict[str, int],
) -> None:
    """In a batch of new and existing keys, only written rows return, each flagged correctly."""
    seed(session, "bolt", quantity=5)
    seed(session, "screw", quantity=5)

    result = upsert(
        session,
        Record,
        [item("bolt", 9), item("screw", 1), item("nut", 2)],
        conflict=["name"],
        update=update,
        where=where,
    )

    assert {r.obj.name: r.inserted for r in result} == reported
    assert len(result) == len(reported)
    assert {name: stored(session, name)["quantity"] for name in quantities} == quantities


def test_the_compiled_insert_is_reused_by_the_next_call(db_app: Flask, session: Session) -> None:
    """The upsert's SQL is compiled once and taken from SQLAlchemy's cache afterwards: a list
    of VALUES in the statement (`.values(rows)`) has no cache key and is compiled anew on
    every call, a quarter of a POST's cost (bench/instructions.py)."""
    compiled: list[object] = []

    def record(*args: Any) -> None:
        # before_cursor_execute(conn, cursor, statement, parameters, context, executemany)
        if args[2].startswith("INSERT"):
            compiled.append(args[4].compiled)

    engine = db_app.extensions["db"].engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        for name in ("bolt", "nut"):
            upsert(session, Record, [item(name)], conflict=["name"], update=["quantity"])
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(compiled) == 2
    assert compiled[0] is compiled[1]


def test_no_rows_write_nothing(session: Session, statements: list[str]) -> None:
    """An empty list is no statement at all, never an INSERT of one row of defaults."""
    assert upsert(session, Record, [], conflict=["name"]) == []
    assert statements == []


def test_duplicate_conflict_keys_in_one_batch_are_refused(session: Session) -> None:
    """Two rows with the same name in one call raise before the database is touched."""
    with pytest.raises(ValueError, match="share a value of the conflict columns"):
        upsert(session, Record, [item("bolt", 3), item("bolt", 9)], conflict=["name"])
    assert session.scalars(select(Record)).all() == []
