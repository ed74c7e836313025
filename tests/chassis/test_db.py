"""The database layer against real SQLite and a real PostgreSQL server: session lifecycle,
timeouts, pool exhaustion, outages and restarts, and concurrent SQLite writers."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from flask import Flask
from flask.typing import ResponseReturnValue
from sqlalchemy import text
from sqlalchemy.pool import QueuePool

from chassis.database.models import utcnow
from chassis.database.sessions import Database
from harness.apps.records import Record, create_tables
from harness.postgres import PostgresServer
from harness.processes import ROOT, Gunicorn, base_env, request
from tests.support.flask_app import AppFactory, LogReader

SLEEPY = "harness.apps.sleepy:app"


def _db(app: Flask) -> Database:
    db: Database = app.extensions["db"]
    return db


def test_session_is_removed_after_a_request_even_when_the_view_raised(db_app: Flask) -> None:
    """A failing view leaves no session behind, and its pending row is never stored."""

    @db_app.get("/fail-after-add")
    def fail_after_add() -> ResponseReturnValue:
        _db(db_app).session().add(Record(name="ghost", created_at=utcnow(), updated_at=utcnow()))
        raise RuntimeError("boom")

    client = db_app.test_client()
    assert client.get("/fail-after-add").status_code == 500
    assert not _db(db_app).session.registry.has()
    assert client.get("/test/records").json["data"]["total"] == 0  # type: ignore[index]


def test_each_thread_gets_its_own_session(make_app: AppFactory) -> None:
    """The registry is thread-scoped (greenlet-scoped once gevent patches threading)."""
    db = _db(make_app())
    sessions = []
    threads = [threading.Thread(target=lambda: sessions.append(db.session())) for _ in range(2)]
    for thread in threads:
        thread.start()
        thread.join()
    assert sessions[0] is not sessions[1]
    assert db.session() is db.session()


def test_database_error_rolls_back_and_answers_500(db_app: Flask, read_logs: LogReader) -> None:
    """A failed statement is rolled back, logged with its traceback, and the next request works."""

    @db_app.get("/violate")
    def violate() -> ResponseReturnValue:
        session = _db(db_app).session()
        session.execute(
            text(
                "INSERT INTO test_records (name, quantity, created_at, updated_at) "
                "VALUES ('x', -1, '2026-01-01', '2026-01-01')"
            )
        )
        return {}

    client = db_app.test_client()
    read_logs()
    response = client.get("/violate", headers={"X-Tracking-ID": "db-err"})
    assert response.status_code == 500
    assert response.json is not None
    assert response.json["msg"] == "internal server error"
    assert any(line.get("exception") for line in read_logs() if line["tracking_id"] == "db-err")
    assert client.get("/test/records").status_code == 200


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(make_app: AppFactory) -> None:
    """Every SQLite connection is configured for concurrent use."""
    with _db(make_app()).engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10_000


def test_sqlite_data_directory_is_created_on_demand(make_app: AppFactory, tmp_path: Path) -> None:
    """The embedded database's directory need not exist beforehand."""
    target = tmp_path / "nested" / "dir" / "app.db"
    with _db(make_app(database_url=f"sqlite:///{target}")).engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert target.exists()


def test_query_parameters_never_reach_the_log(db_app: Flask, read_logs: LogReader) -> None:
    """A failing statement is logged with its SQL but not its parameters (users' data)."""

    @db_app.get("/leak")
    def leak() -> ResponseReturnValue:
        _db(db_app).session().execute(
            text("SELECT * FROM no_such_table WHERE name = :name"), {"name": "hunter2-secret"}
        )
        return {}

    read_logs()
    response = db_app.test_client().get("/leak", headers={"X-Tracking-ID": "leak-1"})
    assert response.status_code == 500
    logged = json.dumps(read_logs())
    assert "no_such_table" in logged
    assert "hunter2-secret" not in logged


