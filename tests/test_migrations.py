"""Alembic migrations: in step with the models, reversible, and safe to run from many replicas."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psycopg2
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect

from chassis.models import Base
from chassis.settings import Settings
from tests.conftest import AppFactory
from tests.postgres import PostgresServer
from tests.processes import ROOT, base_env

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
