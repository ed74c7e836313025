"""Alembic environment: the database URL, engine and logging come from the app's settings.

Run by `alembic upgrade heads` (make migrate) and `alembic revision --autogenerate`. On
PostgreSQL every run holds an advisory lock, so replicas that start their migration step at
the same moment run one after another: the first applies the schema, the others find it
current and exit 0. On SQLite the chassis's BEGIN IMMEDIATE serialises them the same way.
"""

import logging
import time
from typing import Any

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import exc as sa_exc
from sqlalchemy import text

import app  # noqa: F401  the service's models, so Base.metadata holds their tables
import chassis.scheduler.models  # noqa: F401  the chassis's own tables
from chassis.database.engine import build_engine, unreachable
from chassis.database.models import Base, UTCDateTime
from chassis.observability.log import configure_logging
from chassis.settings import Settings, current_settings, read_or_exit

# Any fixed 64-bit number, the same in every replica: the key of the migration lock.
MIGRATION_LOCK_ID = 7_331_001

# How long a migration's statement waits for a table lock. PostgreSQL queues lock requests
# in order, so an ALTER TABLE waiting behind a long transaction holds every later query on
# that table behind itself: without a limit, traffic on the table stops for as long as the
# old transaction runs. With it, the app waits at most this long per attempt.
LOCK_TIMEOUT = "2s"
# Attempts before the migration gives up (exit 1, nothing applied), and the pause after each
# failed one, doubling: 1, 2, 4, 8 s, so a transaction up to about 25 s long is waited out.
ATTEMPTS = 5
FIRST_PAUSE_S = 1.0
LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE when lock_timeout expires

log = logging.getLogger("migrations")


def load_settings() -> Settings:
    """Settings passed in by a caller (tests), or read from the environment (the CLI)."""
    given = context.config.attributes.get("settings")
    if isinstance(given, Settings):
        return given
    settings = read_or_exit(current_settings)
    configure_logging(settings)
    return settings


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | bool:
    """Write the app's column types as plain SQLAlchemy types, so migrations import nothing
    from the app (a migration must keep working after the model code changes)."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def run_migrations_offline(settings: Settings) -> None:
    """Print the SQL instead of running it (`alembic upgrade heads --sql`)."""
    context.configure(url=settings.database_url, target_metadata=Base.metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online(settings: Settings) -> None:
    """Apply the migrations to the database, holding the migration lock on PostgreSQL."""
    # No statement timeout here: a migration may legitimately rewrite a large table.
    engine = build_engine(settings.model_copy(update={"db_statement_timeout_ms": 0}))
    try:
        try:
            connection = engine.connect()
        except sa_exc.DBAPIError as exc:
            raise SystemExit(unreachable(settings.database_url, exc)) from None
        with connection:
            postgres = connection.dialect.name == "postgresql"
            if postgres:
                # A session-level lock: it outlives the commit below and every migration's
                # transaction, until it is released or the connection closes.
                connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_ID})
                connection.execute(text(f"SET lock_timeout = '{LOCK_TIMEOUT}'"))
                connection.commit()
            context.configure(
                connection=connection,
                target_metadata=Base.metadata,
                # SQLite alters tables by copying them; batch mode writes those migrations.
                render_as_batch=connection.dialect.name == "sqlite",
                render_item=render_item,
            )
            run_retrying_lock_timeouts()
            if postgres:
                connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_ID})
                connection.commit()
    finally:
        engine.dispose()


def run_retrying_lock_timeouts() -> None:
    """Run the pending migrations in one transaction; when a statement's lock wait runs out
    (LOCK_TIMEOUT), everything is rolled back and tried again after a pause, ATTEMPTS
    times in all, then the error is raised: nothing half-applied either way."""
    pause = FIRST_PAUSE_S
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with context.begin_transaction():
                context.run_migrations()
            return
        except sa_exc.OperationalError as exc:
            if getattr(exc.orig, "pgcode", None) != LOCK_NOT_AVAILABLE or attempt == ATTEMPTS:
                raise
            log.warning(
                "a migration waited %s for a table lock (attempt %s of %s); "
                "rolled back, retrying in %ss",
                LOCK_TIMEOUT, attempt, ATTEMPTS, pause,
            )  # fmt: skip
            time.sleep(pause)
            pause *= 2


if context.is_offline_mode():
    run_migrations_offline(load_settings())
else:
    run_migrations_online(load_settings())
