"""chassis/scheduler/runner.py in one process on SQLite: outcomes, logs, catch-up and shutdown.

The multi-process guarantees (several workers and hosts, SIGKILL) are in
test_exactly_once.py; these drive one Scheduler's passes directly.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import insert, select, text
from sqlalchemy.exc import OperationalError

from chassis.database.models import utcnow
from chassis.database.sessions import get_session
from chassis.scheduler import Registry, Run, Scheduler, lease
from chassis.scheduler.models import JobRun
from harness.processes import ROOT, base_env
from tests.apps.jobs import EFFECTS, create_effects_table
from tests.support.flask_app import AppFactory, LogReader, migrate


@pytest.fixture
def app(make_app: AppFactory, sqlite_file: str) -> Flask:
    """The app on a migrated SQLite file of this test's own."""
    return make_app(database_url=sqlite_file)


@pytest.fixture
def sqlite_file(tmp_path: Path) -> str:
    """A migrated SQLite database for one test."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    migrate(url)
    create_effects_table(url)
    return url


def runs(app: Flask) -> list[JobRun]:
    """Every job run, oldest first."""
    with app.extensions["db"].session_scope() as session:
        found = list(session.scalars(select(JobRun).order_by(JobRun.id)))
        session.expunge_all()
        return found


def wait_for(condition: Callable[[], object], timeout: float = 10) -> None:
    """Poll `condition()` until true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def one_pass(app: Flask, registry: Registry) -> Scheduler:
    """A new scheduler (as in a freshly started process) makes one pass and stops."""
    scheduler = Scheduler(app, registry)
    scheduler.tick()
    scheduler.stop(wait=5)
    return scheduler


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """An event that blocking jobs wait for; set at teardown so no thread is left behind."""
    event = threading.Event()
    yield event
    event.set()


def test_successful_run_is_recorded_with_its_tracking_id(app: Flask, read_logs: LogReader) -> None:
    """A job's session works, the run ends succeeded, and its log lines carry its id."""
    registry = Registry()

    @registry.every("count", seconds=60)
    def count(run: Run) -> None:
        assert run.session.execute(text("SELECT count(*) FROM job_runs")).scalar_one() == 1

    scheduler = Scheduler(app, registry)
    scheduler.tick()
    wait_for(lambda: runs(app) and runs(app)[0].status != "running")
    (stored,) = runs(app)
    assert (stored.job, stored.status, stored.attempts, stored.error) == (
        "count",
        "succeeded",
        1,
        None,
    )
    job_lines = [line for line in read_logs() if line["logger"] == "chassis.scheduler.runner"]
    messages = {line["message"].split(" in ")[0] for line in job_lines}
    assert "job count succeeded" in messages
    assert {line["tracking_id"] for line in job_lines} == {stored.tracking_id}


def test_failing_job_is_recorded_failed_with_the_error(app: Flask, read_logs: LogReader) -> None:
    """An exception ends the run as failed, with its message stored and its traceback logged."""
    registry = Registry()

    @registry.every("broken", seconds=60)
    def broken(run: Run) -> None:
        raise ValueError("no such thing")

    Scheduler(app, registry).tick()
    wait_for(lambda: runs(app) and runs(app)[0].status != "running")
    (stored,) = runs(app)
    assert (stored.status, stored.error) == ("failed", "ValueError: no such thing")
    (failure,) = [line for line in read_logs() if line["message"] == "job broken failed"]
    assert failure["tracking_id"] == stored.tracking_id
    assert "ValueError: no such thing" in failure["exception"]


@pytest.mark.parametrize(
    ("catch_up", "claimed"),
    [pytest.param("latest", 1, id="latest-runs-once"), pytest.param("skip", 0, id="skip")],
)
def test_first_pass_follows_the_catch_up_policy(app: Flask, catch_up: str, claimed: int) -> None:
    """On start, "latest" runs the most recent scheduled time once; "skip" waits for the next."""
    registry = Registry()
    registry.every("hourly", seconds=3600, catch_up=catch_up)(lambda run: None)  # type: ignore[arg-type]
    one_pass(app, registry)
    one_pass(app, registry)
    assert len(runs(app)) == claimed


def test_a_second_scheduler_does_not_rerun_a_time(app: Flask) -> None:
    """A restarted process (a new Scheduler) catches up on nothing already done."""
    registry = Registry()
    registry.every("hourly", seconds=3600)(lambda run: None)
    first = one_pass(app, registry)
    one_pass(app, registry)
    (stored,) = runs(app)
    assert stored.holder == first.holder.name


def test_stop_hands_back_a_job_that_outlives_the_wait(
    app: Flask, release: threading.Event, read_logs: LogReader
) -> None:
    """A job still running when the wait ends has its lease ended, for another process."""
    registry = Registry()
    registry.every("stuck", seconds=3600, lease_seconds=60)(lambda run: release.wait(10))  # type: ignore[arg-type]
    scheduler = Scheduler(app, registry)
    scheduler.tick()
    wait_for(lambda: runs(app))
    started = time.monotonic()
    scheduler.stop(wait=0.3)
    assert time.monotonic() - started < 2
    (stored,) = runs(app)
    assert stored.status == "running"
    assert stored.lease_expires_at <= utcnow()
    assert any("handed back" in line["message"] for line in read_logs())


def test_stop_waits_for_a_job_that_finishes_in_time(app: Flask, release: threading.Event) -> None:
    """A job that ends within the wait is recorded as succeeded before stop returns."""
    registry = Registry()
    registry.every("brief", seconds=3600)(lambda run: release.wait(10))  # type: ignore[arg-type]
    scheduler = Scheduler(app, registry)
    scheduler.tick()
    wait_for(lambda: runs(app))
    threading.Timer(0.3, release.set).start()
    scheduler.stop(wait=10)
    assert runs(app)[0].status == "succeeded"


def test_history_command_prints_json_lines(app: Flask) -> None:
    """`flask scheduler history` prints the newest runs, one JSON object per line."""
    registry = Registry()
    registry.every("hourly", seconds=3600)(lambda run: None)
    one_pass(app, registry)
    result = app.test_cli_runner().invoke(args=["scheduler", "history", "--job", "hourly"])
    assert result.exit_code == 0, result.output
    (line,) = [json.loads(text) for text in result.output.splitlines()]
    assert (line["job"], line["status"], line["attempts"]) == ("hourly", "succeeded", 1)


