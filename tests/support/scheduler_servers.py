"""What the scheduler's real-process tests share (tests/chassis/scheduler/): gunicorn
servers with a registry scheduled in them, and readers for `job_runs` and the JOB_EVENTS
file the test jobs (tests/apps/jobs.py) write."""

from __future__ import annotations

import datetime as dt
import json
import re
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Row, create_engine, select

from chassis.database.models import utcnow
from chassis.scheduler.models import JobRun
from harness.processes import Gunicorn, base_env

T = TypeVar("T")
Event = dict[str, Any]
WORKER_CLASSES = [pytest.param("sync", id="sync"), pytest.param("gevent", id="gevent")]


def scheduling(
    log_dir: Path,
    database_url: str,
    registry: str,
    events: Path,
    worker_class: str = "sync",
    workers: int = 1,
    enabled: bool = True,
    env: dict[str, str] | None = None,
    app: str | None = None,
) -> Gunicorn:
    """A gunicorn (not started yet) serving the kit's app (or `app`, module:name) with
    `registry` scheduled in it."""
    log_dir.mkdir()
    values = {
        "GUNICORN_WORKER_CLASS": worker_class,
        "WEB_CONCURRENCY": str(workers),
        "LOG_FORMAT": "json",
        "DATABASE_URL": database_url,
        "SCHEDULER_JOBS": registry,
        "JOB_EVENTS": str(events),
        **({"SCHEDULER_ENABLED": "1"} if enabled else {}),
        **(env or {}),
    }
    return Gunicorn(log_dir, base_env(**values), args=[app] if app else [])


def start_all(started: list[Gunicorn], *servers: Gunicorn) -> dt.datetime:
    """Start `servers` side by side, wait until all are ready; return when that was."""
    for server in servers:
        started.append(server.start(wait=False))
    for server in servers:
        server.wait_ready(timeout=30)
    return utcnow()


def stop_all(*servers: Gunicorn) -> list[int]:
    """SIGTERM every server at once; their exit statuses."""
    with ThreadPoolExecutor(max_workers=len(servers)) as pool:
        return list(pool.map(lambda server: server.stop(signal.SIGTERM, timeout=30), servers))


def wait_for(find: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `find()` until it returns something; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (found := find()) is None:
        assert time.monotonic() < deadline, f"no {what} after {timeout}s"
        time.sleep(0.1)
    return found


def read_runs(database_url: str) -> Sequence[Row[Any]]:
    """Every row of job_runs, read directly, ordered by scheduled time."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            query = select(JobRun.__table__).order_by(JobRun.scheduled_at, JobRun.id)
            return conn.execute(query).all()
    finally:
        engine.dispose()


def read_events(path: Path) -> list[Event]:
    """The JSON lines the test jobs wrote to JOB_EVENTS (none if the file does not exist)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def scheduled(event: Event) -> dt.datetime:
    """The scheduled time an event belongs to."""
    return dt.datetime.fromisoformat(event["scheduled_at"])


def of_kind(events: list[Event], kind: str) -> list[Event]:
    """The events named `kind` ("start" or "done")."""
    return [event for event in events if event["event"] == kind]


def worker_pids(server: Gunicorn) -> set[int]:
    """Every worker the server has booted so far (replacements included)."""
    return {int(pid) for pid in re.findall(r"Worker ready \(pid: (\d+)\)", server.stderr())}