def test_missing_table_is_a_500_with_a_clear_log_line(
    make_app: AppFactory, read_logs: LogReader, tmp_path: Path
) -> None:
    """On SQLite, whose errors are all OperationalError, a missing table is a bug: 500 and
    an ERROR line naming it, not the 503 "unavailable, retry" of a busy database."""
    app = make_app(database_url=f"sqlite:///{tmp_path / 'unmigrated.db'}")
    read_logs()
    response = app.test_client().get("/test/records", headers={"X-Tracking-ID": "no-table"})
    assert response.status_code == 500
    assert "Retry-After" not in response.headers
    (line,) = [line for line in read_logs() if line["tracking_id"] == "no-table"]
    assert (line["level"], line["message"]) == ("ERROR", "database error: OperationalError")
    assert "no such table: test_records" in line["exception"]


def test_statement_timeout_is_a_504_without_retry_after(
    make_app: AppFactory, postgres_url: str, read_logs: LogReader
) -> None:
    """A query PostgreSQL cancels at DB_STATEMENT_TIMEOUT_MS answers its own 504, with no
    Retry-After: retrying at once would run the same slow query again."""
    app = make_app(database_url=postgres_url, db_statement_timeout_ms=100)

    @app.get("/slow")
    def slow() -> ResponseReturnValue:
        _db(app).session().execute(text("SELECT pg_sleep(2)"))
        return {}

    read_logs()
    response = app.test_client().get("/slow", headers={"X-Tracking-ID": "slow-1"})
    assert response.status_code == 504
    assert response.json is not None
    assert response.json["msg"] == "database query timed out"
    assert "Retry-After" not in response.headers
    (line,) = [line for line in read_logs() if line["tracking_id"] == "slow-1"]
    assert (line["level"], line["message"]) == (
        "WARNING",
        "database query timed out: OperationalError",
    )


def test_postgres_connections_carry_the_statement_timeout(
    make_app: AppFactory, postgres_url: str
) -> None:
    """DB_STATEMENT_TIMEOUT_MS reaches the server as statement_timeout."""
    app = make_app(database_url=postgres_url, db_statement_timeout_ms=250)
    with _db(app).engine.connect() as conn:
        assert conn.execute(text("SHOW statement_timeout")).scalar() == "250ms"


def test_exhausted_pool_answers_503_within_the_pool_timeout(
    make_app: AppFactory, database_url: str
) -> None:
    """With every pooled connection taken, a request gets 503 after DB_POOL_TIMEOUT, not a hang."""
    app = make_app(
        database_url=database_url, db_pool_size=1, db_max_overflow=0, db_pool_timeout=0.5
    )
    client = app.test_client()
    with _db(app).engine.connect():  # holds the only connection
        started = time.monotonic()
        response = client.get("/test/records")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert response.json is not None
    assert response.json["msg"] == "database unavailable, retry shortly"
    assert response.headers["Retry-After"] == "1"
    assert 0.4 < elapsed < 3
    assert client.get("/test/records").status_code == 200


@pytest.fixture
def outage_app(
    make_app: AppFactory, postgres_url: str, postgres: PostgresServer
) -> Iterator[Flask]:
    """An app on the session's PostgreSQL server; the server is running again afterwards."""
    yield make_app(database_url=postgres_url, db_connect_timeout=2)
    postgres.start()


def test_first_request_after_a_postgres_restart_succeeds(
    outage_app: Flask, postgres: PostgresServer
) -> None:
    """Pooled connections broken by a restart are replaced on checkout (pool_pre_ping)."""
    client = outage_app.test_client()
    assert client.get("/test/records").status_code == 200
    postgres.restart()
    assert client.get("/test/records").status_code == 200


def test_connection_lost_after_the_work_keeps_the_answer_and_the_thread_usable(
    outage_app: Flask, postgres: PostgresServer
) -> None:
    """A session whose connection dies between the view's query and teardown (a database
    restart) still answers the view's 200, and the thread's next request gets a new session."""
    db = _db(outage_app)

    def query_then_lose_the_connection() -> dict[str, int]:
        pid = int(db.session().scalar(text("SELECT pg_backend_pid()")))
        with db.engine.connect() as other:
            other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
        return {"pid": pid}

    outage_app.add_url_rule("/test/lose", view_func=query_then_lose_the_connection)
    client = outage_app.test_client()
    assert client.get("/test/lose").status_code == 200
    assert client.get("/test/records").status_code == 200


