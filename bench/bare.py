"""The baseline for the benchmarks: a bare Flask app answering with jsonify, nothing else.

`/healthz` is what bench/run.py and bench/instructions.py compare the kit's probe with. The
two item views are the baseline for the example resource's GET and POST
(bench/instructions.py): plain Flask and SQLAlchemy 2 as their documentation shows them, a
session per view, no validation library, no middleware, no request hooks. They answer the
same envelope-shaped JSON as the kit, so both write a body of about the same size.

The database is DATABASE_URL (default: an in-memory SQLite), with SQLAlchemy's default
engine; `create_tables()` makes its one table. The engine connects only when a view first
uses it, so `/healthz` never touches the database.
"""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from flask import Flask, Response, jsonify, request
from sqlalchemy import DateTime, Integer, String, create_engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

app = Flask(__name__)
engine = create_engine(os.environ.get("DATABASE_URL", "sqlite://"))
# expire_on_commit off: the answer is built from the values just written, with no reload.
Session = sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    """The baseline's own models."""


class Item(Base):
    """The example's table, as a bare app would declare it."""

    __tablename__ = "items"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)

    def to_dict(self) -> dict[str, Any]:
        """Return the item as the answer shows it."""
        return {
            "id": self.id,
            "name": self.name,
            "quantity": self.quantity,
            "note": self.note,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
        }


def create_tables() -> None:
    """Create the baseline's table in DATABASE_URL."""
    Base.metadata.create_all(engine)


def answer(code: int, msg: str, data: Any) -> tuple[Response, int]:
    """The kit's envelope shape, written with jsonify."""
    return jsonify({"code": code, "msg": msg, "data": data, "tracking_id": "-"}), code


@app.get("/healthz")
def healthz() -> Response:
    """Answer like the kit's liveness probe, without the kit."""
    return jsonify({"code": 200, "msg": "ok", "data": {"status": "alive"}, "tracking_id": "-"})


@app.get("/api/items/<int:item_id>")
def get_item(item_id: int) -> tuple[Response, int]:
    """Return one item, or 404."""
    with Session() as session:
        item = session.get(Item, item_id)
        if item is None:
            return answer(404, f"item {item_id} not found", None)
        return answer(200, "ok", item.to_dict())


@app.post("/api/items")
def create_item() -> tuple[Response, int]:
    """Create an item from a JSON object with a name (and a quantity, a note); 409 when the
    name is taken."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("name"), str):
        return answer(400, "name: required, a string", None)
    quantity = body.get("quantity", 0)
    if not isinstance(quantity, int) or quantity < 0:
        return answer(400, "quantity: an integer >= 0", None)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    item = Item(
        name=body["name"], quantity=quantity, note=body.get("note"), created_at=now, updated_at=now
    )
    with Session() as session:
        session.add(item)
        try:
            session.commit()
        except IntegrityError:
            return answer(409, f"an item named {item.name!r} already exists", None)
    return answer(201, "created", item.to_dict())
