"""compose.yaml's whole stack on a real Docker engine, for the tests that drive it through
nginx: the kit's (tests/deploy/test_compose.py) and the example resource's
(tests/app/items/test_deployed.py), which share one stack per session (the `stack` fixture,
tests/deploy/fixtures.py).

The stack runs under a project name of its own and is removed with its volumes afterwards.
A test that stops, restarts or recreates a container leaves the stack healthy and serving
again: the next test, in either module, expects the stack as `up --wait` left it.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from harness.processes import ROOT, base_env, free_port, request, wait_until
from tests.support.engine import docker

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Stack:
    """One compose project built from this checkout, with nginx published on `port`."""

    def __init__(
        self, project: str, files: tuple[str, ...] = ("compose.yaml",), **env: str
    ) -> None:
        self.project = project
        self.port = free_port()
        # The project and its files as compose reads them from the environment, so a script
        # that runs `docker compose` (deploy/compose/rollout) drives this same stack.
        self.env = base_env(
            SECRET_KEY=secrets.token_hex(32),
            POSTGRES_PASSWORD=secrets.token_hex(16),
            HTTP_PORT=str(self.port),
            COMPOSE_PROJECT_NAME=project,
            COMPOSE_FILE=":".join(files),
            **env,
        )

    def compose(
        self, *args: str, timeout: float = 120, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run `docker compose` for this project; raise with its output when `check` fails."""
        cmd = ["docker", "compose", "--ansi", "never", "--project-name", self.project, *args]
        result = subprocess.run(
            cmd,
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}:\n{result.stderr}")
        return result

    def up(self) -> None:
        """`up --build --wait`: returns once every service is healthy or completed."""
        self.compose("up", "--build", "--wait", "--quiet-pull", timeout=600)

    def send(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        """One request through nginx; the body parsed as JSON (None when it is not)."""
        status, got, raw = request(self.port, method, path, body, headers, timeout=30)
        try:
            parsed = json.loads(raw)
        except ValueError:
            parsed = None
        return status, got, parsed

    def logs(self, service: str) -> list[dict[str, Any]]:
        """Every JSON line the service has logged (its other lines are left out)."""
        out = self.compose("logs", "--no-log-prefix", "--no-color", service).stdout
        lines = []
        for raw in out.splitlines():
            text = ANSI.sub("", raw).strip()
            if text.startswith("{"):
                lines.append(json.loads(text))
        return lines

    def start_app(self) -> None:
        """Start the stopped app container again; return once nginx reaches it."""
        self.compose("start", "app", timeout=60)
        wait_until(healthy(self, "app"), 60, "app not healthy")
        # nginx resolved `app` when it started; the container may have a new address now.
        self.compose("kill", "--signal", "HUP", "nginx")
        wait_until(lambda: self.send("GET", "/healthz")[0] == 200, 10, "nginx does not reach app")

    @contextmanager
    def recreated(self, service: str, **env: str) -> Iterator[None]:
        """Run the block with `service` recreated under `env` (added to what compose reads),
        then recreate it as it was; both times wait until it is healthy."""
        saved = self.env
        self.env = {**saved, **env}
        try:
            self.compose("up", "--detach", "--wait", "--no-deps", service, timeout=120)
            yield
        finally:
            self.env = saved
            self.compose("up", "--detach", "--wait", "--no-deps", service, timeout=120)

    def container(self, service: str) -> str:
        """The id of the service's container (stopped ones included)."""
        return self.compose("ps", "--all", "--quiet", service).stdout.strip()

    def state(self, service: str) -> dict[str, Any]:
        """`docker inspect`'s State of the service's container."""
        out = docker("inspect", "--format", "{{json .State}}", self.container(service)).stdout
        state: dict[str, Any] = json.loads(out)
        return state


@contextmanager
def running_stack(files: tuple[str, ...] = ("compose.yaml",), **env: str) -> Iterator[Stack]:
    """The whole stack from `files` under `env`, up and healthy; removed with its volumes
    when the block ends."""
    stack = Stack(f"kit-test-{secrets.token_hex(4)}", files, **env)
    try:
        stack.up()
        yield stack
    finally:
        stack.compose("down", "--volumes", "--remove-orphans", "--timeout", "10", check=False)
        # The images built for the project, tags a rollout added (`:previous`) included.
        built = docker("images", "--quiet", "--filter", f"reference={stack.project}-*").stdout
        if built.split():
            docker("image", "rm", "--force", *set(built.split()), check=False)


def healthy(stack: Stack, service: str) -> Callable[[], bool]:
    """A check that the service's container reports healthy."""
    return lambda: stack.state(service)["Health"]["Status"] == "healthy"


def lines_with(lines: list[dict[str, Any]], tracking_id: str) -> list[dict[str, Any]]:
    """The log lines that carry `tracking_id`."""
    return [line for line in lines if line.get("tracking_id") == tracking_id]