def test_scheduler_run_command_serves_until_sigterm(sqlite_file: str, tmp_path: Path) -> None:
    """`flask scheduler run` runs the jobs in its own process and exits 0 on SIGTERM."""
    events = tmp_path / "events"
    env = base_env(
        DATABASE_URL=sqlite_file, SCHEDULER_JOBS="tests.apps.jobs:ticks", JOB_EVENTS=str(events)
    )
    flask = Path(sys.executable).with_name("flask")
    proc = subprocess.Popen(
        [str(flask), "--app", "app.wsgi", "scheduler", "run"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: events.exists() and events.read_text().count("\n") >= 2)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_a_claim_the_database_refused_is_retried(app: Flask) -> None:
    """Times whose claim failed (database unreachable) are claimed on a later pass."""
    registry = Registry()
    registry.every("hourly", seconds=3600)(lambda run: None)
    scheduler = Scheduler(app, registry)
    db = app.extensions["db"]
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE job_runs RENAME TO job_runs_away"))
    with pytest.raises(OperationalError):
        scheduler.tick()
    with db.engine.begin() as conn:
        conn.execute(text("ALTER TABLE job_runs_away RENAME TO job_runs"))
    scheduler.tick()
    scheduler.stop(wait=5)
    assert [run.status for run in runs(app)] == ["succeeded"]


def effects(app: Flask) -> list[str]:
    """The `job` column of every committed row of test_job_effects."""
    with app.extensions["db"].session_scope() as session:
        return list(session.scalars(select(EFFECTS.c.job).order_by(EFFECTS.c.id)))


def write(run: Run, label: str) -> None:
    """Write one row of test_job_effects labelled `label` through the run's session."""
    row = {"job": label, "scheduled_at": run.scheduled_at, "pid": 0}
    run.session.execute(insert(EFFECTS).values(row))


def take_over(app: Flask, scheduler: Scheduler) -> None:
    """Another process takes the scheduler's one run over (its lease made to expire)."""
    (stored,) = runs(app)
    job = scheduler.registry.jobs[stored.job]
    other = lease.Holder("elsewhere", 1, "other")
    with app.extensions["db"].session_scope() as session:
        session.get_one(JobRun, stored.id).lease_expires_at = utcnow() - job.lease
    with app.extensions["db"].session_scope() as session:
        assert lease.take_over(session, stored.id, job, other, "theirs") is not None


def test_a_job_commits_its_work_with_its_outcome(app: Flask) -> None:
    """What a job writes is committed with the run's success, in its session."""
    registry = Registry()

    @registry.every("writes", seconds=3600)
    def writes(run: Run) -> None:
        write(run, "writes")

    one_pass(app, registry)
    assert [run.status for run in runs(app)] == ["succeeded"]
    assert effects(app) == ["writes"]


def test_a_failed_job_commits_none_of_its_work(app: Flask) -> None:
    """A job that raises after writing: nothing it wrote is kept, the run is failed."""
    registry = Registry()

    @registry.every("half-done", seconds=3600)
    def half_done(run: Run) -> None:
        write(run, "half-done")
        raise RuntimeError("stopped halfway")

    one_pass(app, registry)
    assert [(run.status, run.error) for run in runs(app)] == [
        ("failed", "RuntimeError: stopped halfway")
    ]
    assert effects(app) == []


def test_a_job_that_lost_its_run_commits_nothing(
    app: Flask, release: threading.Event, read_logs: LogReader
) -> None:
    """Taken over while it ran: its writes are rolled back and the new holder's run stands."""
    registry = Registry()

    @registry.every("overtaken", seconds=3600)
    def overtaken(run: Run) -> None:
        release.wait(10)
        write(run, "overtaken")

    scheduler = Scheduler(app, registry)
    scheduler.tick()
    wait_for(lambda: runs(app))
    take_over(app, scheduler)
    release.set()
    scheduler.stop(wait=5)
    assert effects(app) == []
    (stored,) = runs(app)
    assert (stored.status, stored.holder, stored.attempts) == ("running", "elsewhere:1:other", 2)
    messages = [line["message"] for line in read_logs()]
    assert "job overtaken lost its run to another process: its work is rolled back" in messages


def test_each_commit_of_a_job_is_fenced(app: Flask, release: threading.Event) -> None:
    """A job committing in steps keeps the steps it committed while it held the run; its
    commit after a takeover raises LeaseLost and stores nothing."""
    registry = Registry()
    first_step = threading.Event()
    raised: list[type[BaseException]] = []

    @registry.every("in-steps", seconds=3600)
    def in_steps(run: Run) -> None:
        write(run, "step 1")
        run.session.commit()
        first_step.set()
        release.wait(10)
        write(run, "step 2")
        try:
            run.session.commit()
        except lease.LeaseLost as exc:
            raised.append(type(exc))
            raise

    scheduler = Scheduler(app, registry)
    scheduler.tick()
    assert first_step.wait(10)
    take_over(app, scheduler)
    release.set()
    scheduler.stop(wait=5)
    assert raised == [lease.LeaseLost]
    assert effects(app) == ["step 1"]


def test_get_session_in_a_job_is_the_runs_session(app: Flask) -> None:
    """Code shared with views (get_session()) writes inside the job's fenced session."""
    registry = Registry()
    same: list[bool] = []

    @registry.every("shared-code", seconds=3600)
    def shared_code(run: Run) -> None:
        same.append(get_session() is run.session)

    one_pass(app, registry)
    assert same == [True]
