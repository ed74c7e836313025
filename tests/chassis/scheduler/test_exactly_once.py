"""chassis/scheduler/ under real gunicorn processes: each scheduled time runs exactly once across
workers and instances, a killed holder's run is taken over, shutdown lets a run finish.

Jobs come from tests/apps/jobs.py (the servers and readers from
tests/support/scheduler_servers.py): each writes JSON lines to the JOB_EVENTS file, evidence of
what ran where that is independent of the `job_runs` table it is compared with. Every
server listens on 127.0.0.1, every test has a database of its own, every wait has a deadline.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Row

from chassis.database.models import utcnow
from harness.processes import Gunicorn
from tests.support.flask_app import migrate
from tests.support.scheduler_servers import (
    WORKER_CLASSES,
    Event,
    of_kind,
    read_events,
    read_runs,
    scheduled,
    scheduling,
    start_all,
    stop_all,
    wait_for,
    worker_pids,
)

TICKS = "tests.apps.jobs:ticks"
SLOW = "tests.apps.jobs:slow"
SECOND = dt.timedelta(seconds=1)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite database file of this test's own."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    migrate(url)
    return url


def whole_seconds(after: dt.datetime, before: dt.datetime) -> list[dt.datetime]:
    """Each whole second strictly after `after` and at or before `before`."""
    first = after.replace(microsecond=0) + SECOND
    return [first + n * SECOND for n in range(int((before - first) / SECOND) + 1)]


def assert_each_second_ran_once(
    runs: Sequence[Row[Any]], events: list[Event], ready_at: dt.datetime, stop_at: dt.datetime
) -> None:
    """The ticks registry ran every second from first to last once, the window included."""
    times = [run.scheduled_at for run in runs]
    assert times == whole_seconds(times[0] - SECOND, times[-1]), "a second is missing"
    # One second of tolerance at each edge of the window where every server was running.
    assert set(whole_seconds(ready_at + SECOND, stop_at - SECOND)) <= set(times)
    assert {(run.status, run.attempts) for run in runs} == {("succeeded", 1)}
    done = of_kind(events, "done")
    assert sorted(scheduled(event) for event in done) == times, "a time ran twice or never"
    by_time = {run.scheduled_at: run for run in runs}
    for event in done:
        run = by_time[scheduled(event)]
        assert (event["tracking_id"], event["pid"]) == (run.tracking_id, run.pid)


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_two_instances_on_postgres_run_each_second_exactly_once(
    tmp_path: Path, pg_url: str, started: list[Gunicorn], worker_class: str
) -> None:
    """Four workers here and two on "another host": every second runs once, none is lost."""
    events = tmp_path / "events.jsonl"
    a = scheduling(tmp_path / "a", pg_url, TICKS, events, worker_class, workers=4)
    b = scheduling(tmp_path / "b", pg_url, TICKS, events, worker_class, workers=2)
    ready_at = start_all(started, a, b)
    time.sleep(10)  # the observation window
    stop_at = utcnow()
    assert stop_all(a, b) == [0, 0]
    assert stop_at - ready_at >= dt.timedelta(seconds=10)

    runs = read_runs(pg_url)
    assert_each_second_ran_once(runs, read_events(events), ready_at, stop_at)
    pids = {"a": worker_pids(a), "b": worker_pids(b)}
    assert (len(pids["a"]), len(pids["b"])) == (4, 2)
    instance = {pid: name for name, owned in pids.items() for pid in owned}
    assert {run.pid for run in runs} <= set(instance)
    assert all(run.holder.startswith(f"{run.host}:{run.pid}:") for run in runs)
    started_lines = {
        line["tracking_id"]: line
        for server in (a, b)
        for line in server.json_lines()
        if line["message"].startswith("job tick started")
    }
    for run in runs:
        line = started_lines[run.tracking_id]
        assert (
            line["message"]
            == f"job tick started (scheduled {run.scheduled_at.isoformat()}, attempt 1)"
        )
        assert line["process"] == run.pid
    by_instance = Counter(instance[run.pid] for run in runs)
    by_worker = Counter(f"{instance[run.pid]}:{run.pid}" for run in runs)
    print(f"{worker_class}: {len(runs)} runs; by instance {dict(by_instance)}")
    print(f"{worker_class}: by worker {dict(by_worker)}")


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_run_of_a_killed_worker_is_taken_over_and_finished_once(
    tmp_path: Path, pg_url: str, started: list[Gunicorn], worker_class: str
) -> None:
    """SIGKILL of the worker running a job: after its lease expires another process runs
    that time again, once, and every other time still runs exactly once."""
    events = tmp_path / "events.jsonl"
    graceful = {"GUNICORN_GRACEFUL_TIMEOUT": "10"}
    a = scheduling(tmp_path / "a", pg_url, SLOW, events, worker_class, workers=2, env=graceful)
    b = scheduling(tmp_path / "b", pg_url, SLOW, events, worker_class, workers=1, env=graceful)
    ready_at = start_all(started, a, b)

    def started_after_ready() -> Event | None:
        starts = of_kind(read_events(events), "start")
        return next((event for event in starts if scheduled(event) > ready_at), None)

    target = scheduled(wait_for(started_after_ready, 15, "slow run starting after ready"))
    running = {run.scheduled_at: run for run in read_runs(pg_url)}[target]
    assert running.status == "running"
    victim = running.pid
    os.kill(victim, signal.SIGKILL)
    # Everything the victim held when it died (a run of `slow` lasts two periods).
    held = {
        run.scheduled_at: run
        for run in read_runs(pg_url)
        if run.status == "running" and run.pid == victim
    }
    assert target in held

    def taken_over_runs_finished() -> bool | None:
        runs = {run.scheduled_at: run for run in read_runs(pg_url)}
        return all(runs[when].status != "running" for when in held) or None

    # Lease (3 s) + takeover scan (every 5 s per process) + the 4 s run, with slack.
    wait_for(taken_over_runs_finished, 30, "finished takeover")
    assert stop_all(a, b) == [0, 0]

    runs = read_runs(pg_url)
    events_now = read_events(events)
    starts, done = of_kind(events_now, "start"), of_kind(events_now, "done")
    times = [run.scheduled_at for run in runs]
    assert times == [times[0] + n * 2 * SECOND for n in range(len(times))], "a time is missing"
    assert [when for when in times if when > target], "no later time ran"
    assert sorted(scheduled(event) for event in done) == times, "a time ran twice or never"
    assert {run.status for run in runs} == {"succeeded"}
    assert victim not in {run.pid for run in runs}
    started_lines = {
        line["tracking_id"]: line["message"]
        for server in (a, b)
        for line in server.json_lines()
        if line["message"].startswith("job slow started")
    }
    for run in runs:
        [finished] = [event for event in done if scheduled(event) == run.scheduled_at]
        assert (finished["pid"], finished["tracking_id"]) == (run.pid, run.tracking_id)
        begun = sorted((e["attempt"], e["pid"]) for e in starts if scheduled(e) == run.scheduled_at)
        if run.scheduled_at in held:  # the killed attempt started and never finished
            assert (run.attempts, begun) == (2, [(1, victim), (2, run.pid)])
            assert run.holder != held[run.scheduled_at].holder
            when = run.scheduled_at.isoformat()
            assert (
                started_lines[run.tracking_id] == f"job slow started (scheduled {when}, attempt 2)"
            )
        else:
            assert (run.attempts, begun) == (1, [(1, run.pid)])
    # The row keeps the takeover on record after the second attempt succeeds.
    errors = [run.error for run in runs if run.scheduled_at in held]
    assert all("taken over" in (error or "") for error in errors), errors


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_workers_sharing_sqlite_run_each_second_exactly_once(
    tmp_path: Path, sqlite_url: str, started: list[Gunicorn], worker_class: str
) -> None:
    """Four workers on one SQLite file: every second runs once, none is lost."""
    events = tmp_path / "events.jsonl"
    server = scheduling(tmp_path / "a", sqlite_url, TICKS, events, worker_class, workers=4)
    ready_at = start_all(started, server)
    time.sleep(8)  # the observation window
    stop_at = utcnow()
    assert stop_all(server) == [0]

    runs = read_runs(sqlite_url)
    assert_each_second_ran_once(runs, read_events(events), ready_at, stop_at)
    assert {run.pid for run in runs} <= worker_pids(server)
    assert server.stdout().count("scheduler started: tick") == 4


def test_sigterm_lets_a_running_job_finish_and_a_restart_never_reruns_a_time(
    tmp_path: Path, pg_url: str, started: list[Gunicorn]
) -> None:
    """SIGTERM during a run: it finishes before the master exits 0 inside the graceful
    timeout; the restarted server runs no time that already ran."""
    events = tmp_path / "events.jsonl"
    graceful = {"GUNICORN_GRACEFUL_TIMEOUT": "10"}  # a stopping worker waits 10 - 5 s
    first = scheduling(tmp_path / "first", pg_url, SLOW, events, workers=2, env=graceful)
    start_all(started, first)

    def unfinished_start(pids: set[int]) -> Event | None:
        found = read_events(events)
        done = {scheduled(event) for event in of_kind(found, "done")}
        starts = [e for e in of_kind(found, "start") if e["pid"] in pids]
        return next((e for e in reversed(starts) if scheduled(e) not in done), None)

    running = wait_for(lambda: unfinished_start(worker_pids(first)), 15, "running job")
    begun = time.monotonic()
    assert first.stop(signal.SIGTERM, timeout=15) == 0
    assert time.monotonic() - begun < 10
    runs = {run.scheduled_at: run for run in read_runs(pg_url)}
    assert runs[scheduled(running)].status == "succeeded"
    done = of_kind(read_events(events), "done")
    assert scheduled(running) in {scheduled(event) for event in done}
    assert "handed back" not in first.stdout()
    ran_before_restart = set(runs)

    again = scheduling(tmp_path / "again", pg_url, SLOW, events, workers=2, env=graceful)
    start_all(started, again)
    running = wait_for(lambda: unfinished_start(worker_pids(again)), 15, "restarted job")
    assert again.stop(signal.SIGTERM, timeout=15) == 0

    runs_after = read_runs(pg_url)
    times = [run.scheduled_at for run in runs_after]
    found = read_events(events)
    assert sorted(scheduled(event) for event in of_kind(found, "start")) == times
    assert sorted(scheduled(event) for event in of_kind(found, "done")) == times
    assert {(run.status, run.attempts) for run in runs_after} == {("succeeded", 1)}
    ran_after_restart = {run.scheduled_at for run in runs_after if run.pid in worker_pids(again)}
    assert scheduled(running) in ran_after_restart
    assert ran_after_restart.isdisjoint(ran_before_restart)


def test_scheduler_off_runs_no_job(
    tmp_path: Path, sqlite_url: str, started: list[Gunicorn]
) -> None:
    """Without SCHEDULER_ENABLED the same registry runs nothing: no rows, no events."""
    events = tmp_path / "events.jsonl"
    server = scheduling(tmp_path / "a", sqlite_url, TICKS, events, workers=2, enabled=False)
    start_all(started, server)
    time.sleep(3)  # the observation window
    assert stop_all(server) == [0]
    assert list(read_runs(sqlite_url)) == []
    assert not events.exists()
    assert "scheduler started" not in server.stdout()
