"""Test-only job registries, named by SCHEDULER_JOBS in the scheduler tests.

Each job appends one JSON line per event to the file in JOB_EVENTS (O_APPEND: lines from
concurrent processes never interleave), independent evidence of what ran where, next to
the scheduler's own `job_runs` table. The `effects`, `slow_effects` and `long` jobs also
write a row of `test_job_effects` through their session: a committed row is a committed
effect, so counting rows per scheduled time counts the runs whose work was kept.
"""

from __future__ import annotations

import json
import os
import threading
import time

from sqlalchemy import Column, Integer, MetaData, String, Table, create_engine, func, insert, text

from chassis.database.models import UTCDateTime
from chassis.scheduler import Registry, Run

ticks = Registry()
slow = Registry()
effects = Registry()
slow_effects = Registry()
long = Registry()

# Apart from the migrations (like harness/apps/records.py); the tests create it.
EFFECTS = Table(
    "test_job_effects",
    MetaData(),
    Column("id", Integer, primary_key=True),
    Column("job", String(100), nullable=False),
    Column("scheduled_at", UTCDateTime, nullable=False),
    Column("pid", Integer, nullable=False),
    # The database's clock when the job's transaction began: a run never starts early.
    Column("written_at", UTCDateTime, nullable=False, server_default=func.now()),
)


def create_effects_table(database_url: str) -> None:
    """Create `test_job_effects` in the database at `database_url`."""
    engine = create_engine(database_url)
    try:
        EFFECTS.metadata.create_all(engine)
    finally:
        engine.dispose()


def record(run: Run, job: str, event: str) -> None:
    """Append `event` for `run` to the JOB_EVENTS file."""
    line = {
        "job": job,
        "event": event,
        "scheduled_at": run.scheduled_at.isoformat(),
        "pid": os.getpid(),
        "attempt": run.attempt,
        "tracking_id": run.tracking_id,
    }
    fd = os.open(os.environ["JOB_EVENTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(line) + "\n").encode())
    finally:
        os.close(fd)


@ticks.every("tick", seconds=1)
def tick(run: Run) -> None:
    """Every second: one database round trip, then record the run."""
    run.session.execute(text("SELECT 1"))
    record(run, "tick", "done")


@slow.every("slow", seconds=2, lease_seconds=3)
def slow_job(run: Run) -> None:
    """Every 2 s, running 4 s (over its 3 s lease, so it must renew): record start and end."""
    record(run, "slow", "start")
    time.sleep(4)
    record(run, "slow", "done")


def pause(seconds: float) -> None:
    """Wait `seconds`. Not with time.sleep: under `faketime --exclude-monotonic` (libfaketime
    0.9.10, Debian 12) Python 3.11's time.sleep fails with EINVAL (wolfcw/libfaketime#426)."""
    threading.Event().wait(seconds)


def write_effect(run: Run, job: str) -> None:
    """Insert this run's row of `test_job_effects` in the job's own transaction."""
    row = {"job": job, "scheduled_at": run.scheduled_at, "pid": os.getpid()}
    run.session.execute(insert(EFFECTS).values(row))


@effects.every("effect", seconds=1, lease_seconds=3)
def effect(run: Run) -> None:
    """Every second: write the effect, then keep the transaction open 1.5 s."""
    write_effect(run, "effect")
    record(run, "effect", "start")
    pause(1.5)
    record(run, "effect", "done")


@slow_effects.every("slow-effect", seconds=5, lease_seconds=3)
def slow_effect(run: Run) -> None:
    """Every 5 s: write the effect, then run 8 s, far past the 3 s lease (it must renew)."""
    write_effect(run, "slow-effect")
    record(run, "slow-effect", "start")
    pause(8)
    record(run, "slow-effect", "done")


@long.every("long", seconds=3600, lease_seconds=6)
def long_job(run: Run) -> None:
    """Hourly (so once in a test): read, run 6 s, then write the effect."""
    run.session.execute(text("SELECT count(*) FROM test_job_effects")).scalar_one()
    record(run, "long", "start")
    pause(6)
    write_effect(run, "long")
    record(run, "long", "done")
