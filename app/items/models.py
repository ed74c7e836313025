"""The example resource's table: a named stock item."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import CheckConstraint, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from chassis.models import Base, UTCDateTime, utcnow


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
    name: Mapped[str] = mapped_column(String(100), unique=True)
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    note: Mapped[str | None] = mapped_column(String(1000))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    def to_dict(self) -> dict[str, Any]:
        """Return the item as the API shows it."""
        return {
            "id": self.id,
            "name": self.name,
            "quantity": self.quantity,
            "note": self.note,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }
