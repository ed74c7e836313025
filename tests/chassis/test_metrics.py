"""chassis/observability/metrics.py and chassis/observability/metric_files.py under real gunicorn: /metrics on a listener of
its own, and counts that stay exact over four workers of each class, whether a worker is
killed or recycled, with the metrics directory holding a bounded number of files.

Every server listens on 127.0.0.1, its metrics listener on a second free port, with the
metrics directory the master makes for itself, as deployed (a test that reads the files
after the server stopped names one with PROMETHEUS_MULTIPROC_DIR). Counted requests go to
/test/sleep, which nothing else requests (the readiness probes of harness/processes.py ask
/healthz).
"""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response
from prometheus_client.exposition import generate_latest
from sqlalchemy import create_engine, func, select

from chassis.observability.metric_files import read_values
from chassis.observability.metrics import current_metrics, service_version
from chassis.scheduler.models import JobRun
from chassis.serving.metrics_hooks import own_address
from chassis.settings import Settings, SettingsError
from chassis.web.responses import ok
from harness.processes import (
    ROOT,
    SLEEPY,
    Gunicorn,
    base_env,
    free_port,
    get,
    in_parallel,
    load_gunicorn_conf,
    request,
    wait_until,
)
from tests.support.flask_app import AppFactory, migrate
from tests.support.scrape import (
    MONOTONIC,
    Series,
    parse,
    read_files,
    scrape,
    scrape_answered,
    total,
    value,
)

WORKER_CLASSES = [
    pytest.param("sync", id="sync"),
    pytest.param("gthread", id="gthread"),
    pytest.param("gevent", id="gevent"),
]
COUNTED = "/test/sleep"
# The archives of the kinds the chassis writes (no summaries), once a worker has exited.
ARCHIVES = {"counter_archive.db", "histogram_archive.db"}


@dataclass
class Metered:
    """A gunicorn serving the test app with a metrics listener and its metrics directory."""

    server: Gunicorn
    metrics_port: int
    files: Path

    def scrape(self, types: frozenset[str] | None = None) -> dict[Series, float]:
        """The samples /metrics answers with now."""
        return scrape(self.metrics_port, types)

    def answered(self, types: frozenset[str] | None = None) -> dict[Series, float]:
        """The samples once every request sent so far is counted."""
        return scrape_answered(self.metrics_port, types)

    def workers(self) -> set[int]:
        """The master's current child processes."""
        assert self.server.proc is not None
        pid = self.server.proc.pid
        return {
            int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        }

    def file_names(self) -> set[str]:
        """The metric files in the directory."""
        return {path.name for path in self.files.glob("*.db")}

    def counted_by(self) -> set[int]:
        """The processes whose own counter file holds a request of COUNTED."""
        served = set()
        for path in self.files.glob("counter_*.db"):
            for key, count, _, _ in read_values(str(path)):
                _, sample, labels, _ = json.loads(key)
                if sample == "http_requests_total" and labels["route"] == COUNTED and count:
                    served.add(int(path.stem.split("_")[1]))
        return served


def file_pid(name: str) -> int | None:
    """The process a metric file belongs to (`gauge_livesum_12.db`: 12), None for an archive."""
    owner = name.removesuffix(".db").rsplit("_", 1)[1]
    return None if owner == "archive" else int(owner)


def metered(
    directory: Path, worker_class: str = "sync", workers: int = 4, app: str = SLEEPY, **env: str
) -> Metered:
    """Start the test app (harness/apps/sleepy.py) with `workers` workers of `worker_class`, a
    metrics listener, SQLite in `directory`, and `env` on top; its metrics files where
    PROMETHEUS_MULTIPROC_DIR says, or in the master's own directory, as deployed."""
    directory.mkdir(exist_ok=True)
    metrics_port = free_port()
    values = {
        "GUNICORN_WORKER_CLASS": worker_class,
        "WEB_CONCURRENCY": str(workers),
        "LOG_FORMAT": "json",
        "DATABASE_URL": f"sqlite:///{directory / 'app.db'}",
        "METRICS_BIND": f"127.0.0.1:{metrics_port}",
        **env,
    }
    server = Gunicorn(directory, base_env(**values), args=[app]).start(timeout=30)
    return Metered(server, metrics_port, metrics_directory(server))


