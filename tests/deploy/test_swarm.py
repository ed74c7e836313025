"""deploy/swarm/stack.yaml: it agrees with compose.yaml, and on the real engine in swarm mode a
rolling update of two app replicas (deploy/swarm/rollout) fails no request under the mixed
traffic of tests/deploy/test_rollout.py.

The engine joins a one-node swarm for this module (`docker swarm init`) and leaves it after,
unless it was in one already. Its ingress routing mesh is not used: nginx publishes its port
in host mode, and the app resolves to each task's address (endpoint_mode dnsrr).
"""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness.processes import ROOT, free_port, request, wait_until
from tests.deploy.files import compose_services, yaml_file
from tests.support.checkout import run
from tests.support.engine import docker
from tests.support.traffic import STORED_NAMES, Traffic

STACK_FILE = ROOT / "deploy" / "swarm" / "stack.yaml"
TEST_FILE = ROOT / "tests" / "deploy" / "swarm.test.yaml"
ROLLOUT = ROOT / "deploy" / "swarm" / "rollout"
IMAGE = "kit-swarm-test"


def stack_services() -> dict[str, dict[str, Any]]:
    """stack.yaml's services by name."""
    services: dict[str, dict[str, Any]] = yaml_file(STACK_FILE)["services"]
    return services


def test_the_stack_has_compose_services_settings_and_limits() -> None:
    """The same services, environment, images, health checks, stop timeouts and limits as
    compose.yaml: a change to one file that the other misses fails here."""
    compose, swarm = compose_services(), stack_services()
    assert set(swarm) == set(compose)
    for name in swarm:
        for key in ("environment", "healthcheck", "stop_grace_period", "read_only", "command"):
            expected: Any = compose[name].get(key)
            found = swarm[name].get(key)
            if key == "environment" and name in ("app", "migrate"):
                # The one difference, explained in stack.yaml: no network alias to bind.
                expected = {**expected, "METRICS_BIND": "0.0.0.0:9100"}
            if (name, key) == ("nginx", "healthcheck"):
                # nginx's own answer, not the app's through it (stack.yaml says why).
                expected = {
                    **expected,
                    "test": [
                        t.replace("-fsS", "-sS").replace("/healthz", "/metrics")
                        for t in expected["test"]
                    ],
                }
            assert found == expected, f"{name}: {key}"
        limits = swarm[name]["deploy"]["resources"]
        assert limits == compose[name]["deploy"]["resources"], name
        assert set(swarm[name]["networks"]) == set(compose[name]["networks"]), name
    for name in ("db", "nginx"):
        assert swarm[name]["image"] == compose[name]["image"], name
    assert swarm["db"]["volumes"] == compose["db"]["volumes"]


def test_the_app_updates_start_first_behind_dns_and_nginx_publishes_on_the_host() -> None:
    """Two or more replicas replaced one at a time, a new one before an old one stops, and
    rolled back if it fails; each task's own address in DNS; nginx's port on the host."""
    app = stack_services()["app"]["deploy"]
    assert app["replicas"] >= 2
    assert app["endpoint_mode"] == "dnsrr"
    assert app["update_config"]["order"] == "start-first"
    assert app["update_config"]["failure_action"] == "rollback"
    assert app["rollback_config"]["order"] == "start-first"
    (port,) = stack_services()["nginx"]["ports"]
    assert port["mode"] == "host"
    assert stack_services()["migrate"]["deploy"]["mode"] == "replicated-job"


def test_the_swarm_template_is_the_plain_one_but_for_how_it_finds_the_app() -> None:
    """nginx/swarm/ serves as nginx/templates/ does, from the shared includes on; only the
    way to the app differs: looked up through Docker's DNS each second, no upstream block."""
    plain = (ROOT / "nginx" / "templates" / "kit.conf.template").read_text()
    swarm = (ROOT / "nginx" / "swarm" / "kit.conf.template").read_text()
    shared = "include kit/http.conf;"
    assert swarm[swarm.index(shared) :] == plain[plain.index(shared) :]
    assert "resolver 127.0.0.11 valid=1s" in swarm
    assert "upstream kit_app" not in swarm


@pytest.fixture(scope="module")
def swarm(engine: None) -> Iterator[None]:
    """The engine in swarm mode, as a one-node swarm of its own if it was in none."""
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").stdout.strip()
    joined = state != "active"
    if joined:
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        yield
    finally:
        if joined:
            docker("swarm", "leave", "--force", check=False)


