"""The example resource `/api/items` as deployed: through nginx to gunicorn on PostgreSQL in
compose.yaml's stack, and under the systemd unit's sandbox on SQLite.

These are the example's end-to-end checks, deleted with it; the deployments' own promises
are checked with the kit's endpoints in tests/deploy/. Both share their stack and their
booted host with those tests (`stack` and `systemd_host`, tests/deploy/fixtures.py); the
tests that stop or recreate containers come last, in file order, and leave the stack
serving.
"""

from __future__ import annotations

import subprocess
import threading
import time

import pytest

from chassis.serving.hooks import WORKER_CLASSES
from harness.processes import ROOT, wait_until
from tests.deploy.compose_stack import Stack, healthy, lines_with
from tests.deploy.systemd_host import Host, sandbox_failures

pytestmark = pytest.mark.usefixtures("engine")


# --- compose.yaml: nginx, gunicorn, PostgreSQL ---------------------------------------------


def test_items_round_trip_on_postgresql(stack: Stack) -> None:
    """Create, read, list, update and delete one item through nginx and the app."""
    status, _, created = stack.send("POST", "/api/items", b'{"name": "bolt", "quantity": 3}')
    assert status == 201
    item = created["data"]
    path = f"/api/items/{item['id']}"
    assert stack.send("GET", path)[2]["data"] == item
    listed = stack.send("GET", "/api/items")[2]["data"]
    assert item["id"] in [row["id"] for row in listed["items"]]
    status, _, updated = stack.send("PUT", "/api/items/by-name/bolt", b'{"quantity": 5}')
    assert (status, updated["data"]["id"], updated["data"]["quantity"]) == (200, item["id"], 5)
    assert stack.send("DELETE", path)[0] == 200
    assert stack.send("GET", path)[0] == 404


def test_missing_item_gets_the_apps_404_envelope(stack: Stack) -> None:
    """The view's own 404 passes through nginx as the JSON envelope with its message."""
    got, headers, body = stack.send("GET", "/api/items/999999")
    assert got == 404
    assert headers["Content-Type"] == "application/json"
    assert (body["code"], body["msg"], body["tracking_id"]) == (
        404,
        "item 999999 not found",
        headers["X-Tracking-ID"],
    )


def test_stop_lets_slow_requests_finish_and_exits_0(stack: Stack) -> None:
    """`docker compose stop app` with 5 requests in flight: all 5 answer 200, and gunicorn
    exits 0 well before stop_grace_period (45 s)."""
    # The requests are slow for a real reason: a transaction holds the table they read.
    lock = subprocess.Popen(
        [
            "docker",
            "compose",
            "--project-name",
            stack.project,
            "exec",
            "-T",
            "db",
            "psql",
            "-U",
            "kit",
            "-d",
            "kit",
            "-c",
            "BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(5); COMMIT;",
        ],
        cwd=ROOT,
        env=stack.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.5)
    statuses: list[int] = []

    def slow_request() -> None:
        statuses.append(stack.send("GET", "/api/items")[0])

    threads = [threading.Thread(target=slow_request) for _ in range(5)]
    for thread in threads:
        thread.start()
    time.sleep(1)
    started = time.monotonic()
    stack.compose("stop", "app", timeout=60)
    stopped_after = time.monotonic() - started
    for thread in threads:
        thread.join(30)
    lock.wait(30)
    assert statuses == [200] * 5
    assert stack.state("app")["ExitCode"] == 0
    assert stopped_after < 45
    stack.start_app()


def test_database_down_gives_503_envelope_on_a_data_request(stack: Stack) -> None:
    """With PostgreSQL stopped, a data request gets the 503 envelope with Retry-After, whose
    tracking id is the same in the response, nginx's log, the app's log line (naming the
    database's host) and gunicorn's access log; 200 again within 5 s of the database being healthy."""
    stack.compose("stop", "db", timeout=120)
    try:
        status, headers, body = stack.send("GET", "/api/items")
    finally:
        stack.compose("start", "db", timeout=120)
    tracking_id = headers["X-Tracking-ID"]
    assert (status, headers["Retry-After"]) == (503, "1")
    assert (body["code"], body["tracking_id"]) == (503, tracking_id)
    (nginx_line,) = lines_with(stack.logs("nginx"), tracking_id)
    assert nginx_line["status"] == 503
    app_lines = lines_with(stack.logs("app"), tracking_id)
    assert [line["logger"] for line in app_lines] == [
        "chassis.web.errors",
        "gunicorn.access",
    ]
    # One line naming the database's host: the connection was refused, no statement ran.
    assert app_lines[0]["message"].startswith("database unreachable: DATABASE_URL's db:5432: ")
    assert app_lines[1]["status"] == 503
    wait_until(healthy(stack, "db"), 60, "db not healthy")
    wait_until(lambda: stack.send("GET", "/api/items")[0] == 200, 5, "no 200 within 5 s")


def test_items_survive_down_and_up_but_not_down_volumes(stack: Stack) -> None:
    """The named volume keeps the items across `down` and `up`; `down -v` removes them."""
    _, _, created = stack.send("POST", "/api/items", b'{"name": "kept"}')
    path = f"/api/items/{created['data']['id']}"
    stack.compose("down", timeout=120)
    stack.up()
    assert stack.send("GET", path)[2]["data"]["name"] == "kept"
    stack.compose("down", "--volumes", timeout=120)
    stack.up()
    assert stack.send("GET", path)[0] == 404


# --- deploy/systemd/kit.service: the sandbox, on SQLite ----------------------------------


@pytest.mark.parametrize(
    "worker_class",
    [
        pytest.param("sync", id="sync"),
        pytest.param("gthread", id="gthread"),
        pytest.param("gevent", id="gevent"),
    ],
)
def test_sandbox_lets_worker_class_store_and_read_an_item(
    systemd_host: Host, worker_class: str
) -> None:
    """Under SystemCallFilter= and the rest of the sandbox, each worker class creates and
    reads an item in SQLite, and no worker is refused a system call or dies."""
    cursor = systemd_host.journal_cursor()
    systemd_host.configure(worker_class)
    assert systemd_host.request("GET", "/healthz")[0] == 200
    workers, main = systemd_host.workers(), systemd_host.show("MainPID", "NRestarts")
    # The filter is in force (systemd does not quietly skip it in this container).
    assert systemd_host.seccomp_modes(workers | {int(main["MainPID"])}) == {"2"}

    status, body = systemd_host.request("POST", "/api/items", {"name": f"made-by-{worker_class}"})
    assert status == 201, body
    fetched = systemd_host.request("GET", f"/api/items/{body['data']['id']}")

    journal = systemd_host.journal(after=cursor)
    assert (fetched[0], fetched[1]["data"]) == (200, body["data"])
    assert f"Using worker: {WORKER_CLASSES[worker_class]}" in journal
    assert sandbox_failures(journal) == []
    assert (systemd_host.workers(), systemd_host.show("MainPID", "NRestarts")) == (workers, main)