def metrics_directory(server: Gunicorn) -> Path:
    """The metrics directory the master says it prepared."""
    found = re.search(r"metrics: worker files in ([^\"\s]+)", server.stderr())
    assert found is not None, server.stderr()
    return Path(found.group(1))


def send_counted(port: int, requests: int, clients: int = 8) -> list[int]:
    """`requests` GETs of COUNTED from `clients` threads at once; every status, in order."""
    per_client = requests // clients

    def client(_: int) -> list[int]:
        return [get(port, f"{COUNTED}?s=0.01")[0] for _ in range(per_client)]

    return [status for batch in in_parallel(clients, client) for status in batch]


# --- Exact across workers -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("worker_class", "preload"),
    [
        pytest.param("sync", "false", id="sync"),
        pytest.param("gthread", "false", id="gthread"),
        pytest.param("gevent", "false", id="gevent"),
        # The app, and prometheus_client with it, imported in the master before the fork.
        pytest.param("sync", "true", id="sync-preload"),
    ],
)
def test_four_workers_count_each_request_once_and_a_killed_worker_loses_none(
    tmp_path: Path, started: list[Gunicorn], worker_class: str, preload: str
) -> None:
    """200 requests over four workers sum to 200; SIGKILL one that served some: once it is
    replaced no counter or bucket has gone back, and nothing of it is left but its counts."""
    metered_server = metered(tmp_path, worker_class, GUNICORN_PRELOAD=preload)
    started.append(metered_server.server)
    assert send_counted(metered_server.server.port, 200) == [200] * 200
    before = metered_server.answered(MONOTONIC)
    assert total(before, "http_requests_total", route=COUNTED) == 200
    assert total(before, "http_request_duration_seconds_count", route=COUNTED) == 200
    served = metered_server.counted_by()
    assert len(served) >= 2, "one worker served everything: nothing was summed"

    victim = min(served)
    os.kill(victim, signal.SIGKILL)
    wait_until(
        lambda: (
            len(metered_server.workers() - {victim}) == 4
            and not {name for name in metered_server.file_names() if file_pid(name) == victim}
        ),
        15,
        lambda: f"worker {victim} not replaced and folded:\n{metered_server.server.stderr()}",
    )
    after = metered_server.scrape()
    went_back = {key: (was, after.get(key)) for key, was in before.items() if after[key] < was}
    assert went_back == {}
    assert total(after, "http_requests_total", route=COUNTED) == 200
    assert value(after, "http_requests_in_flight") == 0
    build = {"version": service_version(), "worker_class": worker_class}
    assert value(after, "app_build_info", **build) == 1
    assert "MonkeyPatchWarning" not in metered_server.server.stderr()


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_recycled_workers_keep_their_counts_in_a_bounded_number_of_files(
    tmp_path: Path, started: list[Gunicorn], worker_class: str
) -> None:
    """GUNICORN_MAX_REQUESTS=5, and requests until workers were recycled ten times: every
    request is counted, and the directory holds the live workers' files and the archives."""
    metered_server = metered(tmp_path, worker_class, GUNICORN_MAX_REQUESTS="5")
    started.append(metered_server.server)
    server = metered_server.server
    sent, deadline = 0, time.monotonic() + 60
    # Until ten recycles were decided, however long a stopping worker keeps serving (a
    # gevent worker accepts for a moment after deciding to go).
    while server.stderr().count("Autorestarting worker") < 10:
        assert time.monotonic() < deadline, f"fewer than 10 recycles:\n{server.stderr()}"
        assert send_counted(server.port, 8, clients=4) == [200] * 8
        sent += 8

    def settled() -> bool:
        workers = metered_server.workers()
        names = metered_server.file_names()
        return len(workers) == 4 and all(file_pid(n) in workers | {None} for n in names)

    wait_until(settled, 20, lambda: f"files never settled:\n{server.stderr()}")
    names = metered_server.file_names()
    # Per live worker: its counters, histograms, and two kinds of live gauges.
    assert len(names) <= 4 * 4 + len(ARCHIVES)
    assert {name for name in names if file_pid(name) is None} == ARCHIVES
    assert total(metered_server.answered(), "http_requests_total", route=COUNTED) == sent


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_a_services_own_metric_made_at_import_adds_up_across_workers(
    tmp_path: Path, started: list[Gunicorn], worker_class: str
) -> None:
    """A module-level counter of the service's (tests/apps/counted.py), made when each worker
    imports the app, is written to the shared files too: 100 orders over four workers sum
    to 100."""
    metered_server = metered(tmp_path, worker_class, app="tests.apps.counted:app")
    started.append(metered_server.server)

    def order(_: int) -> list[int]:
        return [request(metered_server.server.port, "POST", "/test/orders")[0] for _ in range(25)]

    assert [status for batch in in_parallel(4, order) for status in batch] == [200] * 100
    assert value(metered_server.scrape(), "test_orders_total") == 100


