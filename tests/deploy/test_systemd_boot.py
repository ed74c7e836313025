"""deploy/systemd/kit.service under a real systemd: readiness, reload, stop and the sandbox.

The unit runs in a container that boots Debian's systemd as PID 1, installed there unchanged
as its header's install steps say, and driven with systemctl (tests/deploy/systemd_host.py;
the session shares one such container, `systemd_host`). Needs a Docker engine;
tests/deploy/test_systemd.py checks the unit file without one.
"""

from __future__ import annotations

import re

import pytest

from chassis.serving.hooks import WORKER_CLASSES
from tests.deploy.systemd_host import REQUEST, WORKER_PIDS, WORKERS, Host, sandbox_failures

# `systemctl start kit`, then at once the first request.
START_THEN_REQUEST = (
    REQUEST
    + """
import subprocess
subprocess.run(["systemctl", "start", "kit"], check=True, timeout=60)
print(json.dumps(send("GET", "/healthz")[0]))
"""
)

# Four client threads, a new connection per request; `systemctl reload kit` after one
# second, then load until every old worker is gone and for one second more. Bounded in
# requests and in time. Prints what was sent, what failed, and the workers before and after.
RELOAD_UNDER_LOAD = (
    WORKER_PIDS
    + REQUEST
    + """
import threading, time
MAX_REQUESTS, DEADLINE = 20000, time.monotonic() + 30
lock, stop, sent, failures = threading.Lock(), threading.Event(), [0], []

def load():
    while not stop.is_set() and time.monotonic() < DEADLINE:
        with lock:
            if sent[0] >= MAX_REQUESTS:
                return
            sent[0] += 1
        status = send("GET", "/readyz")[0]
        if status != 200:
            with lock:
                failures.append(status)

before = worker_pids()
clients = [threading.Thread(target=load) for _ in range(4)]
for client in clients:
    client.start()
time.sleep(1)
subprocess.run(["systemctl", "reload", "kit"], check=True, timeout=30)
after = worker_pids()
while (after & before or len(after) != len(before)) and time.monotonic() < DEADLINE - 1:
    time.sleep(0.1)
    after = worker_pids()
time.sleep(1)
stop.set()
for client in clients:
    client.join()
print(json.dumps({"sent": sent[0], "failures": failures[:10], "failed": len(failures),
                  "before": sorted(before), "after": sorted(after)}))
"""
)

# `systemctl stop kit`, timed.
TIMED_STOP = """
import json, subprocess, time
began = time.monotonic()
subprocess.run(["systemctl", "stop", "kit"], check=True, timeout=120)
print(json.dumps(time.monotonic() - began))
"""


def timespan_seconds(text: str) -> float:
    """A systemd timespan as `systemctl show` prints it ("45s", "1min 30s") in seconds."""
    units = {"min": 60.0, "s": 1.0, "ms": 0.001}
    parts = re.findall(r"(\d+)(min|ms|s)", text)
    assert "".join(n + u for n, u in parts) == text.replace(" ", ""), text
    return sum(int(n) * units[u] for n, u in parts)


def test_start_returns_once_gunicorn_listens(systemd_host: Host) -> None:
    """`systemctl start` returns after gunicorn's READY=1: the first request at once succeeds."""
    systemd_host.configure()
    systemd_host.run("systemctl", "stop", "kit", timeout=90)
    first = systemd_host.python(START_THEN_REQUEST, timeout=90)
    state = systemd_host.show("Type", "ActiveState", "StatusText")
    # StatusText is the STATUS= gunicorn's master sends with READY=1 (gunicorn/arbiter.py).
    assert (first, state) == (
        200,
        {"Type": "notify", "ActiveState": "active", "StatusText": "Gunicorn arbiter booted"},
    )


def test_reload_under_load_fails_no_request_and_replaces_workers(systemd_host: Host) -> None:
    """`systemctl reload` (HUP) swaps every worker while clients see only 200s."""
    systemd_host.configure()
    main = systemd_host.show("MainPID")
    result = systemd_host.python(RELOAD_UNDER_LOAD, timeout=60)
    assert result["sent"] > 100
    assert (result["failed"], result["failures"]) == (0, [])
    assert set(result["after"]) & set(result["before"]) == set()
    assert (len(result["after"]), systemd_host.show("MainPID")) == (WORKERS, main)


def test_stop_exits_zero_within_stop_timeout(systemd_host: Host) -> None:
    """`systemctl stop` (SIGTERM to the master) ends with exit status 0 before
    TimeoutStopSec, so systemd never needs SIGKILL."""
    systemd_host.configure()
    elapsed = systemd_host.python(TIMED_STOP, timeout=120)
    state = systemd_host.show("Result", "ExecMainCode", "ExecMainStatus", "TimeoutStopUSec")
    assert elapsed < timespan_seconds(state.pop("TimeoutStopUSec"))
    # ExecMainCode 1 is CLD_EXITED: the master exited by itself, not by a signal.
    assert state == {"Result": "success", "ExecMainCode": "1", "ExecMainStatus": "0"}


@pytest.mark.parametrize(
    "worker_class",
    [
        pytest.param("sync", id="sync"),
        pytest.param("gthread", id="gthread"),
        pytest.param("gevent", id="gevent"),
    ],
)
def test_sandbox_lets_worker_class_serve_database_requests(
    systemd_host: Host, worker_class: str
) -> None:
    """Under SystemCallFilter= and the rest of the sandbox, each worker class answers the
    readiness check (a SQLite query on a thread of its own), and no worker is refused a
    system call or dies."""
    cursor = systemd_host.journal_cursor()
    systemd_host.configure(worker_class)
    assert systemd_host.request("GET", "/healthz")[0] == 200
    workers, main = systemd_host.workers(), systemd_host.show("MainPID", "NRestarts")
    # The filter is in force (systemd does not quietly skip it in this container).
    assert systemd_host.seccomp_modes(workers | {int(main["MainPID"])}) == {"2"}

    status, body = systemd_host.request("GET", "/readyz")

    journal = systemd_host.journal(after=cursor)
    assert (status, body["data"]) == (200, {"status": "ready"})
    assert f"Using worker: {WORKER_CLASSES[worker_class]}" in journal
    assert sandbox_failures(journal) == []
    assert (systemd_host.workers(), systemd_host.show("MainPID", "NRestarts")) == (workers, main)
