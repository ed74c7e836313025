"""The database: one engine and one scoped session registry per process, on plain SQLAlchemy 2.

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
import select
import sqlite3
import sys
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask, Response, current_app
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, scoped_session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from chassis.metrics import current_metrics
from chassis.responses import error
from chassis.settings import Settings
from chassis.tracking import call_with_tracking_id, current_tracking_id, tracking_scope

log = logging.getLogger(__name__)

# How long a SQLite writer waits for another process's write lock before failing. The pool
# holds one connection per process, so waits inside a process queue on the pool instead.
SQLITE_BUSY_TIMEOUT_S = 10.0


def build_engine(settings: Settings) -> Engine:
    """Create the engine for `settings.database_url` with the chassis's pool and timeouts."""
    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        # One connection per process: SQLite has one writer at a time anyway, and greenlets
        # then wait on the pool (cooperatively) rather than in SQLite's blocking busy loop.
        engine = create_engine(
            url,
            pool_size=1,
            max_overflow=0,
            pool_timeout=settings.db_pool_timeout,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_S},
            hide_parameters=True,  # see below
        )
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", sqlite_begin_immediate)
        return engine
    options = f"-c statement_timeout={settings.db_statement_timeout_ms}"
    engine = create_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=settings.db_pool_recycle,
        # No pool_pre_ping: `refuse_closed_connection` gives its guarantee without its round
        # trip (the first request after a database restart reconnects instead of failing).
        connect_args={
            "connect_timeout": settings.db_connect_timeout,
            "options": options,
            **network_timeouts(settings.db_network_timeout),
        },
        # Error messages (and so logged tracebacks) show the SQL but not its parameters:
        # those are users' data (names, emails, tokens) and do not belong in logs.
        hide_parameters=True,
    )
    event.listen(engine, "checkout", refuse_closed_connection)
    return engine


def refuse_closed_connection(dbapi_connection: Any, *_: object) -> None:
    """Pool checkout: refuse a PostgreSQL connection the server has closed, so that the pool
    opens a new one (SQLAlchemy's DisconnectionError, up to three attempts).

    pool_pre_ping would send `SELECT 1` and wait for the answer on every checkout: under
    gevent that round trip costs a fifth of a database-bound request's throughput
    (bench/run.py). An idle connection has nothing to read unless the server closed it: a
    restart, `pg_terminate_backend` or `idle_session_timeout` sends a FATAL message, then
    closes the socket. So a poll that does not wait tells a closed connection from a live
    one without touching the network. A server that vanished without a word (a cable cut)
    goes unseen, as it would by pre-ping until its timeout: the query then fails within
    DB_NETWORK_TIMEOUT (`network_timeouts`)."""
    if dbapi_connection.closed:
        raise sa_exc.DisconnectionError("the pooled connection is closed")
    poller = _stdlib_poll()
    poller.register(dbapi_connection.fileno(), select.POLLIN)  # hang-ups are always reported
    if poller.poll(0):
        raise sa_exc.DisconnectionError("the server closed the pooled connection")


def _stdlib_poll() -> Any:
    """The stdlib's poll object, also where gevent's monkey patching replaced `select.poll`
    with its own, which waits on the hub: a poll with no timeout never blocks, so the
    stdlib's is safe in a gevent worker. (gevent is looked up, never imported: importing it
    would cost a sync worker's start 30 ms.)"""
    monkey = sys.modules.get("gevent.monkey")
    return monkey.get_original("select", "poll")() if monkey else select.poll()


def network_timeouts(seconds: int) -> dict[str, int]:
    """libpq's parameters that declare a connection dead after `seconds` without an answer.

    statement_timeout runs on the server, so it never fires when the server's packets stop
    arriving; the client then waits in the kernel forever. tcp_user_timeout bounds how long
    sent data may go unacknowledged (a query into the void); keepalive
    probes, acknowledged by the server's kernel even during a long query, catch a silence
    while waiting for an answer (tcp_user_timeout then also bounds the unanswered probes).
    https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-KEEPALIVES
    """
    return {
        "keepalives": 1,
        "keepalives_idle": seconds,
        "keepalives_interval": 1,
        # Where TCP_USER_TIMEOUT is missing (not Linux), probes alone: dead after 2 x seconds.
        "keepalives_count": seconds,
        "tcp_user_timeout": seconds * 1000,
    }


def _sqlite_on_connect(dbapi_connection: sqlite3.Connection, _: ConnectionPoolEntry) -> None:
    # Let SQLAlchemy's "begin" event emit BEGIN instead of the driver, which would start
    # transactions late and as DEFERRED (SQLAlchemy's pysqlite "Serializable isolation" recipe).
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    # WAL lets readers run during a write; NORMAL sync is durable in WAL mode except on power
    # loss; SQLite leaves foreign keys off unless asked, per connection.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_S * 1000)}")
    cursor.close()


def sqlite_begin_immediate(conn: Connection) -> None:
    # IMMEDIATE takes the write lock when the transaction starts. A DEFERRED transaction
    # that reads and then writes cannot wait for the lock and fails at once with "database
    # is locked" when another process wrote in between.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


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
            log.warning("readiness check failed: %s", type(exc).__name__)
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


def handle_database_error(exc: sa_exc.SQLAlchemyError) -> Response:
    """Roll back, then answer by cause: 504 for a query that ran out of time, 503 with
    Retry-After when the database is unreachable or busy, 500 for anything else."""
    get_db().remove_session()
    if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection within DB_POOL_TIMEOUT
        current_metrics().pool_timeouts.inc()
    orig = getattr(exc, "orig", None)
    logged = redacted(exc)
    if getattr(orig, "pgcode", None) == QUERY_CANCELED:
        # Retrying at once would run the same slow query again: no Retry-After.
        log.warning("database query timed out: %s", type(exc).__name__, exc_info=logged)
        return error(504, "database query timed out")
    if _unavailable(exc, orig):
        log.warning("database unavailable: %s", type(exc).__name__, exc_info=logged)
        return error(503, "database unavailable, retry shortly", {"Retry-After": "1"})
    log.error("database error: %s", type(exc).__name__, exc_info=logged)
    return error(500, "internal server error")


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
    app.register_error_handler(sa_exc.SQLAlchemyError, handle_database_error)
