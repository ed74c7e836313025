"""chassis/scheduler/lease.py on SQLite and PostgreSQL: every race is decided by one statement,
every lease time is the database's clock, and a fenced session commits only for the holder.

Each test uses job names of its own, so the shared migrated databases need no cleanup.
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import delete, select, text
from sqlalchemy.orm import Session

from chassis.database.models import utcnow
from chassis.database.sessions import Database
from chassis.scheduler import Job, LeaseLost, Run, lease
from chassis.scheduler.models import JobRun
from harness.apps.records import Record
from tests.support.flask_app import AppFactory

T0 = dt.datetime(2026, 11, 21, 11, 0, tzinfo=dt.UTC)
ME = lease.Holder("host-a", 101, "aaaa")
OTHER = lease.Holder("host-b", 202, "bbbb")


def noop(run: Run) -> None:
    """A job that does nothing."""


def job(lease_seconds: float = 60, max_attempts: int = 3) -> Job:
    """A job with a unique name, so tests never see each other's rows."""
    return Job(
        name=f"test-{uuid.uuid4().hex[:12]}",
        func=noop,
        every=dt.timedelta(seconds=10),
        lease=dt.timedelta(seconds=lease_seconds),
        max_attempts=max_attempts,
    )


@pytest.fixture
def db(make_app: AppFactory, database_url: str) -> Iterator[Database]:
    """The app's Database on each migrated backend."""
    app: Flask = make_app(database_url=database_url)
    database: Database = app.extensions["db"]
    yield database
    # The fenced-commit tests store test records for real, in the session's shared databases.
    with database.session_scope() as session:
        session.execute(delete(Record).where(Record.name.startswith("fenced-")))
    database.engine.dispose()


@pytest.fixture
def in_tx(db: Database) -> Callable[..., Any]:
    """Run one lease function in a transaction of its own (committed), as the scheduler does."""

    def call(func: Callable[..., Any], *args: Any) -> Any:
        with db.session_scope() as session:
            return func(session, *args)

    return call


def row(db: Database, run_id: int) -> JobRun:
    """The run as stored now."""
    with db.session_scope() as session:
        found = session.scalars(select(JobRun).where(JobRun.id == run_id)).one()
        session.expunge(found)
        return found


def expire(db: Database, run_id: int) -> None:
    """Make the run's lease expire (as if its holder had stopped renewing long ago)."""
    with db.session_scope() as session:
        session.get_one(JobRun, run_id).lease_expires_at = T0


def test_first_claim_wins_and_records_who(db: Database, in_tx: Callable[..., Any]) -> None:
    """The first claim of a time inserts the run; a second claim of it gets None."""
    j = job()
    run_id = in_tx(lease.claim, j, T0, ME, "tid-1")
    assert run_id is not None
    assert in_tx(lease.claim, j, T0, OTHER, "tid-2") is None
    stored = row(db, run_id)
    assert (stored.status, stored.holder, stored.host, stored.pid) == (
        "running",
        ME.name,
        "host-a",
        101,
    )
    assert (stored.attempts, stored.tracking_id, stored.scheduled_at) == (1, "tid-1", T0)


def test_concurrent_claims_have_exactly_one_winner(db: Database) -> None:
    """Sixteen threads claiming the same time at once: one id, fifteen None."""
    j = job()

    def claim(n: int) -> int | None:
        holder = lease.Holder("h", n, "t")
        with db.session_scope() as session:
            result: int | None = lease.claim(session, j, T0, holder, f"tid-{n}")
            return result

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(claim, range(16)))
    assert len([r for r in results if r is not None]) == 1


def test_other_times_are_separate_runs(in_tx: Callable[..., Any]) -> None:
    """Each scheduled time is its own lock."""
    j = job()
    first = in_tx(lease.claim, j, T0, ME, "a")
    second = in_tx(lease.claim, j, T0 + dt.timedelta(seconds=10), OTHER, "b")
    assert first is not None
    assert second is not None
    assert first != second


def test_live_lease_cannot_be_taken_over(in_tx: Callable[..., Any]) -> None:
    """While the holder's lease runs, nobody else gets the run."""
    j = job()
    run_id = in_tx(lease.claim, j, T0, ME, "a")
    assert in_tx(lease.take_over, run_id, j, OTHER, "b") is None


def test_expired_lease_is_taken_over_once(db: Database, in_tx: Callable[..., Any]) -> None:
    """After expiry one process takes the run over (attempt 2); a second attempt gets None."""
    j = job()
    run_id = in_tx(lease.claim, j, T0, ME, "a")
    expire(db, run_id)
    assert (run_id, j.name) in in_tx(lease.expired, [j.name])
    assert in_tx(lease.take_over, run_id, j, OTHER, "b") == (T0, 2)
    assert in_tx(lease.take_over, run_id, j, ME, "c") is None
    stored = row(db, run_id)
    assert (stored.holder, stored.attempts, stored.tracking_id) == (OTHER.name, 2, "b")
    assert stored.error is not None
    assert "taken over" in stored.error


