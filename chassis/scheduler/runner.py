"""Running jobs in one process.

A loop thread (a greenlet under gevent, whose workers patch threading) claims due times,
starts each claimed job in a thread of its own, renews the leases of running jobs, and
takes over runs whose holder stopped renewing. gunicorn starts one per worker after fork
(chassis/serving/hooks.py, never in the master); `flask scheduler run` runs one in the foreground.

None of it uses the request pool: the loop keeps one connection of its own and jobs a small
pool (chassis/scheduler/connections.py), so slow requests cannot make a lease expire. Each
job's session is fenced (`lease.Fence`): its work commits with its outcome, and only while
this process still holds the run.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from flask import Flask
from sqlalchemy.orm import Session
from werkzeug.utils import import_string

from chassis.database.sessions import Database
from chassis.observability.metrics import current_metrics
from chassis.observability.tracking import new_tracking_id, tracking_scope
from chassis.scheduler import lease
from chassis.scheduler.connections import scheduler_sessions, transaction
from chassis.scheduler.registry import Job, Registry, Run
from chassis.settings import Settings, get_settings

log = logging.getLogger(__name__)

# How often the loop looks for due times: the lateness of a run, at most.
POLL_SECONDS = 0.5
# How often it looks for runs whose holder died (a query per process).
SCAN_SECONDS = 5.0
# How long a job waits for a connection of the jobs' pool (SCHEDULER_DB_POOL_SIZE) before it
# fails: longer than a request (no client is waiting, and its lease is renewed meanwhile).
JOB_CONNECTION_WAIT_SECONDS = 60.0


@dataclass
class _Active:
    job: Job
    run_id: int
    tracking_id: str
    thread: threading.Thread
    renewed: float = field(default_factory=time.monotonic)


class Scheduler:
    """Runs `registry`'s jobs in this process; the database decides who runs each time."""

    def __init__(self, app: Flask, registry: Registry) -> None:
        self.app = app
        self.registry = registry
        self.db: Database = app.extensions["db"]
        settings = get_settings(app)
        # One connection for the loop's own statements (one at a time), a pool for jobs.
        self._leases = scheduler_sessions(settings, 1, settings.db_pool_timeout)
        self._jobs = scheduler_sessions(
            settings, settings.scheduler_db_pool_size, JOB_CONNECTION_WAIT_SECONDS
        )
        host = socket.gethostname()[:100]
        self.holder = lease.Holder(host, os.getpid(), uuid.uuid4().hex[:8])
        self._stopping = threading.Event()
        self._loop: threading.Thread | None = None
        self._active: dict[int, _Active] = {}
        self._seen: dict[str, dt.datetime] = {}
        self._next_scan = 0.0

    def start(self) -> None:
        """Run the loop in a daemon thread (a greenlet under gevent)."""
        self._loop = threading.Thread(target=self.run, name="scheduler", daemon=True)
        self._loop.start()

    def run(self) -> None:
        """Loop until `request_stop`; a failed pass (database down) is logged and retried."""
        log.info("scheduler started: %s", ", ".join(sorted(self.registry.jobs)) or "no jobs")
        while not self._stopping.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("scheduler pass failed; retrying in %s s", POLL_SECONDS)
            self._stopping.wait(POLL_SECONDS)

    def request_stop(self) -> None:
        """Stop claiming new runs (safe from a signal handler)."""
        self._stopping.set()

    def stop(self, wait: float) -> None:
        """Stop claiming, give running jobs up to `wait` seconds (renewing their leases),
        then hand back the runs still going, so another process retries them at once."""
        self.request_stop()
        deadline = time.monotonic() + wait
        if self._loop is not None and self._loop is not threading.current_thread():
            self._loop.join(max(0.0, deadline - time.monotonic()))
        while self._reap() and (left := deadline - time.monotonic()) > 0:
            self._renew()
            # Back as soon as a job ends, or in time for the next renewal.
            next(iter(self._active.values())).thread.join(min(left, 0.1))
        for active in self._active.values():
            with transaction(self._leases, active.tracking_id) as session:
                lease.release(session, active.run_id, self.holder)
            log.warning("job %s still running at shutdown: run handed back", active.job.name)

    def tick(self) -> None:
        """One pass: reap, renew, claim due times, and now and then take over expired runs."""
        self._reap()
        self._renew()
        # Which times are due is read on the database's clock too: by its own, a host 50 s
        # fast would claim every time 50 s early (and its first pass a time still to come).
        # All holders share the database's clock, and it costs one query per pass.
        with transaction(self._leases) as session:
            now = lease.database_now(session)
        for job in self.registry.jobs.values():
            for scheduled_at in self._due(job, now):
                self._claim(job, scheduled_at, now)
                # Only once the database has answered: a failed claim is retried next pass.
                self._seen[job.name] = scheduled_at
        if time.monotonic() >= self._next_scan:
            self._take_over_expired()
            self._next_scan = time.monotonic() + SCAN_SECONDS

    def _due(self, job: Job, now: dt.datetime) -> list[dt.datetime]:
        """Times to claim now: those after the last one claimed, or on the first pass what
        the catch-up policy says about times missed while no scheduler ran."""
        seen = self._seen.get(job.name)
        if seen is not None:
            return list(job.due(seen, now))
        if job.catch_up == "latest":
            return [job.latest(now)]
        self._seen[job.name] = job.latest(now)
        return []

    def _claim(self, job: Job, scheduled_at: dt.datetime, now: dt.datetime) -> None:
        tracking_id = new_tracking_id()
        with transaction(self._leases, tracking_id) as session:
            run_id = lease.claim(session, job, scheduled_at, self.holder, tracking_id)
        if run_id is not None:
            current_metrics().run_claimed(job.name, (now - scheduled_at).total_seconds())
            self._start(job, run_id, scheduled_at, 1, tracking_id)

    def _take_over_expired(self) -> None:
        with transaction(self._leases) as session:
            candidates = lease.expired(session, list(self.registry.jobs))
        for run_id, name in candidates:
            job = self.registry.jobs[name]
            tracking_id = new_tracking_id()
            with transaction(self._leases, tracking_id) as session:
                taken = lease.take_over(session, run_id, job, self.holder, tracking_id)
                if taken is None and lease.abandon(session, run_id, job):
                    log.error(
                        "job %s: run %s abandoned after %s attempts", name, run_id, job.max_attempts
                    )
            if taken is not None:
                log.warning("job %s: took over run %s (attempt %s)", name, run_id, taken[1])
                self._start(job, run_id, taken[0], taken[1], tracking_id)

    def _start(
        self, job: Job, run_id: int, scheduled_at: dt.datetime, attempt: int, tracking_id: str
    ) -> None:
        thread = threading.Thread(
            target=self._execute,
            args=(job, run_id, scheduled_at, attempt, tracking_id),
            name=f"job {job.name}",
            daemon=True,
        )
        self._active[run_id] = _Active(job, run_id, tracking_id, thread)
        thread.start()

    def _execute(
        self, job: Job, run_id: int, scheduled_at: dt.datetime, attempt: int, tracking_id: str
    ) -> None:
        """Run the job under its tracking id in a fenced session of its own, then log how
        it ended."""
        started = time.monotonic()
        fence = lease.Fence(run_id, job, self.holder)
        with (
            self.app.app_context(),
            tracking_scope(tracking_id),
            self._job_session(fence) as session,
        ):
            log.info(
                "job %s started (scheduled %s, attempt %s)",
                job.name,
                scheduled_at.isoformat(),
                attempt,
            )
            try:
                error = self._run(job, fence, Run(scheduled_at, session, attempt, tracking_id))
            except lease.LeaseLost:
                session.rollback()
                log.error(
                    "job %s lost its run to another process: its work is rolled back", job.name
                )
                current_metrics().run_ended(job.name, "lost")
                return
            except Exception:
                log.exception(
                    "job %s: could not record the outcome; its lease will expire", job.name
                )
                current_metrics().run_ended(job.name, "unrecorded")
                return
            took = round(time.monotonic() - started, 3)
            log.info("job %s %s in %s s", job.name, "failed" if error else "succeeded", took)
            current_metrics().run_ended(job.name, "failed" if error else "succeeded")

    def _run(self, job: Job, fence: lease.Fence, run: Run) -> str | None:
        """Call the job and commit its work together with its outcome; after an exception,
        roll the work back and commit the failure alone. The error recorded, or None."""
        try:
            job.func(run)
            fence.record(run.session, None)
            run.session.commit()
            return None
        except lease.LeaseLost:
            raise
        except Exception as exc:
            run.session.rollback()
            log.exception("job %s failed", job.name)
            error = f"{type(exc).__name__}: {exc}"[:2000]
            fence.record(run.session, error)
            run.session.commit()
            return error

    @contextmanager
    def _job_session(self, fence: lease.Fence) -> Iterator[Session]:
        """The job's session, fenced, on the jobs' pool; in the job's thread `get_session()`
        returns it too, so code shared with views writes inside the fence."""
        session = self._jobs()
        fence.attach(session)
        self.db.session.registry.set(session)
        try:
            yield session
        finally:
            self.db.session.registry.clear()
            session.close()

    def _renew(self) -> None:
        # When to renew is counted on this host's monotonic clock: only intervals matter here.
        now = time.monotonic()
        for active in self._active.values():
            if now - active.renewed < active.job.lease.total_seconds() / 3:
                continue
            with transaction(self._leases, active.tracking_id) as session:
                if not lease.renew(session, active.run_id, active.job, self.holder):
                    log.error("job %s lost its lease: its commit will be refused", active.job.name)
            active.renewed = now

    def _reap(self) -> bool:
        """Forget finished job threads; whether any job is still running."""
        for run_id in [r for r, active in self._active.items() if not active.thread.is_alive()]:
            del self._active[run_id]
        return bool(self._active)


def load_registry(settings: Settings) -> Registry:
    """Import the registry SCHEDULER_JOBS names (module:attribute)."""
    registry = import_string(settings.scheduler_jobs)
    if not isinstance(registry, Registry):
        raise TypeError(f"SCHEDULER_JOBS={settings.scheduler_jobs} is not a Registry")
    return registry
