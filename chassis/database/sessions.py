"""Sessions: one scoped session registry per process, on the engine (engine.py), with plain
SQLAlchemy 2.

Views get their session with `get_session()`; it is removed (rolled back if still open,
connection returned to the pool) when the request ends, also when the view raised. Work
outside requests (CLI commands, threads, jobs) uses `Database.session_scope()`.

Sessions are scoped per thread. gevent's monkey patching makes `threading.local` local to
each greenlet, so the same registry is correct under sync, threaded and gevent workers.

The engine is created by `create_app`, never at import. If the app is built before a fork
(gunicorn `preload_app`), the child drops the inherited pool without closing the parent's
connections, as SQLAlchemy's "Using Connection Pools with Multiprocessing or os.fork()"
page prescribes: https://docs.sqlalchemy.org/en/20/core/pooling.html#pooling-multiprocessing
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal, TypeGuard

from flask import Flask, current_app
from sqlalchemy import URL, Engine, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from chassis.database.engine import build_engine, unreachable
from chassis.observability.tracking import (
    call_with_tracking_id,
    current_tracking_id,
    tracking_scope,
)
from chassis.settings import Settings

log = logging.getLogger(__name__)


class Database:
    """The process's engine and its thread- (or greenlet-) scoped session registry."""

    def __init__(self, settings: Settings) -> None:
        self.engine = build_engine(settings)
        self.session = scoped_session(sessionmaker(self.engine, expire_on_commit=False))
        self._readiness_lock = threading.Lock()
        self._readiness_check: _ReadinessCheck | None = None
        engine_ref = weakref.ref(self.engine)

        def drop_inherited_pool() -> None:
            engine = engine_ref()
            if engine is not None:
                engine.dispose(close=False)

        os.register_at_fork(after_in_child=drop_inherited_pool)

    def remove_session(self) -> None:
        """Close this thread's (or greenlet's) session and forget it, even when closing fails.

        Closing rolls back on the session's connection. If the database went away after the
        work was done (a restart between the query and the teardown), that rollback raises;
        the pool has already invalidated the connection, so the request's answer stands and
        the session is dropped instead of being handed to the thread's next request broken.
        """
        if not self.session.registry.has():
            return  # no session was made (the request never used the database)
        try:
            self.session.remove()
        except sa_exc.SQLAlchemyError as exc:
            self.session.registry.clear()
            log.warning("closing the session failed: %s", type(exc).__name__)

    @contextmanager
    def session_scope(self, tracking_id: str | None = None) -> Iterator[Session]:
        """Yield a session for work outside a request: committed on success, always removed.

        Log records inside carry `tracking_id` (a fresh one when None).
        """
        with tracking_scope(tracking_id):
            session = self.session()
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise
            finally:
                self.remove_session()

    def is_ready(self, timeout: float) -> bool:
        """Return whether `SELECT 1` succeeds within `timeout` seconds.

        The query runs in a helper thread (a greenlet under gevent) so a database that accepts
        connections but never answers cannot hold the caller past `timeout`. One check at a
        time: a probe that arrives while an earlier check still waits (for as long as
        DB_CONNECT_TIMEOUT plus DB_NETWORK_TIMEOUT) waits for that check's answer instead of
        adding another thread and another connection to the pile.
        """
        with self._readiness_lock:
            check = self._readiness_check
            if check is None or check.finished.is_set():
                check = self._readiness_check = _ReadinessCheck(self.engine)
        return check.wait(timeout)


class _ReadinessCheck:
    """One `SELECT 1` in a thread of its own, started at once; `wait` for its answer."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.answered = threading.Event()
        self.finished = threading.Event()
        # The request's tracking id goes with the check, so its warning joins the request's.
        threading.Thread(
            target=call_with_tracking_id,
            args=(current_tracking_id(), self._check),
            name="readiness-check",
            daemon=True,
        ).start()

    def _check(self) -> None:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            self.answered.set()
        except sa_exc.SQLAlchemyError as exc:
            log.warning("readiness check failed: %s", described(self.engine.url, exc))
        finally:
            self.finished.set()

    def wait(self, timeout: float) -> bool:
        """Whether the check succeeded within `timeout` seconds."""
        self.finished.wait(timeout)
        return self.answered.is_set()


def get_db() -> Database:
    """Return the current app's `Database`."""
    db: Database = current_app.extensions["db"]
    return db