def test_postgres_down_gives_503_while_healthz_stays_200(
    outage_app: Flask, postgres: PostgresServer
) -> None:
    """With the server stopped, data requests and /readyz answer 503 fast; /healthz 200."""
    client = outage_app.test_client()
    assert client.get("/readyz").status_code == 200
    postgres.stop()
    started = time.monotonic()
    assert client.get("/test/records").status_code == 503
    assert client.get("/readyz").status_code == 503
    assert time.monotonic() - started < 4
    assert client.get("/healthz").status_code == 200
    postgres.start()
    assert client.get("/readyz").status_code == 200


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers: a hung database."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield int(sock.getsockname()[1])


def test_unresponsive_database_gives_503_within_the_timeouts(
    make_app: AppFactory, silent_server: int
) -> None:
    """/readyz gives up within 2 s and a data request within the connect timeout."""
    url = f"postgresql://postgres@127.0.0.1:{silent_server}/kit"
    client = make_app(database_url=url, db_connect_timeout=2).test_client()
    started = time.monotonic()
    assert client.get("/readyz").status_code == 503
    assert time.monotonic() - started < 2
    started = time.monotonic()
    assert client.get("/test/records").status_code == 503
    assert time.monotonic() - started < 4
    assert client.get("/healthz").status_code == 200


def test_forked_child_does_not_reuse_the_parents_pooled_connections(
    make_app: AppFactory, postgres_url: str
) -> None:
    """After fork, the child starts with an empty pool and the parent's connection still works."""
    engine = _db(make_app(database_url=postgres_url)).engine
    assert isinstance(engine.pool, QueuePool)
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
    assert engine.pool.checkedin() == 1
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        os._exit(0 if engine.pool.checkedin() == 0 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    with engine.connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1


def test_session_scope_commits_removes_and_tags_logs(
    make_app: AppFactory, sqlite_url: str, read_logs: LogReader
) -> None:
    """Work outside a request commits on success, rolls back on error, never keeps a session."""
    db = _db(make_app(database_url=sqlite_url))
    read_logs()
    with db.session_scope("job-1") as session:
        session.add(Record(name="scoped", created_at=utcnow(), updated_at=utcnow()))
        logging.getLogger("job").info("added")
    assert not db.session.registry.has()

    def add_then_fail() -> None:
        with db.session_scope() as session:
            session.add(Record(name="rolled-back", created_at=utcnow(), updated_at=utcnow()))
            raise RuntimeError("fail")

    with pytest.raises(RuntimeError, match="fail"):
        add_then_fail()
    with db.session_scope() as session:
        names = set(session.scalars(text("SELECT name FROM test_records")))
        session.execute(text("DELETE FROM test_records"))
    assert names == {"scoped"}
    assert [line["tracking_id"] for line in read_logs() if line["message"] == "added"] == ["job-1"]


def test_concurrent_writers_on_sqlite_through_gunicorn_never_see_locked(tmp_path: Path) -> None:
    """Four gunicorn workers writing to one SQLite file at once: every request succeeds."""
    env = base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'shared.db'}", LOG_FORMAT="json")
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "heads"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    create_tables(env["DATABASE_URL"])
    server = Gunicorn(tmp_path, {**env, "WEB_CONCURRENCY": "4"}, args=[SLEEPY]).start()
    try:

        def work(n: int) -> list[int]:
            statuses = []
            for i in range(15):
                body = f'{{"quantity": {i}}}'.encode()
                path = f"/test/records/by-name/shared-{i % 3}"
                statuses.append(request(server.port, "PUT", path, body)[0])
                body = f'{{"name": "w{n}-{i}"}}'.encode()
                statuses.append(request(server.port, "POST", "/test/records", body)[0])
            return statuses

        with ThreadPoolExecutor(max_workers=12) as pool:
            statuses = [s for batch in pool.map(work, range(12)) for s in batch]
        total = request(server.port, "GET", "/test/records?limit=1")
    finally:
        server.stop()
    assert len(statuses) == 12 * 30
    assert set(statuses) <= {200, 201}, sorted(set(statuses))
    assert "database is locked" not in server.stdout() + server.stderr()
    assert json.loads(total[2])["data"]["total"] == 12 * 15 + 3