# --- Where it answers -----------------------------------------------------------------------


def test_metrics_answer_only_on_their_listener_and_only_at_metrics(
    tmp_path: Path, started: list[Gunicorn]
) -> None:
    """/metrics on the app's port is a 404 like any unknown path; the listener answers GET
    /metrics, a 404 envelope for any other path, a 405 for another method; scrapes are not
    counted as requests."""
    metered_server = metered(tmp_path, workers=1)
    started.append(metered_server.server)
    app_port, port = metered_server.server.port, metered_server.metrics_port

    status, headers, body = get(app_port, "/metrics")
    assert (status, json.loads(body)["code"], headers["Content-Type"]) == (
        404,
        404,
        "application/json",
    )
    status, headers, body = get(port, "/healthz")
    envelope = json.loads(body)
    assert (status, envelope["code"], envelope["data"]) == (404, 404, None)
    assert headers["X-Tracking-ID"] == envelope["tracking_id"]
    status, headers, _ = request(port, "POST", "/metrics", body=b"{}")
    assert (status, headers["Allow"]) == (405, "GET")

    status, headers, body = get(port, "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    samples = parse(body.decode())
    routes = {dict(series)["route"] for _, series in samples if "route" in dict(series)}
    # The one app-port /metrics above, unmatched; nothing of the listener's five requests.
    assert routes == {"unmatched", "/healthz"}
    assert total(samples, "http_requests_total", route="unmatched") == 1


def test_metrics_bind_on_the_apps_port_is_refused_in_one_line() -> None:
    """One port for both listeners would serve every request as /metrics: gunicorn.conf.py
    exits with a line naming METRICS_BIND."""
    done = load_gunicorn_conf(GUNICORN_BIND="127.0.0.1:8000", METRICS_BIND="0.0.0.0:8000")
    assert done.returncode == 1
    assert (
        done.stderr.strip()
        .splitlines()[-1]
        .startswith("configuration error: METRICS_BIND: must use another port than GUNICORN_BIND")
    )


@pytest.mark.parametrize(
    ("bind", "bound"),
    [
        pytest.param("0.0.0.0:9100", "0.0.0.0:9100", id="an-address-is-kept"),
        pytest.param("[::1]:9100", "[::1]:9100", id="ipv6-kept"),
        pytest.param("localhost:9100", "127.0.0.1:9100", id="a-name-is-this-machines-address"),
    ],
)
def test_metrics_bind_by_name_binds_this_machines_own_address(bind: str, bound: str) -> None:
    """A host name in METRICS_BIND becomes the address it names that this machine has (in
    compose, a replica's own on the metrics network); an address stays as it is."""
    assert own_address(bind) == bound


def test_metrics_bind_naming_no_address_here_is_refused_in_one_line() -> None:
    """A name with no address of this machine stops gunicorn.conf.py with one line."""
    done = load_gunicorn_conf(METRICS_BIND="nowhere.invalid:9100")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "configuration error: METRICS_BIND: nowhere.invalid names no address of this machine "
        "(got 'nowhere.invalid:9100')"
    )