class SwarmStack:
    """stack.yaml deployed under a name of its own, nginx on `port`."""

    def __init__(self) -> None:
        self.name = f"kit-swarm-{secrets.token_hex(3)}"
        self.port = free_port()
        # What the stack file reads, on top of the environment tests run in.
        self.env = {
            "SECRET_KEY": secrets.token_hex(32),
            "POSTGRES_PASSWORD": secrets.token_hex(16),
            "HTTP_PORT": str(self.port),
            "KIT_IMAGE": f"{IMAGE}:1",
            "KIT_ROOT": str(ROOT),
        }

    def run(self, *cmd: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run a command in the checkout with the stack's environment; fail with its output."""
        return run(ROOT, *cmd, env=self.env, timeout=timeout)

    def deploy(self) -> None:
        """`docker stack deploy`, then wait until the migration is done and nginx serves."""
        files = ["-c", str(STACK_FILE), "-c", str(TEST_FILE)]
        self.run("docker", "stack", "deploy", "--detach=false", *files, self.name, timeout=600)
        wait_until(self.serving, 180, f"{self.name} does not serve /test/records")

    def serving(self) -> bool:
        """Whether /test/records answers 200 through nginx (migrated, tables made)."""
        try:
            return request(self.port, "GET", "/test/records?limit=1", timeout=5)[0] == 200
        except OSError:
            return False

    def container(self, service: str) -> str:
        """A running container of one of the stack's services."""
        label = f"label=com.docker.swarm.service.name={self.name}_{service}"
        (first, *_) = docker("ps", "--quiet", "--filter", label).stdout.split()
        return first

    def images(self) -> list[str]:
        """The images the app's running tasks were made from."""
        listing = docker(
            "service", "ps", "--filter", "desired-state=running", "--format", "{{json .}}",
            f"{self.name}_app",
        ).stdout  # fmt: skip
        return sorted(json.loads(line)["Image"] for line in listing.splitlines())

    def remove(self) -> None:
        """Remove the stack, then its volumes once its containers are gone."""
        docker("stack", "rm", self.name, check=False)
        label = f"label=com.docker.stack.namespace={self.name}"
        wait_until(
            lambda: not docker("ps", "--all", "--quiet", "--filter", label).stdout.strip(),
            120, f"{self.name}'s containers remain",
        )  # fmt: skip
        volumes = docker("volume", "ls", "--quiet", "--filter", label).stdout.split()
        if volumes:
            docker("volume", "rm", *volumes, check=False)


@pytest.fixture(scope="module")
def swarm_stack(swarm: None) -> Iterator[SwarmStack]:
    """Two images of the kit that differ (a label), and the stack deployed on the first."""
    for release in ("1", "2"):
        docker(
            "build", "--quiet", "--label", f"kit.test.release={release}",
            "--tag", f"{IMAGE}:{release}", str(ROOT), timeout=600,
        )  # fmt: skip
    stack = SwarmStack()
    try:
        stack.deploy()
        yield stack
    finally:
        stack.remove()
        docker("image", "rm", f"{IMAGE}:1", f"{IMAGE}:2", check=False)


def test_a_rolling_update_under_load_fails_no_request_and_loses_no_row(
    swarm_stack: SwarmStack, capsys: pytest.CaptureFixture[str]
) -> None:
    """deploy/swarm/rollout to the second image while traffic runs through nginx: every
    request a 2xx, every created row in PostgreSQL, and every task on the new image."""
    stack = swarm_stack
    assert stack.images() == [f"{IMAGE}:1", f"{IMAGE}:1"]
    load = Traffic.to_test_app(stack.port)
    with load:
        time.sleep(2)
        begun = time.monotonic()
        done = stack.run(str(ROLLOUT), stack.name, f"{IMAGE}:2", timeout=900)
        took = time.monotonic() - begun
        time.sleep(2)
    assert "done" in done.stdout, done.stdout + done.stderr
    assert stack.images() == [f"{IMAGE}:2", f"{IMAGE}:2"]
    assert load.failed() == [], load.failed()[:5]
    stored = set(docker("exec", stack.container("db"), *STORED_NAMES).stdout.split())
    assert stored >= set(load.created)
    assert {o.kind for o in load.results} == {"read", "create", "slow"}
    served = len(load.between(begun, begun + took))
    with capsys.disabled():
        print(f"\nswarm rolling update: {took:.1f} s, {served} requests sent during it, 0 failed")
