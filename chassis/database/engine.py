"""The engine: one per process, built by the app factory (never at import), with the
settings' pool, timeouts and per-backend behaviour (SQLite: WAL, a busy timeout, foreign
keys, BEGIN IMMEDIATE; PostgreSQL: connect, network and statement timeouts, and a checkout
that refuses a connection the server has closed).
"""

from __future__ import annotations

import select
import sqlite3
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import ConnectionPoolEntry

from chassis.settings import Settings

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


def unreachable(database_url: str | URL, exc: sa_exc.DBAPIError) -> str:
    """One line saying which database could not be reached and why, for an entry point to
    exit with or a log to say: the host and port (or SQLite's file) of DATABASE_URL and the
    driver's first line, never the password (the driver's message does not carry it)."""
    url = make_url(database_url)
    where = url.database if url.get_backend_name() == "sqlite" else f"{url.host}:{url.port or 5432}"
    reason = str(exc.orig or exc).strip().split("\n", 1)[0]
    return f"database unreachable: DATABASE_URL's {where}: {reason}"
