"""The deployments that take minutes to start, once per session: a Docker engine with the
base images, compose.yaml's whole stack, and a host booting the systemd unit.

A pytest plugin, loaded by the root conftest (`pytest_plugins`), so that each fixture is
defined once for the kit's deployment tests (tests/deploy/) and the example's
(tests/app/items/test_deployed.py) alike: one stack and one host per session, whichever
asks first. Each skips (or fails, under KIT_REQUIRE_SERVICES) without an engine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from harness.programs import require_service
from tests.deploy.compose_stack import Stack, running_stack
from tests.deploy.systemd_host import Host, booted_host
from tests.support.engine import build_standins, engine_unavailable_reason


@pytest.fixture(scope="session")
def engine() -> None:
    """A Docker engine with Compose and buildx, and the base images the kit's files name.

    Skips (or fails, under KIT_REQUIRE_SERVICES) without one. With KIT_STANDIN_IMAGES=1, for
    a machine that reaches no registry, the base images are stand-ins built here first
    (tests/images/README.md); otherwise the engine pulls the real ones.
    """
    reason = engine_unavailable_reason()
    if reason:
        require_service(reason)
    if os.environ.get("KIT_STANDIN_IMAGES") == "1":
        build_standins()


@pytest.fixture(scope="session")
def stack(engine: None) -> Iterator[Stack]:
    """compose.yaml's whole stack, up and healthy, for the kit's compose tests and the
    example's alike; removed with its volumes when the session ends."""
    with running_stack() as stack:
        yield stack


@pytest.fixture(scope="session")
def systemd_host(engine: None) -> Iterator[Host]:
    """A container booting systemd, with kit.service installed by its header's steps,
    enabled and started, for the kit's unit tests and the example's alike."""
    with booted_host() as host:
        yield host
