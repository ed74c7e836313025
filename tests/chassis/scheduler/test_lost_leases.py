"""chassis/scheduler/ when a holder could lose its lease: its clock is wrong, or its request pool
is busy; and what a long job leaves to the requests of its own worker.

Real processes (gunicorn, `flask scheduler run`) on a real database, as in
test_exactly_once.py. The jobs (tests/apps/jobs.py) write a row of `test_job_effects` in
their own transaction, so a row is a committed effect: each scheduled time must have
exactly one, whatever went wrong.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Row, create_engine, select

from harness import programs
from harness.apps import records
from harness.processes import ROOT, Gunicorn, base_env, get, request
from tests.apps.jobs import EFFECTS, create_effects_table
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

EFFECT = "tests.apps.jobs:effects"
SLOW_EFFECT = "tests.apps.jobs:slow_effects"
LONG = "tests.apps.jobs:long"
# The kit's app plus /test/pg-sleep (holds a pooled connection) and /test/records.
SLEEPY = "harness.apps.sleepy:app"
SKEW_SECONDS = 50


@pytest.fixture
def effects_pg_url(pg_url: str) -> str:
    """A migrated PostgreSQL database of this test's own, with `test_job_effects`."""
    create_effects_table(pg_url)
    return pg_url


@pytest.fixture
def effects_sqlite_url(tmp_path: Path) -> str:
    """A migrated SQLite file of this test's own, with `test_job_effects` and `test_records`."""
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    migrate(url)
    records.create_tables(url)
    create_effects_table(url)
    return url


