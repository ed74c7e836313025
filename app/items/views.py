"""The example resource, `/api/items`: copy this file to add your own.

    POST   /api/items                  create            201, 409 if the name is taken
    GET    /api/items?limit=&offset=   list a page       200 with items and total
    GET    /api/items/<id>             read              200, 404
    PUT    /api/items/by-name/<name>   create or update  201 created, 200 updated
    DELETE /api/items/<id>             delete            200 with the deleted item, 404

Bad input answers 400 naming the field and the rule; nothing is stored by a rejected request.
Each view's `@operation` declares its parameters, body and answers: the view gets them
parsed, and /openapi.json documents them (chassis/web/operations.py). The declared answer model
also builds the answer (`ItemOut.model_validate(item)`), so the document says what is sent;
a write builds its answer before it commits, so an answer the model refuses (a 500) leaves
nothing stored.

`flask --app app.wsgi items count` shows how a CLI command (or any work outside a request)
gets a session and a tracking id: `get_db().session_scope()`.
"""

from __future__ import annotations

import logging
from typing import Annotated

import click
from flask import Blueprint, Response, abort
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from sqlalchemy import delete, func, select

from app.items.models import NAME_MAX_LENGTH, NOTE_MAX_LENGTH, Item
from chassis.database.models import utcnow
from chassis.database.sessions import get_db, get_session
from chassis.database.upsert import upsert
from chassis.web.operations import IntParam, TextParam, operation
from chassis.web.responses import created, ok
from chassis.web.validation import MAX_INT, Text

bp = Blueprint("items", __name__, url_prefix="/api/items")
log = logging.getLogger(__name__)

# The rules of each field, shared by the bodies and the answer; the limits are the columns'.
Name = Annotated[Text, Field(min_length=1, max_length=NAME_MAX_LENGTH)]
Quantity = Annotated[int, Field(ge=0, le=MAX_INT)]
Note = Annotated[Text, Field(max_length=NOTE_MAX_LENGTH)] | None
ID = IntParam(minimum=1, maximum=MAX_INT, description="The item's id.")


class ItemCreate(BaseModel):
    """Body of POST /api/items."""

    model_config = ConfigDict(extra="forbid")
    name: Name
    quantity: Quantity = 0
    note: Note = None


class ItemPut(BaseModel):
    """Body of PUT /api/items/by-name/<name>: the item's new state."""

    model_config = ConfigDict(extra="forbid")
    quantity: Quantity
    note: Note = None


class ItemOut(BaseModel):
    """An item as the API shows it."""

    # Every answer holding an item is `ItemOut.model_validate(item).model_dump()`. It reads
    # the row's attributes and checks them strictly by the bodies' rules: a row that breaks
    # one (SQLite stores a name of any length) is a 500, never sent as if valid. The dump
    # keeps Python values; the envelope's writer gives the datetimes their offset.
    # (The docstring is the schema's description in /openapi.json: it is for clients.)
    model_config = ConfigDict(extra="forbid", from_attributes=True, strict=True)
    id: int
    name: Name
    quantity: Quantity
    note: Note
    created_at: AwareDatetime
    updated_at: AwareDatetime


class ItemPage(BaseModel):
    """One page of items, oldest first, and how many there are in all."""

    model_config = ConfigDict(extra="forbid", strict=True)
    items: list[ItemOut]
    total: int
    limit: int
    offset: int


def _get_or_404(item_id: int) -> Item:
    item = get_session().get(Item, item_id)
    if item is None:
        abort(404, f"item {item_id} not found")
    return item


@bp.post("")
@operation(body=ItemCreate, answers={201: ItemOut, 409: "An item with this name exists."})
def create_item(body: ItemCreate) -> Response:
    """Create an item; 409 when the name is taken."""
    session = get_session()
    now = utcnow()
    row = body.model_dump() | {"created_at": now, "updated_at": now}
    written = upsert(session, Item, [row], conflict=["name"])
    if not written:
        abort(409, f"an item named {body.name!r} already exists")
    item = ItemOut.model_validate(written[0].obj).model_dump()
    session.commit()
    return created(item)


@bp.get("")
@operation(
    query={
        "limit": IntParam(minimum=1, maximum=100, default=20, description="Items per page."),
        "offset": IntParam(minimum=0, maximum=MAX_INT, default=0, description="Items skipped."),
    },
    answers={200: ItemPage},
)
def list_items(limit: int, offset: int) -> Response:
    """Return one page of items, oldest first, and the total count."""
    session = get_session()
    items = session.scalars(select(Item).order_by(Item.id).limit(limit).offset(offset)).all()
    total = session.scalar(select(func.count()).select_from(Item))
    page = {"items": items, "total": total, "limit": limit, "offset": offset}
    return ok(ItemPage.model_validate(page).model_dump())


@bp.get("/<id>")
@operation(path={"id": ID}, answers={200: ItemOut, 404: "No item has this id."})
def get_item(id: int) -> Response:
    """Return one item."""
    return ok(ItemOut.model_validate(_get_or_404(id)).model_dump())


@bp.put("/by-name/<name>")
@operation(
    path={"name": TextParam(max_length=NAME_MAX_LENGTH, description="The item's name.")},
    body=ItemPut,
    answers={200: ItemOut, 201: ItemOut},
)
def put_item(name: str, body: ItemPut) -> Response:
    """Create the item called `name` or replace its quantity and note."""
    session = get_session()
    now = utcnow()
    row = body.model_dump() | {"name": name, "created_at": now, "updated_at": now}
    (written,) = upsert(
        session, Item, [row], conflict=["name"], update=["quantity", "note", "updated_at"]
    )
    item = ItemOut.model_validate(written.obj).model_dump()
    session.commit()
    return created(item) if written.inserted else ok(item, msg="updated")


@bp.delete("/<id>")
@operation(path={"id": ID}, answers={200: ItemOut, 404: "No item has this id."})
def delete_item(id: int) -> Response:
    """Delete one item and return it.

    One `DELETE ... RETURNING`: of two concurrent deletes, one answers 200 and the other 404.
    (Reading the row, then deleting it, fails the second with a 500: its DELETE waits for
    the first and then matches no row.)"""
    session = get_session()
    item = session.scalars(delete(Item).where(Item.id == id).returning(Item)).one_or_none()
    if item is None:
        abort(404, f"item {id} not found")
    deleted = ItemOut.model_validate(item).model_dump()
    session.commit()
    return ok(deleted, msg="deleted")


@bp.cli.command("count")
def count_items() -> None:
    """Print how many items are stored."""
    with get_db().session_scope() as session:
        total = session.scalar(select(func.count()).select_from(Item))
        log.info("counted %s items", total)
    click.echo(total)