@pytest.mark.parametrize(
    ("where", "named"),
    [
        pytest.param("argv", "-b/--bind on the command line", id="-b"),
        pytest.param("GUNICORN_CMD_ARGS", "--bind in GUNICORN_CMD_ARGS", id="GUNICORN_CMD_ARGS"),
    ],
)
def test_a_bind_flag_that_drops_the_metrics_listener_stops_the_server(
    tmp_path: Path, where: str, named: str
) -> None:
    """`-b` (or `--bind` in GUNICORN_CMD_ARGS) replaces gunicorn.conf.py's whole bind list,
    METRICS_BIND's listener with it: the master stops at start with one line naming
    METRICS_BIND and the flag. With METRICS_BIND's address among the flags, it serves."""
    port, metrics_port = free_port(), free_port()
    flags = ["--bind", f"127.0.0.1:{port}"]
    env = base_env(
        METRICS_BIND=f"127.0.0.1:{metrics_port}", DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}"
    )
    given = {"GUNICORN_CMD_ARGS": " ".join(flags)} if where == "GUNICORN_CMD_ARGS" else {}
    server = Gunicorn(tmp_path, {**env, **given}, args=[] if given else flags, port=port)
    try:
        master = server.start(wait=False).proc
        assert master is not None
        assert master.wait(30) == 1
    finally:
        server.stop()
    (line,) = [line for line in server.stderr().splitlines() if "METRICS_BIND" in line]
    assert line.startswith(
        f"configuration error: METRICS_BIND: 127.0.0.1:{metrics_port} is not among gunicorn's "
        f"listeners (127.0.0.1:{port}): {named} replaced gunicorn.conf.py's"
    ), server.stderr()
    assert "Traceback" not in server.stderr()
    both = Gunicorn(tmp_path, env, args=[*flags, "-b", f"127.0.0.1:{metrics_port}"], port=port)
    try:
        both.start()
        assert get(metrics_port, "/metrics")[0] == 200
    finally:
        both.stop()


@pytest.mark.parametrize("bind", ["9100", "unix:/run/metrics.sock", "host:0", "[::1:9100"])
def test_metrics_bind_must_be_host_and_port(bind: str) -> None:
    """METRICS_BIND is a TCP address; anything else is refused naming the variable."""
    with pytest.raises(SettingsError, match="must be HOST:PORT") as refused:
        Settings.from_env({"METRICS_BIND": bind})
    assert refused.value.name == "METRICS_BIND"


# --- The directory --------------------------------------------------------------------------


def test_configured_directory_is_emptied_of_metric_files_at_start(
    tmp_path: Path, started: list[Gunicorn]
) -> None:
    """A second server on the directory a stopped one left starts from zero, and files that
    are not metric files stay."""
    configured = tmp_path / "metrics"
    first = metered(tmp_path / "first", workers=1, PROMETHEUS_MULTIPROC_DIR=str(configured))
    started.append(first.server)
    assert send_counted(first.server.port, 8) == [200] * 8
    assert first.server.stop() == 0
    kept = first.files / "notes.txt"
    kept.write_text("not a metric file\n")
    assert total(read_files(first.files), "http_requests_total", route=COUNTED) == 8

    second = metered(tmp_path / "second", workers=1, PROMETHEUS_MULTIPROC_DIR=str(first.files))
    started.append(second.server)
    assert total(second.answered(), "http_requests_total", route=COUNTED) == 0
    assert kept.read_text() == "not a metric file\n"
    assert not ARCHIVES & second.file_names()


