"""Alembic migrations: in step with the models, reversible, and safe to run from many replicas."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg2
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, text

from chassis.database.models import Base
from chassis.settings import Settings
from harness.postgres import PostgresServer
from harness.processes import ROOT, base_env, free_port
from tests.support.checkout import copy_repository, run
from tests.support.flask_app import AppFactory

LOCK_ID = 7_331_001  # migrations/env.py's MIGRATION_LOCK_ID


def alembic_config(database_url: str) -> Config:
    """The project's Alembic configuration, pointed at `database_url`."""
    config = Config(toml_file=str(ROOT / "pyproject.toml"))
    config.attributes["settings"] = Settings(app_env="test", database_url=database_url)
    return config


@pytest.mark.parametrize("backend", [pytest.param("sqlite"), pytest.param("postgres")])
def test_migrations_match_the_models(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Autogenerate finds nothing to add: the migrations and the models (app/, chassis/) agree
    (on a database only the migrations have touched)."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'check.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database("kit_models_check")
    config = alembic_config(url)
    command.upgrade(config, "heads")
    command.check(config)


def test_downgrade_and_upgrade_round_trip(tmp_path: Path) -> None:
    """Every migration can be undone and applied again."""
    url = f"sqlite:///{tmp_path / 'round.db'}"
    config = alembic_config(url)
    modelled = set(Base.metadata.tables)  # every model of the service and the chassis
    assert "job_runs" in modelled
    command.upgrade(config, "heads")
    command.downgrade(config, "base")
    assert set(inspect(create_engine(url)).get_table_names()) & modelled == set()
    command.upgrade(config, "heads")
    assert modelled <= set(inspect(create_engine(url)).get_table_names())


def test_the_app_never_creates_tables(make_app: AppFactory, tmp_path: Path) -> None:
    """Building and using the app on an empty database leaves it empty: only migrations do DDL."""
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    app = make_app(database_url=url)
    app.test_client().get("/test/records")
    assert inspect(app.extensions["db"].engine).get_table_names() == []


def _waiting_for_lock(dsn: str) -> int:
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
        row = cur.fetchone()
    conn.close()
    return int(row[0]) if row else 0


def head_revisions() -> list[tuple[str]]:
    """The newest revision of each branch (the service's and the chassis's), as rows."""
    config = Config(toml_file=str(ROOT / "pyproject.toml"))
    return sorted((head,) for head in ScriptDirectory.from_config(config).get_heads())


def test_concurrent_upgrades_apply_the_schema_once(postgres: PostgresServer) -> None:
    """Three replicas migrating at once all exit 0; the schema is applied exactly once."""
    url = postgres.create_database("kit_concurrent_migrations")
    dsn = url.replace("postgresql+psycopg2://", "postgresql://")
    holder = psycopg2.connect(dsn)
    holder.autocommit = True
    with holder.cursor() as cur:
        cur.execute("SELECT pg_advisory_lock(%s)", (LOCK_ID,))
    env = base_env(DATABASE_URL=url, LOG_FORMAT="json")
    replicas = [
        subprocess.Popen(
            [sys.executable, "-m", "alembic", "upgrade", "heads"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(3)
    ]
    try:
        # All three are queued behind the lock before it is released: a real race.
        deadline = time.monotonic() + 20
        while _waiting_for_lock(dsn) < 3:
            assert time.monotonic() < deadline, "replicas never reached the migration lock"
            time.sleep(0.1)
    finally:
        with holder.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (LOCK_ID,))
        holder.close()
    outputs = [replica.communicate(timeout=60)[0].decode() for replica in replicas]
    assert [replica.returncode for replica in replicas] == [0, 0, 0], outputs
    # One replica applied every revision; the others found the schema current.
    assert sorted("Running upgrade" in output for output in outputs) == [False, False, True]
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        cur.execute("SELECT version_num FROM alembic_version ORDER BY version_num")
        assert cur.fetchall() == head_revisions()
    conn.close()


@pytest.mark.parametrize("arguments", [pytest.param(["upgrade", "heads", "--sql"], id="offline")])
def test_offline_mode_prints_the_sql(arguments: list[str]) -> None:
    """`alembic upgrade heads --sql` writes the DDL for review instead of running it."""
    result = subprocess.run(
        [sys.executable, "-m", "alembic", *arguments],
        cwd=ROOT,
        env=base_env(DATABASE_URL="postgresql://u@localhost/db"),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "CREATE TABLE job_runs" in result.stdout


# A migration of the chassis's branch that only this test has: it alters job_runs.
ALTER_JOB_RUNS = '''"""add a column to job_runs (tests only)"""

import sqlalchemy as sa
from alembic import op

revision = "lock0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("job_runs", sa.Column("test_note", sa.String(20)))


def downgrade() -> None:
    op.drop_column("job_runs", "test_note")
'''


def test_a_migration_blocked_by_a_long_transaction_never_stalls_the_tables_queries(
    postgres: PostgresServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An ALTER TABLE waiting behind an open transaction would queue every later query on
    the table behind itself. With lock_timeout it gives up within 2 s, rolls back and
    retries: queries on the table keep answering meanwhile, and once the transaction ends
    the migration applies."""
    url = postgres.create_database("kit_lock_timeout")
    config = alembic_config(url)
    command.upgrade(config, "heads")
    extra = tmp_path / "versions"
    extra.mkdir()
    (extra / "lock0003_alter_job_runs.py").write_text(ALTER_JOB_RUNS)
    locations = [
        ROOT / "migrations" / "versions",
        ROOT / "chassis" / "database" / "migrations",
        extra,
    ]
    config.set_main_option("path_separator", "os")
    config.set_main_option("version_locations", os.pathsep.join(map(str, locations)))
    failures: list[BaseException] = []

    def migrate() -> None:
        try:
            command.upgrade(config, "heads")
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    engine = create_engine(url)
    slowest = 0.0
    try:
        with engine.connect() as holder, engine.connect() as traffic:
            # The app's own ceiling on a statement, shorter here so a stall fails the test.
            traffic.execute(text("SET statement_timeout = 4000"))
            traffic.commit()
            holder.begin()
            holder.execute(text("SELECT count(*) FROM job_runs"))  # holds ACCESS SHARE
            migrating = threading.Thread(target=migrate)
            caplog.set_level(logging.WARNING, logger="migrations")
            migrating.start()
            until = time.monotonic() + 5
            while time.monotonic() < until:
                began = time.monotonic()
                traffic.execute(text("SELECT count(*) FROM job_runs"))
                traffic.commit()
                slowest = max(slowest, time.monotonic() - began)
                time.sleep(0.05)
            holder.commit()
            migrating.join(30)
        assert failures == []
        assert "test_note" in {c["name"] for c in inspect(engine).get_columns("job_runs")}
    finally:
        engine.dispose()
    assert slowest < 3.0  # lock_timeout (2 s) plus scheduling; unbounded without it
    assert any("waited 2s for a table lock" in r.getMessage() for r in caplog.records)


# A model the service gains in a copy: what `make revision` writes a migration for.
GADGETS = """\
from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from chassis.database.models import Base


class Gadget(Base):
    __tablename__ = "gadgets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    colour: Mapped[str | None] = mapped_column(String(20))
"""


def test_make_revision_on_a_new_database_migrates_first_and_writes_a_clean_migration(
    tmp_path: Path,
) -> None:
    """In a copy with no database yet, `make revision` applies the migrations first (no
    "Target database is not up to date"), then writes a migration from a new model that
    passes `make lint` as written: the project's own template and ruff's post-write hooks."""
    checkout = copy_repository(tmp_path / "checkout")
    (checkout / "app" / "gadgets.py").write_text(GADGETS)
    factory = checkout / "app" / "__init__.py"
    factory.write_text(factory.read_text() + "\nfrom app import gadgets  # noqa: E402, F401\n")
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'new.db'}"}
    # -o: the copy shares this .venv; never let make re-sync it.
    made = run(
        checkout, "make", "-o", "install", "-o", "runtime", "revision", "m=add gadgets", env=env
    )
    assert "Running upgrade" in made.stdout + made.stderr
    (migration,) = (checkout / "migrations" / "versions").glob("*_add_gadgets.py")
    assert "gadgets" in migration.read_text()
    run(checkout, "ruff", "check", str(migration))
    run(checkout, "ruff", "format", "--check", str(migration))
    run(checkout, "make", "-o", "install", "-o", "runtime", "migrate", env=env)
    columns = inspect(create_engine(env["DATABASE_URL"])).get_columns("gadgets")
    assert {column["name"] for column in columns} == {"id", "colour"}


def test_an_unreachable_database_at_migrate_is_one_line_naming_its_host(tmp_path: Path) -> None:
    """`alembic upgrade heads` against a PostgreSQL nobody listens for exits 1 with one line
    naming DATABASE_URL's host and port, never its password, and no traceback."""
    port = free_port()
    url = f"postgresql://kit:sekret-password@127.0.0.1:{port}/kit"
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "alembic"), "upgrade", "heads"],
        cwd=ROOT, env=base_env(DATABASE_URL=url), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"database unreachable: DATABASE_URL's 127.0.0.1:{port}: ")
    assert "sekret" not in done.stdout + done.stderr


def test_make_migrate_refuses_a_bad_setting_before_migrating(tmp_path: Path) -> None:
    """A bad value (here a worker class gunicorn.conf.py refuses) stops `make migrate` with
    one line naming it before any migration runs: no database is created."""
    database = tmp_path / "never.db"
    env = base_env(
        PATH=f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        DATABASE_URL=f"sqlite:///{database}",
        GUNICORN_WORKER_CLASS="eventlet",
    )
    done = subprocess.run(
        ["make", "-o", "install", "-o", "runtime", "migrate"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode != 0
    assert (
        "configuration error: GUNICORN_WORKER_CLASS: must be one of sync, gevent, gthread "
        "(got 'eventlet')"
    ) in done.stderr
    assert not database.exists()
