"""Test-only job registries, named by SCHEDULER_JOBS in the scheduler tests.

Each job appends one JSON line per event to the file in JOB_EVENTS (O_APPEND: lines from
concurrent processes never interleave), independent evidence of what ran where, next to
the scheduler's own `job_runs` table.
"""

from __future__ import annotations

import json
import os
import time

from sqlalchemy import text

from chassis.scheduler import Registry, Run

ticks = Registry()
slow = Registry()


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