def test_default_directory_is_private_in_memory_and_removed_at_exit(
    tmp_path: Path, started: list[Gunicorn]
) -> None:
    """Without PROMETHEUS_MULTIPROC_DIR the master makes a directory of its own under
    /dev/shm, readable by its user alone, and removes it when it exits."""
    metrics_port = free_port()
    env = base_env(
        WEB_CONCURRENCY="2",
        LOG_FORMAT="json",
        DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
        METRICS_BIND=f"127.0.0.1:{metrics_port}",
    )
    server = Gunicorn(tmp_path, env, args=[SLEEPY]).start()
    started.append(server)
    directory = metrics_directory(server)
    assert directory.parent == Path("/dev/shm")
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    assert get(server.port, f"{COUNTED}?s=0")[0] == 200
    assert total(scrape_answered(metrics_port), "http_requests_total", route=COUNTED) == 1
    assert server.stop() == 0
    assert not directory.exists()


def test_an_unusable_directory_stops_the_master_with_one_line(tmp_path: Path) -> None:
    """PROMETHEUS_MULTIPROC_DIR below a file: gunicorn exits 1 naming the variable, before
    any worker starts."""
    (tmp_path / "a-file").write_text("")
    env = base_env(
        GUNICORN_BIND=f"127.0.0.1:{free_port()}",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "a-file" / "metrics"),
    )
    done = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "tests.apps.plain:app"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "configuration error: PROMETHEUS_MULTIPROC_DIR: cannot use "
        f"{tmp_path / 'a-file' / 'metrics'}: Not a directory"
    )
    assert "Booting worker" not in done.stderr


def test_a_killed_masters_directory_is_removed_by_the_next_start(
    tmp_path: Path, started: list[Gunicorn]
) -> None:
    """A master killed with SIGKILL cannot remove its directory; once its worker is gone
    too, the next master to start removes it, and leaves a live master's alone."""
    # A short timeout: the orphaned worker notices its master is gone within a second.
    killed = metered(tmp_path / "killed", workers=1, GUNICORN_TIMEOUT="2")
    live = metered(tmp_path / "live", workers=1)
    started += [killed.server, live.server]
    orphans = killed.workers()
    killed.server.stop(signal.SIGKILL)
    wait_until(lambda: not any(running(pid) for pid in orphans), 15, "the worker outlived it")
    assert killed.files.is_dir()

    following = metered(tmp_path / "following", workers=1)
    started.append(following.server)
    assert not killed.files.exists()
    assert live.files.is_dir()
    assert following.files.is_dir()


