"""The database side of the scheduler: each function is one atomic statement on `job_runs`.

Whoever inserts the (job, scheduled_at) row holds that run; a run whose lease expired can
be taken over by a conditional UPDATE; renewing, finishing and releasing only touch a row
this holder still holds. Row counts, never a read followed by a write, decide every race.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import ColumnElement, delete, func, select, update
from sqlalchemy.orm import Session

from chassis.models import utcnow
from chassis.scheduler.models import JobRun
from chassis.scheduler.registry import Job
from chassis.upsert import dialect_insert


@dataclass(frozen=True)
class Holder:
    """This scheduler instance, as recorded in `job_runs`."""

    host: str
    pid: int
    token: str

    @property
    def name(self) -> str:
        """host:pid:token, unique even when a restarted container reuses the pid."""
        return f"{self.host}:{self.pid}:{self.token}"


def claim(
    session: Session, job: Job, scheduled_at: dt.datetime, holder: Holder, tracking_id: str
) -> int | None:
    """Take (job, scheduled_at) if nobody has: the new run's id, or None."""
    now = utcnow()
    statement = (
        dialect_insert(session, JobRun)
        .values(
            job=job.name,
            scheduled_at=scheduled_at,
            status="running",
            holder=holder.name,
            host=holder.host,
            pid=holder.pid,
            lease_expires_at=now + job.lease,
            attempts=1,
            tracking_id=tracking_id,
            started_at=now,
        )
        .on_conflict_do_nothing(index_elements=["job", "scheduled_at"])
        .returning(JobRun.id)
    )
    run_id: int | None = session.execute(statement).scalar_one_or_none()
    return run_id


def expired(session: Session, jobs: list[str]) -> list[tuple[int, str]]:
    """Running runs of `jobs` whose lease has expired: (id, job) pairs."""
    now = utcnow()
    rows = session.execute(
        select(JobRun.id, JobRun.job).where(
            JobRun.status == "running", JobRun.lease_expires_at < now, JobRun.job.in_(jobs)
        )
    )
    return [(run_id, name) for run_id, name in rows]


def take_over(
    session: Session, run_id: int, job: Job, holder: Holder, tracking_id: str
) -> tuple[dt.datetime, int] | None:
    """Take an expired run from a holder that stopped renewing: (scheduled time, attempt),
    or None when another process was faster or the lease is alive again."""
    now = utcnow()
    result = session.execute(
        update(JobRun)
        .where(*_lease_expired(run_id, now), JobRun.attempts < job.max_attempts)
        .values(
            holder=holder.name,
            host=holder.host,
            pid=holder.pid,
            lease_expires_at=now + job.lease,
            attempts=JobRun.attempts + 1,
            tracking_id=tracking_id,
            started_at=now,
            error="taken over: the previous holder's lease expired",
        )
        .returning(JobRun.scheduled_at, JobRun.attempts)
    )
    row = result.one_or_none()
    return None if row is None else (row.scheduled_at, row.attempts)


def abandon(session: Session, run_id: int, job: Job) -> bool:
    """Give up on an expired run whose holders died `max_attempts` times."""
    now = utcnow()
    result = session.execute(
        update(JobRun)
        .where(*_lease_expired(run_id, now), JobRun.attempts >= job.max_attempts)
        .values(
            status="abandoned",
            finished_at=now,
            error=f"abandoned: its holder stopped {job.max_attempts} times",
        )
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def renew(session: Session, run_id: int, job: Job, holder: Holder) -> bool:
    """Extend this holder's lease; False when the run is no longer ours."""
    now = utcnow()
    return _mine(session, run_id, holder, lease_expires_at=now + job.lease)


def finish(session: Session, run_id: int, holder: Holder, error: str | None) -> bool:
    """Record the outcome; False when the run was taken over meanwhile. A success keeps
    the note a takeover left in `error`."""
    now = utcnow()
    if error is None:
        return _mine(session, run_id, holder, status="succeeded", finished_at=now)
    return _mine(session, run_id, holder, status="failed", finished_at=now, error=error)


def release(session: Session, run_id: int, holder: Holder) -> bool:
    """Hand an unfinished run back: its lease expires now, so another process retries it."""
    return _mine(session, run_id, holder, lease_expires_at=utcnow())


def purge(session: Session, before: dt.datetime) -> int:
    """Delete finished runs scheduled before `before`, keeping each job's newest run (so a
    restart's catch-up still sees that a rare job already ran); the number deleted."""
    newest = select(func.max(JobRun.id)).group_by(JobRun.job).scalar_subquery()
    result = session.execute(
        delete(JobRun).where(
            JobRun.scheduled_at < before, JobRun.status != "running", JobRun.id.not_in(newest)
        )
    )
    return result.rowcount  # type: ignore[attr-defined, no-any-return]


def _lease_expired(run_id: int, now: dt.datetime) -> tuple[ColumnElement[bool], ...]:
    """The run is still running, and its holder's lease ended before `now`."""
    return (JobRun.id == run_id, JobRun.status == "running", JobRun.lease_expires_at < now)


def _mine(session: Session, run_id: int, holder: Holder, **values: object) -> bool:
    result = session.execute(
        update(JobRun)
        .where(JobRun.id == run_id, JobRun.holder == holder.name, JobRun.status == "running")
        .values(**values)
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]