def test_only_the_holder_renews_finishes_or_releases(
    db: Database, in_tx: Callable[..., Any]
) -> None:
    """Another process's renew, finish and release change nothing."""
    j = job()
    run_id = in_tx(lease.claim, j, T0, ME, "a")
    assert in_tx(lease.renew, run_id, j, OTHER) is False
    assert in_tx(lease.release, run_id, OTHER) is False
    assert in_tx(lease.finish, run_id, OTHER, None) is False
    assert row(db, run_id).status == "running"
    assert in_tx(lease.finish, run_id, ME, None) is True
    assert row(db, run_id).status == "succeeded"


def test_a_taken_over_run_cannot_be_finished_by_the_old_holder(
    db: Database, in_tx: Callable[..., Any]
) -> None:
    """A holder that lost its lease cannot overwrite the new holder's outcome."""
    j = job()
    run_id = in_tx(lease.claim, j, T0, ME, "a")
    expire(db, run_id)
    in_tx(lease.take_over, run_id, j, OTHER, "b")
    assert in_tx(lease.finish, run_id, ME, "boom") is False
    assert in_tx(lease.renew, run_id, j, ME) is False
    assert in_tx(lease.finish, run_id, OTHER, None) is True
    stored = row(db, run_id)
    assert stored.status == "succeeded"
    assert stored.error == "taken over: the previous holder's lease expired"


def test_renew_extends_the_lease(db: Database, in_tx: Callable[..., Any]) -> None:
    """Renewing moves the expiry forward from now."""
    j = job(lease_seconds=30)
    run_id = in_tx(lease.claim, j, T0, ME, "a")
    before = row(db, run_id).lease_expires_at
    time.sleep(0.01)
    assert in_tx(lease.renew, run_id, j, ME) is True
    assert row(db, run_id).lease_expires_at > before


def test_release_lets_another_process_retry_at_once(
    db: Database, in_tx: Callable[..., Any]
) -> None:
    """A released run's lease has expired: the next scan takes it over."""
    j = job()
    run_id = in_tx(lease.claim, j, T0, ME, "a")
    assert in_tx(lease.release, run_id, ME) is True
    time.sleep(0.01)
    assert in_tx(lease.take_over, run_id, j, OTHER, "b") == (T0, 2)


def test_failed_outcome_keeps_the_error(db: Database, in_tx: Callable[..., Any]) -> None:
    """finish() with an error records a failed run and its message."""
    j = job()
    run_id = in_tx(lease.claim, j, T0, ME, "a")
    in_tx(lease.finish, run_id, ME, "ValueError: nope")
    stored = row(db, run_id)
    assert (stored.status, stored.error) == ("failed", "ValueError: nope")
    assert stored.finished_at is not None


def test_run_is_abandoned_after_max_attempts(db: Database, in_tx: Callable[..., Any]) -> None:
    """A run whose holders keep dying is abandoned, not taken over forever."""
    j = job(max_attempts=2)
    run_id = in_tx(lease.claim, j, T0, ME, "a")
    expire(db, run_id)
    assert in_tx(lease.abandon, run_id, j) is False  # attempt 1 of 2: take over instead
    assert in_tx(lease.take_over, run_id, j, OTHER, "b") == (T0, 2)
    expire(db, run_id)
    assert in_tx(lease.take_over, run_id, j, ME, "c") is None
    assert in_tx(lease.abandon, run_id, j) is True
    assert row(db, run_id).status == "abandoned"


def test_purge_keeps_running_recent_and_each_jobs_newest_run(
    db: Database, in_tx: Callable[..., Any]
) -> None:
    """Old finished runs go; running ones, recent ones and each job's newest stay."""
    rare, frequent = job(), job()
    old_rare = in_tx(lease.claim, rare, T0, ME, "a")
    old_done = in_tx(lease.claim, frequent, T0, ME, "b")
    old_running = in_tx(lease.claim, frequent, T0 + dt.timedelta(seconds=10), ME, "c")
    recent = in_tx(lease.claim, frequent, T0 + dt.timedelta(days=10), ME, "d")
    for run_id in (old_rare, old_done, recent):
        in_tx(lease.finish, run_id, ME, None)
    in_tx(lease.purge, T0 + dt.timedelta(days=1))
    with db.session_scope() as session:
        left = set(
            session.scalars(select(JobRun.id).where(JobRun.job.in_([rare.name, frequent.name])))
        )
    assert left == {old_rare, old_running, recent}


