"""deploy/compose/rollout (`make rollout`, `make rollback`) on a real Docker engine, under
mixed traffic through nginx: reads, POSTs that create rows, and requests that wait 1.5 s in
PostgreSQL, each on a connection of its own.

The stacks serve the test app (tests/deploy/rollout.compose.yaml) from the kit's image. Each
rollout builds an image that differs from the one before (a label, RELEASE), so each one
really replaces the running version. Every request is counted: none may fail or answer
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
from tests.support.traffic import Traffic

FILES = ("compose.yaml", "tests/deploy/rollout.compose.yaml")
ROLLOUT = ROOT / "deploy" / "compose" / "rollout"
RELEASE_LABEL = "kit.test.release"


@pytest.fixture(scope="module")
def sync_stack(engine: None) -> Iterator[Stack]:
    """The stack with sync workers."""
    with running_stack(FILES, GUNICORN_WORKER_CLASS="sync", RELEASE="0") as stack:
        yield stack


@pytest.fixture(scope="module")
def gevent_stack(engine: None) -> Iterator[Stack]:
    """The stack with gevent workers."""
    with running_stack(FILES, GUNICORN_WORKER_CLASS="gevent", RELEASE="0") as stack:
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


def release(container: str) -> str:
    """The RELEASE label of the image a container runs."""
    image = docker("inspect", "--format", "{{.Image}}", container).stdout.strip()
    labels = docker("image", "inspect", "--format", "{{json .Config.Labels}}", image).stdout
    return str(json.loads(labels)[RELEASE_LABEL])


def rows(stack: Stack) -> set[str]:
    """The names of every row in the test resource's table."""
    query = ["psql", "-U", "kit", "-d", "kit", "-Atc", "SELECT name FROM test_records"]
    return set(stack.compose("exec", "-T", "db", *query).stdout.split())


def traffic(stack: Stack) -> Traffic:
    """Reads, creates and 1.5 s waits in PostgreSQL through the stack's nginx."""
    return Traffic(stack.port, "/test/records?limit=5", "/test/records", "/test/pg-sleep?s=1.5")


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


@pytest.mark.parametrize("workers", ["sync", "gevent"])
def test_three_rollouts_under_load_fail_no_request_and_lose_no_row(
    workers: str, request: pytest.FixtureRequest, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Three consecutive rollouts, each to a new image, while traffic runs throughout."""
    stack: Stack = request.getfixturevalue(f"{workers}_stack")
    measured = []
    with traffic(stack) as load:
        time.sleep(2)
        for number in (1, 2, 3):
            measured.append(roll_out_counted(stack, load, tmp_path, RELEASE=str(number)))
            assert [release(c) for c in app_containers(stack)] == [str(number)]
        time.sleep(2)
    assert load.failed() == [], load.failed()[:5]
    assert rows(stack) >= set(load.created)
    assert {o.kind for o in load.results} == {"read", "create", "slow"}
    with capsys.disabled():
        for seconds, served in measured:
            print(
                f"\nrollout ({workers}): {seconds:.1f} s, {served} requests sent during it, 0 failed"
            )


def test_a_version_never_healthy_takes_no_request_and_rollback_returns(
    sync_stack: Stack, tmp_path: Path
) -> None:
    """A new version whose app refuses to start (a SECRET_KEY too short) is never sent a
    request: the rollout exits 1 naming the reason, and the old app serves on. Then a good
    rollout, and `--rollback` back to the image before it, under the same counting."""
    stack = sync_stack
    before = app_containers(stack)
    running = release(before[0])
    with traffic(stack) as load:
        time.sleep(2)
        refused = rollout(stack, RELEASE="bad", APP_SECRET_KEY="too-short")
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "never became healthy" in refused.stderr
        assert "SECRET_KEY" in refused.stderr
        assert app_containers(stack) == before
        roll_out_counted(stack, load, tmp_path, RELEASE="next")
        assert [release(c) for c in app_containers(stack)] == ["next"]
        roll_out_counted(stack, load, tmp_path, "--rollback")
        assert [release(c) for c in app_containers(stack)] == [running]
        time.sleep(2)
    assert load.failed() == [], load.failed()[:5]
    assert rows(stack) >= set(load.created)
