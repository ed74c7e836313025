"""The database side of the scheduler: each function is one atomic statement on `job_runs`.

Whoever inserts the (job, scheduled_at) row holds that run; a run whose lease expired can
be taken over by a conditional UPDATE; renewing, finishing and releasing only touch a row
this holder still holds. Row counts, never a read followed by a write, decide every race.

Every time these statements write or compare is the database's clock (`clock`), never this
host's: clocks drift apart, and a holder whose clock ran 50 s fast would see every other
holder's lease as expired and run their times again.

`Fence` extends the same check to a job's own transaction: its work commits only together
with proof that this holder still holds the run.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, DateTime, delete, event, func, select, type_coerce, update
from sqlalchemy.orm import Session

from chassis.database.models import UTCDateTime
from chassis.database.upsert import dialect_insert
from chassis.scheduler.models import JobRun
from chassis.scheduler.registry import Job

NO_TIME = dt.timedelta()


class LeaseLost(Exception):
    """The run is no longer this holder's (taken over, abandoned): nothing of it may commit."""


def clock(session: Session, plus: dt.timedelta = NO_TIME) -> ColumnElement[dt.datetime]:
    """The database's current time plus `plus`, as SQL of the timestamp columns' type."""
    if session.get_bind().dialect.name == "sqlite":
        # SQLite's clock is its host's, which every process of a SQLite deployment shares.
        # SQLAlchemy stores timestamps there as text, YYYY-MM-DD HH:MM:SS.ffffff, compared
        # as text; %f is SS.SSS, so three zeros keep the width and the order the same.
        shifted = func.strftime("%Y-%m-%d %H:%M:%f000", "now", f"{plus.total_seconds():+f} seconds")
        return type_coerce(shifted, UTCDateTime)
    # statement_timestamp(), not now(): now() stands still for a whole transaction, and a
    # job's outcome is written at the end of the job's own, long transaction.
    moment = func.statement_timestamp(type_=DateTime(timezone=True))
    return type_coerce(moment + plus if plus else moment, UTCDateTime)


def database_now(session: Session) -> dt.datetime:
    """The database's current time (one query)."""
    now: dt.datetime = session.execute(select(clock(session))).scalar_one()
    return now


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
    statement = (
        dialect_insert(session, JobRun)
        .values(
            job=job.name,
            scheduled_at=scheduled_at,
            status="running",
            holder=holder.name,
            host=holder.host,
            pid=holder.pid,
            lease_expires_at=clock(session, job.lease),
            attempts=1,
            tracking_id=tracking_id,
            started_at=clock(session),
        )
        .on_conflict_do_nothing(index_elements=["job", "scheduled_at"])
        .returning(JobRun.id)
    )
    run_id: int | None = session.execute(statement).scalar_one_or_none()
    return run_id


def expired(session: Session, jobs: list[str]) -> list[tuple[int, str]]:
    """Running runs of `jobs` whose lease has expired: (id, job) pairs."""
    rows = session.execute(
        select(JobRun.id, JobRun.job).where(
            JobRun.status == "running",
            JobRun.lease_expires_at < clock(session),
            JobRun.job.in_(jobs),
        )
    )
    return [(run_id, name) for run_id, name in rows]


def take_over(
    session: Session, run_id: int, job: Job, holder: Holder, tracking_id: str
) -> tuple[dt.datetime, int] | None:
    """Take an expired run from a holder that stopped renewing: (scheduled time, attempt),
    or None when another process was faster or the lease is alive again."""
    result = session.execute(
        update(JobRun)
        .where(*_lease_expired(session, run_id), JobRun.attempts < job.max_attempts)
        .values(
            holder=holder.name,
            host=holder.host,
            pid=holder.pid,
            lease_expires_at=clock(session, job.lease),
            attempts=JobRun.attempts + 1,
            tracking_id=tracking_id,
            started_at=clock(session),
            error="taken over: the previous holder's lease expired",
        )
        .returning(JobRun.scheduled_at, JobRun.attempts)
    )
    row = result.one_or_none()
    return None if row is None else (row.scheduled_at, row.attempts)


def abandon(session: Session, run_id: int, job: Job) -> bool:
    """Give up on an expired run whose holders died `max_attempts` times."""
    result = session.execute(
        update(JobRun)
        .where(*_lease_expired(session, run_id), JobRun.attempts >= job.max_attempts)
        .values(
            status="abandoned",
            finished_at=clock(session),
            error=f"abandoned: its holder stopped {job.max_attempts} times",
        )
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


def renew(session: Session, run_id: int, job: Job, holder: Holder) -> bool:
    """Extend this holder's lease; False when the run is no longer ours."""
    return _mine(session, run_id, holder, lease_expires_at=clock(session, job.lease))


def finish(session: Session, run_id: int, holder: Holder, error: str | None) -> bool:
    """Record the outcome; False when the run was taken over meanwhile. A success keeps
    the note a takeover left in `error`."""
    if error is None:
        return _mine(session, run_id, holder, status="succeeded", finished_at=clock(session))
    return _mine(session, run_id, holder, status="failed", finished_at=clock(session), error=error)


def release(session: Session, run_id: int, holder: Holder) -> bool:
    """Hand an unfinished run back: its lease expires now, so another process retries it."""
    return _mine(session, run_id, holder, lease_expires_at=clock(session))


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


def _lease_expired(session: Session, run_id: int) -> tuple[ColumnElement[bool], ...]:
    """The run is still running, and its holder's lease has ended."""
    return (
        JobRun.id == run_id,
        JobRun.status == "running",
        JobRun.lease_expires_at < clock(session),
    )


def _mine(session: Session, run_id: int, holder: Holder, **values: object) -> bool:
    result = session.execute(
        update(JobRun)
        .where(JobRun.id == run_id, JobRun.holder == holder.name, JobRun.status == "running")
        .values(**values)
    )
    return result.rowcount == 1  # type: ignore[attr-defined, no-any-return]


@dataclass
class Fence:
    """Lets a job's session commit only while this holder still holds the run.

    Every commit of the session first renews the lease in that same transaction (`renew`'s
    conditional UPDATE); when the row count says the run is gone, LeaseLost is raised before
    anything commits, and the job's writes roll back with the transaction. The last commit
    carries the outcome instead (`record`), so the work and its record commit together or
    not at all. On PostgreSQL the UPDATE also locks the row until that commit, so a takeover
    waits for it and then finds the run renewed or finished.
    """

    run_id: int
    job: Job
    holder: Holder
    _outcome_pending: bool = field(default=False, init=False)

    def attach(self, session: Session) -> None:
        """Check every commit of `session` from now on."""
        event.listen(session, "before_commit", self._check)

    def record(self, session: Session, error: str | None) -> None:
        """Write the run's outcome into `session`'s transaction, for the commit that follows;
        LeaseLost when the run is no longer this holder's."""
        if not finish(session, self.run_id, self.holder, error):
            raise LeaseLost(f"run {self.run_id} of job {self.job.name} is no longer ours")
        self._outcome_pending = True

    def _check(self, session: Session) -> None:
        if self._outcome_pending:  # `record` has just checked, in this transaction
            self._outcome_pending = False
        elif not renew(session, self.run_id, self.job, self.holder):
            raise LeaseLost(f"run {self.run_id} of job {self.job.name} is no longer ours")
