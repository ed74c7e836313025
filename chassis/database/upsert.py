"""INSERT ... ON CONFLICT in one statement, on PostgreSQL and SQLite alike.

    rows = upsert(session, Item, [{"name": "bolt", "quantity": 3}], conflict=["name"])
    rows = upsert(session, Item, values, conflict=["name"], update=["quantity", "updated_at"])
    rows = upsert(session, Item, values, conflict=["name"], update=["quantity"],
                  where=lambda excluded: Item.quantity != excluded.quantity)

Each result is an `Upserted(obj, inserted)`: the row as written (RETURNING, loaded as an ORM
object) and whether it was inserted (True) or updated (False). Rows left alone, because of
DO NOTHING or a false `where`, are not in the result.

Both dialects' `insert()` share the on-conflict API
(https://docs.sqlalchemy.org/en/20/orm/queryguide/dml.html#orm-upsert-statements), so only
telling inserts from updates differs: PostgreSQL reports it per row (`xmax = 0` on a freshly
inserted row); on SQLite the conflicting keys are read first, in the same transaction,
which the chassis starts with BEGIN IMMEDIATE (chassis/database/sessions.py), so no other writer can interleave.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import Boolean, ColumnElement, literal_column, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import DeclarativeBase, Session

ModelT = TypeVar("ModelT", bound=DeclarativeBase)
Where = Callable[[Any], ColumnElement[bool]]


@dataclass(frozen=True)
class Upserted(Generic[ModelT]):
    """One row written by `upsert`."""

    obj: ModelT
    inserted: bool


def dialect_insert(session: Session, model: type[Any]) -> postgresql.Insert | sqlite.Insert:
    """INSERT for `model` on the session's backend, with its ON CONFLICT clauses."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(model)
    if dialect == "sqlite":
        return sqlite.insert(model)
    raise NotImplementedError(f"ON CONFLICT needs PostgreSQL or SQLite, not {dialect}")


def upsert(
    session: Session,
    model: type[ModelT],
    values: Sequence[Mapping[str, Any]],
    *,
    conflict: Sequence[str],
    update: Sequence[str] | None = None,
    where: Where | None = None,
) -> list[Upserted[ModelT]]:
    """Insert `values`; on a conflict over the `conflict` columns do nothing or `update`.

    :param update: columns to overwrite from the new values; None means DO NOTHING.
    :param where: given the `excluded` row, a condition the update must meet.
    """
    if not values:
        return []  # (an empty parameter list would execute the INSERT once, with none)
    keys = [tuple(row[name] for name in conflict) for row in values]
    if len(set(keys)) != len(keys):
        # PostgreSQL refuses to touch one row twice in a statement; SQLite would report the
        # rows wrongly. Refuse on both, before the database sees it.
        raise ValueError(f"upsert: two rows share a value of the conflict columns {conflict}")
    dialect = session.get_bind().dialect.name
    # The rows go as parameters, not `.values(rows)`: SQLAlchemy caches the compiled form of
    # a statement with parameters, but compiles one with a list of VALUES anew every time
    # (it has no cache key). Either way the rows are sent in one INSERT (insertmanyvalues).
    rows = [dict(row) for row in values]
    stmt = dialect_insert(session, model)
    if update is None:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(conflict))
    else:
        stmt = stmt.on_conflict_do_update(
            index_elements=list(conflict),
            set_={name: stmt.excluded[name] for name in update},
            where=where(stmt.excluded) if where else None,
        )
    options = {"populate_existing": True}  # RETURNING refreshes objects already loaded

    if dialect == "postgresql":
        inserted = literal_column("xmax = 0", Boolean)
        written = session.execute(stmt.returning(model, inserted), rows, execution_options=options)
        return [Upserted(obj, flag) for obj, flag in written]

    columns = [getattr(model, name) for name in conflict]
    existing = {
        tuple(row) for row in session.execute(select(*columns).where(tuple_(*columns).in_(keys)))
    }
    objs = session.scalars(stmt.returning(model), rows, execution_options=options).all()
    return [Upserted(obj, _key(obj, conflict) not in existing) for obj in objs]


def _key(obj: DeclarativeBase, conflict: Sequence[str]) -> tuple[Any, ...]:
    return tuple(getattr(obj, name) for name in conflict)
