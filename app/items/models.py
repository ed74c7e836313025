"""The example resource's table: a named stock item."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from chassis.database.models import Base, UTCDateTime, utcnow

# Each limit is written once: the column, the request bodies, the answer and the path
# parameter (app/items/views.py) all use it. Changing one needs a migration (`make revision`).
NAME_MAX_LENGTH = 100
NOTE_MAX_LENGTH = 1000


class Item(Base):
    """The example resource: a named stock item."""

    __tablename__ = "items"
    __table_args__ = (
        CheckConstraint("quantity >= 0", name="quantity_not_negative"),
        # SQLite would otherwise hand a deleted row's id to the next insert; a client still
        # holding the old id would then read or delete a different item.
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX_LENGTH), unique=True)
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str | None] = mapped_column(String(NOTE_MAX_LENGTH))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
