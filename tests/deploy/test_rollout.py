"""deploy/compose/rollout (`make rollout`, `make rollback`) on a real Docker engine, under
mixed traffic through nginx: reads, POSTs that create rows, and requests that wait 1.5 s in
PostgreSQL, each on a connection of its own.

The stack serves the test app (tests/deploy/rollout.compose.yaml) from the kit's image. Each
rollout builds an image that differs from the one before (a label, RELEASE), so each one
really replaces the running version, under sync workers and then under gevent workers. Every request is counted: none may fail or answer
other than 2xx, and every row a POST created is in PostgreSQL afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from harness.processes import ROOT
from tests.deploy.compose_stack import Stack, running_stack
from tests.support.engine import docker
from tests.support.traffic import STORED_NAMES, Traffic

FILES = ("compose.yaml", "tests/deploy/rollout.compose.yaml")
ROLLOUT = ROOT / "deploy" / "compose" / "rollout"
RELEASE_LABEL = "kit.test.release"


@pytest.fixture(scope="module")
def rollout_stack(engine: None) -> Iterator[Stack]:
    """The stack, first with sync workers."""
    with running_stack(FILES, GUNICORN_WORKER_CLASS="sync", RELEASE="0") as stack:
        yield stack


def rollout(stack: Stack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the rollout script against `stack`, with `env` added to the stack's."""
    return subprocess.run(
        [str(ROLLOUT), *args], cwd=ROOT, env={**stack.env, **env}, capture_output=True,
        text=True, timeout=300, check=False,
    )  # fmt: skip


def app_containers(stack: Stack) -> list[str]:
    """The app's running containers."""
    return stack.compose("ps", "--quiet", "app").stdout.split()


def workers_of(container: str) -> str:
    """The worker class a container's gunicorn runs (GUNICORN_WORKER_CLASS)."""
    env = json.loads(docker("inspect", "--format", "{{json .Config.Env}}", container).stdout)
    (found,) = [item.split("=", 1)[1] for item in env if item.startswith("GUNICORN_WORKER_CLASS=")]
    return str(found)


def release(container: str) -> str:
    """The RELEASE label of the image a container runs."""
    image = docker("inspect", "--format", "{{.Image}}", container).stdout.strip()
    labels = docker("image", "inspect", "--format", "{{json .Config.Labels}}", image).stdout
    return str(json.loads(labels)[RELEASE_LABEL])


def rows(stack: Stack) -> set[str]:
    """The names of every row in the test resource's table."""
    return set(stack.compose("exec", "-T", "db", *STORED_NAMES).stdout.split())


@contextmanager
def followed(container: str, tmp_path: Path) -> Iterator[Path]:
    """The container's log, followed into a file while the block runs (until it is gone)."""
    path = tmp_path / f"{container[:12]}.log"
    with path.open("w") as out:
        follower = subprocess.Popen(
            ["docker", "logs", "--follow", container], stdout=out, stderr=subprocess.STDOUT
        )
        try:
            yield path
        finally:
            follower.wait(60)


def json_lines(path: Path) -> list[dict[str, object]]:
    """The JSON lines of a log file."""
    lines = (line for line in path.read_text().splitlines() if line.startswith("{"))
    return [json.loads(line) for line in lines]


def requests_after_sigterm(log: Path) -> list[dict[str, object]]:
    """Access lines of requests that reached gunicorn after its master got SIGTERM."""
    lines = json_lines(log)
    terms = [line for line in lines if line.get("message") == "Handling signal: term"]
    assert terms, f"{log.name}: no SIGTERM logged"
    term = dt.datetime.fromisoformat(str(terms[0]["@timestamp"]))
    late = []
    for line in lines:
        if "duration_ms" in line:
            ended = dt.datetime.fromisoformat(str(line["@timestamp"]))
            duration = dt.timedelta(milliseconds=float(str(line["duration_ms"])))
            if ended - duration > term:
                late.append(line)
    return late


def roll_out_counted(
    stack: Stack, load: Traffic, tmp_path: Path, *args: str, **env: str
) -> tuple[float, int]:
    """One rollout under `load`: it succeeds, replaces every app container, and the old ones
    took no request after SIGTERM. Returns its seconds and the requests sent meanwhile."""
    old = app_containers(stack)
    with followed(old[0], tmp_path) as log:
        begun = time.monotonic()
        done = rollout(stack, *args, **env)
        ended = time.monotonic()
    assert done.returncode == 0, done.stdout + done.stderr
    new = app_containers(stack)
    assert len(new) == len(old), (old, new)
    assert not set(new) & set(old), (old, new)
    assert requests_after_sigterm(log) == []
    return ended - begun, len(load.between(begun, ended))


# Three rollouts under sync workers, one that moves to gevent workers, three under gevent.
STEPS = [("sync", "1"), ("sync", "2"), ("sync", "3")] + [("gevent", str(n)) for n in range(4, 8)]


def test_rollouts_a_refused_version_and_a_rollback_under_load(
    rollout_stack: Stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """While traffic runs throughout: seven rollouts, each to a new image (STEPS); then a
    version whose app refuses to start (a SECRET_KEY too short), which takes no request and
    makes the rollout exit 1 naming the reason while the old app serves on; then
    `--rollback` to the image before the last rollout."""
    stack = rollout_stack
    measured = []
    with Traffic.to_test_app(stack.port) as load:
        time.sleep(1)
        for workers, number in STEPS:
            was = workers_of(app_containers(stack)[0])
            seconds, served = roll_out_counted(
                stack, load, tmp_path, RELEASE=number, GUNICORN_WORKER_CLASS=workers
            )
            (container,) = app_containers(stack)
            assert (release(container), workers_of(container)) == (number, workers)
            measured.append((f"{was} to {workers}", seconds, served))
        before = app_containers(stack)
        refused = rollout(
            stack, RELEASE="bad", APP_SECRET_KEY="too-short", GUNICORN_WORKER_CLASS="gevent"
        )
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "never became healthy" in refused.stderr
        assert "SECRET_KEY" in refused.stderr
        assert app_containers(stack) == before
        roll_out_counted(stack, load, tmp_path, "--rollback", GUNICORN_WORKER_CLASS="gevent")
        assert [release(c) for c in app_containers(stack)] == [STEPS[-2][1]]
        time.sleep(1)
    assert load.failed() == [], load.failed()[:5]
    assert rows(stack) >= set(load.created)
    assert {o.kind for o in load.results} == {"read", "create", "slow"}
    with capsys.disabled():
        for workers, seconds, served in measured:
            print(f"\nrollout ({workers}): {seconds:.1f} s, {served} requests during it, 0 failed")