def test_database_now_is_the_databases_clock_in_utc(db: Database) -> None:
    """database_now() reads the database's time, timezone-aware UTC (here: this host's)."""
    with db.session_scope() as session:
        now = lease.database_now(session)
    assert now.tzinfo == dt.UTC
    assert abs(now - utcnow()) < dt.timedelta(seconds=5)


def test_a_claim_stamps_its_times_on_the_database_clock(
    db: Database, in_tx: Callable[..., Any]
) -> None:
    """started_at is the database's now, and the lease runs `lease_seconds` from it."""
    j = job(lease_seconds=30)
    with db.session_scope() as session:
        before = lease.database_now(session)
    stored = row(db, in_tx(lease.claim, j, T0, ME, "a"))
    assert before <= stored.started_at <= before + dt.timedelta(seconds=5)
    assert stored.lease_expires_at - stored.started_at == dt.timedelta(seconds=30)


def test_sqlite_stores_the_database_clock_as_sqlalchemy_stores_times(
    make_app: AppFactory, sqlite_url: str
) -> None:
    """On SQLite the clock's text has SQLAlchemy's width, so comparing text compares times."""
    database: Database = make_app(database_url=sqlite_url).extensions["db"]
    with database.session_scope() as session:
        run_id = lease.claim(session, job(), T0, ME, "a")
        raw = session.execute(
            text("SELECT started_at, scheduled_at FROM job_runs WHERE id = :id"), {"id": run_id}
        ).one()
    database.engine.dispose()
    assert [len(value) for value in raw] == [26, 26]
    assert raw.started_at[-3:] == "000"  # SQLite's clock counts milliseconds


def fenced_session(db: Database, run_id: int, j: Job, holder: lease.Holder) -> Session:
    """A session whose commits are fenced for `holder`'s run, as a job's is."""
    session = Session(db.engine, expire_on_commit=False)
    lease.Fence(run_id, j, holder).attach(session)
    return session


def stored_records(db: Database, name: str) -> list[str]:
    """Names of the committed test records starting with `name`."""
    with db.session_scope() as session:
        return list(session.scalars(select(Record.name).where(Record.name.startswith(name))))


def test_a_fenced_commit_renews_the_holders_lease(db: Database, in_tx: Callable[..., Any]) -> None:
    """While the run is ours a fenced session commits its work and extends the lease."""
    j = job(lease_seconds=30)
    run_id = in_tx(lease.claim, j, T0, ME, "a")
    expire(db, run_id)  # lapsed but not taken over: still ours
    name = f"fenced-{uuid.uuid4().hex[:8]}"
    with fenced_session(db, run_id, j, ME) as session:
        session.add(Record(name=name))
        session.commit()
    assert stored_records(db, name) == [name]
    assert row(db, run_id).lease_expires_at > utcnow()


def test_a_fenced_commit_after_a_takeover_commits_nothing(
    db: Database, in_tx: Callable[..., Any]
) -> None:
    """Once another process took the run over, the old holder's commit raises LeaseLost
    and none of its work is stored."""
    j = job()
    run_id = in_tx(lease.claim, j, T0, ME, "a")
    expire(db, run_id)
    assert in_tx(lease.take_over, run_id, j, OTHER, "b") == (T0, 2)
    name = f"fenced-{uuid.uuid4().hex[:8]}"
    with fenced_session(db, run_id, j, ME) as session:
        session.add(Record(name=name))
        with pytest.raises(LeaseLost):
            session.commit()
        session.rollback()
    assert stored_records(db, name) == []
    assert (row(db, run_id).holder, row(db, run_id).status) == (OTHER.name, "running")


@pytest.mark.parametrize(
    ("holder", "stored"),
    [pytest.param(ME, True, id="holder"), pytest.param(OTHER, False, id="not-the-holder")],
)
def test_the_outcome_commits_with_the_work_or_neither_does(
    db: Database, in_tx: Callable[..., Any], holder: lease.Holder, stored: bool
) -> None:
    """record() puts the outcome in the work's transaction: both commit, or LeaseLost."""
    j = job()
    run_id = in_tx(lease.claim, j, T0, ME, "a")
    name = f"fenced-{uuid.uuid4().hex[:8]}"
    fence = lease.Fence(run_id, j, holder)
    with Session(db.engine, expire_on_commit=False) as session:
        fence.attach(session)
        session.add(Record(name=name))
        if stored:
            fence.record(session, None)
            session.commit()
        else:
            with pytest.raises(LeaseLost):
                fence.record(session, None)
            session.rollback()
    assert stored_records(db, name) == ([name] if stored else [])
    assert row(db, run_id).status == ("succeeded" if stored else "running")