def faketime_env(seconds: int) -> dict[str, str]:
    """The variables `faketime -m --exclude-monotonic -f +N` sets (Debian's faketime), for a
    process whose wall clock runs `seconds` ahead and whose monotonic clock is left alone.
    Skips (fails under KIT_REQUIRE_SERVICES=1) without faketime."""
    programs.require("faketime")
    probe = "import json, os, time; print(json.dumps([dict(os.environ), time.time()]))"
    done = subprocess.run(
        ["faketime", "-m", "--exclude-monotonic", "-f", f"+{seconds}", sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    environ, faked_now = json.loads(done.stdout)
    assert faked_now - time.time() > seconds - 5, "faketime did not move the clock"
    # FAKETIME_SHARED names the shared memory of that one faketime run: not for others.
    return {
        name: value
        for name, value in environ.items()
        if name == "LD_PRELOAD" or (name.startswith("FAKETIME") and name != "FAKETIME_SHARED")
    }


@pytest.fixture
def scheduler_processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """`flask scheduler run` processes a test starts; any still running afterwards are killed."""
    processes: list[subprocess.Popen[bytes]] = []
    yield processes
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait(10)


def scheduler_process(
    log_dir: Path, database_url: str, registry: str, events: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """Start `flask scheduler run` (the scheduler as a process of its own), logging JSON
    lines to log_dir/stdout.log."""
    log_dir.mkdir()
    values = {
        "LOG_FORMAT": "json",
        "DATABASE_URL": database_url,
        "SCHEDULER_JOBS": registry,
        "JOB_EVENTS": str(events),
        **env,
    }
    flask = Path(sys.executable).with_name("flask")
    with (log_dir / "stdout.log").open("wb") as out, (log_dir / "stderr.log").open("wb") as err:
        return subprocess.Popen(
            [str(flask), "--app", "app.wsgi", "scheduler", "run"],
            cwd=ROOT,
            env=base_env(**values),
            stdout=out,
            stderr=err,
        )


def read_effects(database_url: str) -> Sequence[Row[Any]]:
    """Every committed row of `test_job_effects`."""
    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            return conn.execute(select(EFFECTS).order_by(EFFECTS.c.id)).all()
    finally:
        engine.dispose()


def assert_one_effect_per_succeeded_run(database_url: str) -> Sequence[Row[Any]]:
    """Each succeeded run's scheduled time has exactly one committed effect, and no other
    time has any; return the effects."""
    effects = read_effects(database_url)
    runs = read_runs(database_url)
    committed = Counter(effect.scheduled_at for effect in effects)
    succeeded = Counter(run.scheduled_at for run in runs if run.status == "succeeded")
    wrong = {when for when in committed | succeeded if committed[when] != succeeded[when]}
    shown = [
        (
            when.isoformat(),
            [(e.pid, e.written_at.isoformat()) for e in effects if e.scheduled_at == when],
            [(r.status, r.pid, r.attempts, r.error) for r in runs if r.scheduled_at == when],
        )
        for when in sorted(wrong)
    ]
    assert shown == [], "scheduled times (effects, runs) without exactly one committed effect"
    return effects


def started_by(server: Gunicorn, events: Path) -> Event | None:
    """A run of `server`'s workers that has started and not finished, if any."""
    found = read_events(events)
    done = {scheduled(event) for event in of_kind(found, "done")}
    pids = worker_pids(server)
    starts = [e for e in of_kind(found, "start") if e["pid"] in pids]
    return next((e for e in reversed(starts) if scheduled(e) not in done), None)


def test_a_holder_whose_clock_is_50s_fast_runs_no_time_early_or_twice(
    tmp_path: Path,
    effects_pg_url: str,
    started: list[Gunicorn],
    scheduler_processes: list[subprocess.Popen[bytes]],
) -> None:
    """A scheduler process 50 s ahead (faketime) beside a gunicorn: every scheduled time has
    one committed effect, none written before its time by the database's clock."""
    events = tmp_path / "events.jsonl"
    # A scheduler process, not gunicorn: gunicorn's master sleeps with time.sleep, which
    # faketime breaks in Python 3.11 (tests/apps/jobs.py: pause).
    fast = scheduler_process(
        tmp_path / "fast", effects_pg_url, EFFECT, events, faketime_env(SKEW_SECONDS)
    )
    scheduler_processes.append(fast)
    # Alone first, so the fast process holds runs of its own whatever the claim races do.
    wait_for(
        lambda: any(e["pid"] == fast.pid for e in read_events(events)) or None,
        15,
        "run of the fast process",
    )
    server = scheduling(tmp_path / "server", effects_pg_url, EFFECT, events)
    ready_at = start_all(started, server)
    time.sleep(12)  # the window: two takeover scans in each process and more
    fast.send_signal(signal.SIGTERM)
    assert stop_all(server) == [0]
    fast_status = fast.wait(30)

    effects = assert_one_effect_per_succeeded_run(effects_pg_url)
    early = [(e.scheduled_at, e.written_at) for e in effects if e.written_at < e.scheduled_at]
    assert early == [], "effects written before their scheduled time"
    assert len(effects) >= 10
    assert fast_status == 0, (tmp_path / "fast" / "stderr.log").read_text()
    # The fast process's log lines are stamped by its own clock: the skew took.
    logged = (tmp_path / "fast" / "stdout.log").read_text().splitlines()
    first = json.loads(logged[0])
    assert dt.datetime.fromisoformat(first["@timestamp"]) - ready_at > dt.timedelta(seconds=30)


def test_a_holder_whose_request_pool_is_exhausted_keeps_its_lease(
    tmp_path: Path, effects_pg_url: str, started: list[Gunicorn]
) -> None:
    """Slow requests hold every pooled connection of a gevent worker while its job runs
    past the lease: the lease is still renewed, the run is not taken over, and each
    scheduled time has one committed effect."""
    events = tmp_path / "events.jsonl"
    graceful = {"GUNICORN_GRACEFUL_TIMEOUT": "15"}  # stopping workers wait 10 s for 8 s jobs
    busy = {
        **graceful,
        "GUNICORN_WORKER_CONNECTIONS": "4",
        "DB_POOL_SIZE": "2",  # two slow requests hold the whole pool; a third client waits
        "DB_MAX_OVERFLOW": "0",
        "DB_POOL_TIMEOUT": "1",
        "DB_STATEMENT_TIMEOUT_MS": "30000",
    }
    a = scheduling(
        tmp_path / "a", effects_pg_url, SLOW_EFFECT, events, "gevent", env=busy, app=SLEEPY
    )
    b = scheduling(tmp_path / "b", effects_pg_url, SLOW_EFFECT, events, env=graceful)
    # The busy instance alone first, so it holds the run whatever the claim races do.
    start_all(started, a)
    (a_pid,) = worker_pids(a)
    running = wait_for(lambda: started_by(a, events), 15, "run of the busy instance")
    target = scheduled(running)
    with ThreadPoolExecutor(max_workers=2) as pool:
        slow = [pool.submit(get, a.port, "/test/pg-sleep?s=12", None, 30) for _ in range(2)]
        time.sleep(0.5)
        # The pool really is exhausted: a request that needs a connection gets a 503.
        assert get(a.port, "/test/pg-sleep?s=0", timeout=10)[0] == 503
        # The other instance, whose takeover scan runs at its start and every 5 s.
        start_all(started, b)
        held = [future.result()[0] for future in slow]

    def target_finished() -> bool | None:
        runs = {run.scheduled_at: run for run in read_runs(effects_pg_url)}
        return runs[target].status != "running" or None

    wait_for(target_finished, 20, "end of the run that outlived its lease")
    assert stop_all(a, b) == [0, 0]
    assert_one_effect_per_succeeded_run(effects_pg_url)
    # Not taken over: the busy instance renewed its lease all along and finished the run.
    runs = {run.scheduled_at: run for run in read_runs(effects_pg_url)}
    assert (runs[target].status, runs[target].pid, runs[target].attempts) == (
        "succeeded",
        a_pid,
        1,
    )
    assert held == [200, 200]  # the slow requests themselves were served


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_a_long_job_on_sqlite_leaves_its_workers_requests_answering(
    tmp_path: Path, effects_sqlite_url: str, started: list[Gunicorn], worker_class: str
) -> None:
    """A job that reads, runs 6 s, then writes, in the only worker on SQLite: meanwhile
    requests that read and write the database keep answering at once."""
    events = tmp_path / "events.jsonl"
    pool = {"DB_POOL_TIMEOUT": "1"}
    server = scheduling(
        tmp_path / "a", effects_sqlite_url, LONG, events, worker_class, env=pool, app=SLEEPY
    )
    start_all(started, server)
    wait_for(lambda: of_kind(read_events(events), "start") or None, 15, "long job starting")

    answered: list[tuple[tuple[int, int, int], float]] = []
    deadline = time.monotonic() + 15
    while not of_kind(read_events(events), "done") and time.monotonic() < deadline:
        began = time.monotonic()
        body = json.dumps({"name": f"during-{len(answered)}"}).encode()
        statuses = (
            get(server.port, "/readyz")[0],
            request(server.port, "POST", "/test/records", body)[0],
            get(server.port, "/test/records")[0],
        )
        answered.append((statuses, round(time.monotonic() - began, 2)))
    assert of_kind(read_events(events), "done"), "the long job never finished"
    assert stop_all(server) == [0]

    assert {statuses for statuses, _ in answered} == {(200, 201, 200)}, answered
    assert max(took for _, took in answered) < 2.0, answered
    assert len(answered) >= 5, answered
    assert [run.status for run in read_runs(effects_sqlite_url)] == ["succeeded"]
    assert len(assert_one_effect_per_succeeded_run(effects_sqlite_url)) == 1