def running(pid: int) -> bool:
    """Whether process `pid` exists and has not exited (a zombie holds no files)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


# --- The database pool and the scheduler ------------------------------------------------------


def test_pool_gauges_follow_connections_in_use_and_timeouts_are_counted(
    tmp_path: Path, started: list[Gunicorn], postgres_url: str
) -> None:
    """Pool 2 + overflow 1, four requests holding a connection at once (gthread, 4 threads):
    three in use, one beyond the pool, and the fourth times out with a 503; then all free."""
    metered_server = metered(
        tmp_path,
        "gthread",
        workers=1,
        GUNICORN_THREADS="4",
        DATABASE_URL=postgres_url,
        DB_POOL_SIZE="2",
        DB_MAX_OVERFLOW="1",
        DB_POOL_TIMEOUT="0.5",
    )
    started.append(metered_server.server)
    statuses: list[int] = []

    def hold(_: int) -> int:
        return get(metered_server.server.port, "/test/pg-sleep?s=2", timeout=30)[0]

    holders = threading.Thread(target=lambda: statuses.extend(in_parallel(4, hold)))
    holders.start()
    try:
        wait_until(
            lambda: value(metered_server.scrape(), "db_pool_checked_out") == 3,
            5,
            "three connections never in use at once",
        )
        during = metered_server.scrape()
    finally:
        holders.join()
    after = metered_server.scrape()
    assert sorted(statuses) == [200, 200, 200, 503]
    assert (value(during, "db_pool_checked_out"), value(during, "db_pool_overflow")) == (3, 1)
    assert (value(after, "db_pool_checked_out"), value(after, "db_pool_overflow")) == (0, 0)
    assert value(after, "db_pool_timeouts_total") == 1


def test_scheduler_runs_and_lag_are_counted_once_per_run(
    tmp_path: Path, started: list[Gunicorn]
) -> None:
    """A job every second in two workers: after a graceful stop the counts the workers left
    equal the runs job_runs recorded, each claimed within seconds of its time."""
    url = f"sqlite:///{tmp_path / 'app.db'}"
    migrate(url)
    metered_server = metered(
        tmp_path,
        workers=2,
        DATABASE_URL=url,
        SCHEDULER_ENABLED="true",
        SCHEDULER_JOBS="tests.apps.jobs:ticks",
        JOB_EVENTS=str(tmp_path / "events.jsonl"),
        # Kept at exit, to be read once every worker has stopped.
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"),
    )
    started.append(metered_server.server)
    wait_until(
        lambda: (
            value(
                metered_server.scrape(),
                "scheduler_runs_total",
                job_name="tick",
                outcome="succeeded",
            )
            >= 3
        ),
        15,
        lambda: f"no three runs counted:\n{metered_server.server.stderr()}",
    )
    assert metered_server.server.stop() == 0
    samples = read_files(metered_server.files)
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            count = select(func.count()).where(JobRun.job == "tick", JobRun.status == "succeeded")
            succeeded = conn.execute(count).scalar_one()
    finally:
        engine.dispose()
    runs = total(samples, "scheduler_runs_total", job_name="tick")
    assert value(samples, "scheduler_runs_total", job_name="tick", outcome="succeeded") == succeeded
    assert value(samples, "scheduler_lag_seconds_count", job_name="tick") == runs
    assert value(samples, "scheduler_lag_seconds_bucket", job_name="tick", le="2.5") == runs
    # Every worker gone: only the archives remain, their live gauges dropped.
    assert metered_server.file_names() == ARCHIVES


# --- Labels ---------------------------------------------------------------------------------


def in_memory_samples() -> dict[Series, float]:
    """This (test) process's metrics, kept in memory: no PROMETHEUS_MULTIPROC_DIR here."""
    return parse(generate_latest(current_metrics().registry).decode())


def delta(before: dict[Series, float], after: dict[Series, float]) -> dict[Series, float]:
    """The samples of `http_requests_total` that grew, by how much."""
    return {
        key: count - before.get(key, 0.0)
        for key, count in after.items()
        if key[0] == "http_requests_total" and count != before.get(key, 0.0)
    }


def test_without_a_listener_no_request_is_counted(make_app: AppFactory) -> None:
    """Without METRICS_BIND nobody can read the metrics, so no request pays for them."""
    client = make_app().test_client()
    before = in_memory_samples()
    assert client.get("/healthz").status_code == 200
    assert delta(before, in_memory_samples()) == {}


def test_route_label_is_the_url_rule_and_no_label_takes_a_clients_value(
    make_app: AppFactory,
) -> None:
    """A matched request is counted under its URL rule, an unmatched one under `unmatched`,
    an unknown method under `other`: never the path or method the client sent."""
    app: Flask = make_app(metrics_bind="127.0.0.1:9100")

    @app.get("/test/echo/<name>")
    def echo(name: str) -> Response:
        return ok({"name": name})

    client = app.test_client()
    before = in_memory_samples()
    assert client.get("/test/echo/secret-name").status_code == 200
    assert client.get("/nowhere/4242").status_code == 404
    assert client.open("/healthz", method="BREW").status_code == 405
    grown = delta(before, in_memory_samples())
    expected: dict[Series, Any] = {
        (
            "http_requests_total",
            (("method", "GET"), ("route", "/test/echo/<name>"), ("status_class", "2xx")),
        ): 1.0,
        (
            "http_requests_total",
            (("method", "GET"), ("route", "unmatched"), ("status_class", "4xx")),
        ): 1.0,
        (
            "http_requests_total",
            (("method", "other"), ("route", "unmatched"), ("status_class", "4xx")),
        ): 1.0,
    }
    assert grown == expected


def test_the_build_info_carries_pyproject_s_version() -> None:
    """The version app_build_info reports is the service's own, not "unknown"."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert service_version() == project["version"]
