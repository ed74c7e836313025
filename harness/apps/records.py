"""A resource that exists only in the tests, for the chassis's own tests of the database layer.

They use it instead of the service's example (`app/items/`), so they pass whatever resources
the service has, the example removed included (README: "Your own resources"). Its table has
a metadata of its own: Alembic's autogenerate (tests/test_migrations.py) never sees it, and
the tests create it themselves with `create_tables`.

    GET  /test/records?limit=           the first rows and the total count
    POST /test/records                  {"name", "quantity"?, "note"?}: 201, 409 if taken
    PUT  /test/records/by-name/<name>   {"quantity": n}: 201 created, 200 updated (an upsert)

Each view declares its input and answers as the example's do (chassis/web/operations.py), so
the chassis's tests of /openapi.json have a resource to read. Its input rules are the example's: hostile-request tests (tests/test_hostile_corpus.py) send
it what PostgreSQL would refuse with a 500 (NUL characters, numbers past INTEGER, names past
VARCHAR(100)), and each of those is a 400 here.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from flask import Blueprint, Response, abort
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import CheckConstraint, Integer, MetaData, String, create_engine, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from chassis.database.models import NAMING_CONVENTION, UTCDateTime, utcnow
from chassis.database.sessions import get_session
from chassis.database.upsert import upsert
from chassis.settings.parsers import normalise_database_url
from chassis.web.operations import IntParam, TextParam, operation
from chassis.web.responses import created, ok
from chassis.web.validation import MAX_INT, Text

# The columns' limits (String(100), String(1000), INTEGER >= 0), checked before the database.
Name = Annotated[Text, Field(min_length=1, max_length=100)]
Quantity = Annotated[int, Field(ge=0, le=MAX_INT)]
Note = Annotated[Text, Field(max_length=1000)] | None


class TestBase(DeclarativeBase):
    """The tests' own declarative base, apart from the service's migrations."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Record(TestBase):
    """A named row with a count: the shape every upsert and session test needs."""

    __tablename__ = "test_records"
    __table_args__ = (
        CheckConstraint("quantity >= 0", name="quantity_not_negative"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def to_dict(self) -> dict[str, Any]:
        """The row as the test endpoints show it."""
        return {column.name: getattr(self, column.name) for column in self.__table__.columns}


def create_tables(database_url: str) -> None:
    """Create the test tables in the database at `database_url` (a migrated one), written
    as DATABASE_URL may be (`postgresql://` included)."""
    engine = create_engine(normalise_database_url(database_url))
    try:
        TestBase.metadata.create_all(engine)
    finally:
        engine.dispose()


class RecordCreate(BaseModel):
    """Body of POST /test/records."""

    model_config = ConfigDict(extra="forbid")
    name: Name
    quantity: Quantity = 0
    note: Note = None


class RecordPut(BaseModel):
    """Body of PUT /test/records/by-name/<name>."""

    model_config = ConfigDict(extra="forbid")
    quantity: Quantity


class RecordOut(BaseModel):
    """A row as the test endpoints show it."""

    model_config = ConfigDict(extra="forbid")
    id: int
    name: str
    quantity: int
    note: str | None
    created_at: dt.datetime
    updated_at: dt.datetime


class RecordPage(BaseModel):
    """The first rows and how many there are."""

    model_config = ConfigDict(extra="forbid")
    records: list[RecordOut]
    total: int


bp = Blueprint("records", __name__, url_prefix="/test/records")


@bp.get("")
@operation(query={"limit": IntParam(minimum=1, maximum=100, default=20)}, answers={200: RecordPage})
def list_records(limit: int) -> Response:
    """The first `limit` rows and the total."""
    session = get_session()
    rows = session.scalars(select(Record).order_by(Record.id).limit(limit))
    total = session.scalar(select(func.count()).select_from(Record))
    return ok({"records": [row.to_dict() for row in rows], "total": total})


@bp.post("")
@operation(body=RecordCreate, answers={201: RecordOut, 409: "A record has this name."})
def create_record(body: RecordCreate) -> Response:
    """Insert a row; 409 when the name is taken."""
    session = get_session()
    written = upsert(session, Record, [body.model_dump()], conflict=["name"])
    if not written:
        abort(409, f"a record named {body.name!r} already exists")
    session.commit()
    return created(written[0].obj.to_dict())


@bp.put("/by-name/<name>")
@operation(
    path={"name": TextParam(max_length=100)},
    body=RecordPut,
    answers={200: RecordOut, 201: RecordOut},
)
def put_record(name: str, body: RecordPut) -> Response:
    """Insert the row called `name` or replace its quantity."""
    session = get_session()
    row = {"name": name, "quantity": body.quantity}
    (written,) = upsert(session, Record, [row], conflict=["name"], update=["quantity"])
    session.commit()
    return created(written.obj.to_dict()) if written.inserted else ok(written.obj.to_dict())