def get_session() -> Session:
    """Return the session for the current request (or thread)."""
    return get_db().session()


# PostgreSQL's SQLSTATE for a statement cancelled by statement_timeout (query_canceled).
QUERY_CANCELED = "57014"
# SQLite raises OperationalError for everything; only these messages mean the database is
# busy or out of reach. The rest (no such table, no such column) are bugs: 500, not 503.
SQLITE_UNAVAILABLE = (
    "database is locked",
    "database table is locked",
    "unable to open database file",
    "disk i/o error",
    "database or disk is full",
)


Failure = Literal["timed_out", "unavailable", "error"]


def failure(exc: sa_exc.SQLAlchemyError) -> Failure:
    """What a database error means for the request: its query ran out of time (retrying at
    once would run it again), the database is unreachable or busy (retry shortly), or
    anything else (a bug). The web layer answers 504, 503 or 500 (chassis/web/errors.py)."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "pgcode", None) == QUERY_CANCELED:
        return "timed_out"
    return "unavailable" if _unavailable(exc, orig) else "error"


class RedactedDatabaseError(Exception):
    """What is logged in place of a database error: no parameter values in it."""


def redacted(exc: sa_exc.SQLAlchemyError) -> tuple[type[BaseException], BaseException, Any]:
    """`exc` as `exc_info` for a log call: its traceback, with a message of its class, the
    SQLSTATE, the driver's first line and the statement with its placeholders.

    hide_parameters keeps values out of SQLAlchemy's own text, but psycopg2 sends queries
    with the values written in, and PostgreSQL quotes them back (`LINE 1: ... = 'secret'`,
    `DETAIL: Key (email)=(...)`): only the message's first line is kept."""
    orig = getattr(exc, "orig", None)
    first_line = str(orig or exc).strip().split("\n", 1)[0]
    sqlstate = getattr(orig, "pgcode", None)
    statement = getattr(exc, "statement", None)
    parts = [type(exc).__name__, f"[{sqlstate}]" if sqlstate else "", first_line]
    summary = " ".join(part for part in parts if part)
    if statement:
        summary += f" (statement: {' '.join(str(statement).split())})"
    return RedactedDatabaseError, RedactedDatabaseError(summary), exc.__traceback__


def connection_failed(exc: sa_exc.SQLAlchemyError) -> TypeGuard[sa_exc.DBAPIError]:
    """Whether `exc` is a failure to open a connection: no statement ran, so where and why
    (`unreachable`) say all there is, and a traceback through the pool adds nothing."""
    return isinstance(exc, sa_exc.DBAPIError) and exc.statement is None and failure(exc) != "error"


def described(url: URL, exc: sa_exc.SQLAlchemyError) -> str:
    """`exc` in one line for a warning: the database's host and the reason when it could
    not be reached, else the error's class."""
    return unreachable(url, exc) if connection_failed(exc) else type(exc).__name__


def _unavailable(exc: sa_exc.SQLAlchemyError, orig: object) -> bool:
    """Whether `exc` means the database is unreachable or busy, not that the query is wrong."""
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection within DB_POOL_TIMEOUT
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(orig, sqlite3.OperationalError):
        return str(orig).lower().startswith(SQLITE_UNAVAILABLE)
    return isinstance(exc, sa_exc.OperationalError)


def init_app(app: Flask, settings: Settings) -> None:
    """Create the process's `Database` and tie sessions to the request lifecycle."""
    db = Database(settings)
    app.extensions["db"] = db

    def remove_session(_: BaseException | None) -> None:
        db.remove_session()

    app.teardown_appcontext(remove_session)
