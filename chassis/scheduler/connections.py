"""The scheduler's own database connections, apart from the pool that serves requests.

Leases are kept on a connection requests never take: under gevent the request pool is one
connection per greenlet with no overflow, so a worker busy with slow requests would make its
renewals wait, fail, and lose its runs to other processes while its jobs still ran. Jobs run
on a small pool of their own (SCHEDULER_DB_POOL_SIZE) for the same reason, and so that on
SQLite, whose request pool is a single connection, a long job leaves that one to requests.

Both are built by `chassis.database.engine.build_engine` (same timeouts, closed connections refused at
checkout, hidden parameters, SQLite pragmas) in the process that runs the scheduler, after gunicorn's fork.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from chassis.database.engine import build_engine, sqlite_begin_immediate
from chassis.observability.tracking import tracking_scope
from chassis.settings import Settings

# A statement that only reads (anything else may write, and takes the write lock first).
_READ_ONLY = re.compile(r"\s*SELECT\b", re.IGNORECASE)


def scheduler_sessions(settings: Settings, connections: int, wait: float) -> sessionmaker[Session]:
    """Sessions on an engine of the scheduler's own: `connections` pooled connections (SQLite:
    one, as `build_engine` makes it), waited for at most `wait` seconds."""
    pool = {"db_pool_size": connections, "db_max_overflow": 0, "db_pool_timeout": wait}
    engine = build_engine(settings.model_copy(update=pool))
    if engine.dialect.name == "sqlite":
        lock_at_first_write(engine)
    return sessionmaker(engine, expire_on_commit=False)


def lock_at_first_write(engine: Engine) -> None:
    """Begin SQLite transactions at their first write instead of their first statement.

    The chassis begins every SQLite transaction with BEGIN IMMEDIATE (chassis/database/sessions.py), which
    takes the database's one write lock at once: a job that reads and then works for a
    minute would hold it all along, and every request (each begins the same way) would wait
    for it, then fail. On these connections reads run outside a transaction, each seeing
    the latest commit (as PostgreSQL's default, READ COMMITTED, does), and the first
    statement that may write begins the transaction IMMEDIATE, so from there to the commit
    no other writer comes in between, as everywhere else.
    """
    event.remove(engine, "begin", sqlite_begin_immediate)
    event.listen(engine, "before_cursor_execute", _begin_before_a_write)


def _begin_before_a_write(
    conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    if not cursor.connection.in_transaction and not _READ_ONLY.match(statement):
        cursor.execute("BEGIN IMMEDIATE")


@contextmanager
def transaction(
    sessions: sessionmaker[Session], tracking_id: str | None = None
) -> Iterator[Session]:
    """A session committed on success, rolled back on error, always closed; log records
    inside carry `tracking_id` (a fresh one when None)."""
    with tracking_scope(tracking_id), sessions.begin() as session:
        yield session
