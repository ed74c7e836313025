"""Dockerfile and compose.yaml as files: linted (hadolint), validated against the compose
spec, and their agreed values (pins, ENV, USER, health check, secrets, read-only services)
checked without an engine, so a mistake shows in a second.

What the image and the stack do when they run is checked on a real engine, with the real
build context and entrypoints: tests/deploy/test_compose.py.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chassis.serving.probe import TIMEOUT_S
from harness import programs
from harness.processes import ROOT, base_env
from tests.deploy.files import compose_services, yaml_file

DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "compose.yaml"
# The dev tools (hadolint, check-jsonschema) are installed beside the running interpreter.
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class Instruction:
    """One Dockerfile instruction: its stage (0 for the first FROM), keyword and arguments."""

    stage: int
    keyword: str
    args: str


def parse_dockerfile(path: Path = DOCKERFILE) -> list[Instruction]:
    """Every instruction, continuation lines joined and comment lines dropped."""
    found: list[Instruction] = []
    stage, pending = -1, ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):  # Docker drops comments inside continuations too
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, args = (pending + line).partition(" ")
        pending = ""
        if keyword.upper() == "FROM":
            stage += 1
        found.append(Instruction(stage, keyword.upper(), args.strip()))
    return found


INSTRUCTIONS = parse_dockerfile()
RUNTIME = [i for i in INSTRUCTIONS if i.stage == INSTRUCTIONS[-1].stage]
BUILDER = [i for i in INSTRUCTIONS if i.stage == 0]


def last(keyword: str, stage: list[Instruction] = RUNTIME) -> str:
    """The arguments of the stage's last `keyword` instruction (the one Docker uses)."""
    return [i.args for i in stage if i.keyword == keyword][-1]


def env_of(stage: list[Instruction]) -> dict[str, str]:
    """The variables the stage's ENV instructions set, in KEY=value form."""
    env: dict[str, str] = {}
    for instruction in stage:
        if instruction.keyword == "ENV":
            for token in shlex.split(instruction.args):
                key, sep, value = token.partition("=")
                assert sep, f"ENV {token}: use the KEY=value form"
                env[key] = value
    return env


def healthcheck_of() -> tuple[dict[str, str], list[str]]:
    """The runtime HEALTHCHECK's options and its exec-form command."""
    options, _, command = last("HEALTHCHECK").partition(" CMD ")
    flags = dict(flag.removeprefix("--").split("=", 1) for flag in options.split())
    return flags, json.loads(command)


def uv_command() -> list[str]:
    """The build stage's `uv sync ...` command, without the RUN --mount flags."""
    run = next(i.args for i in BUILDER if i.keyword == "RUN" and "uv sync" in i.args)
    return [token for token in shlex.split(run) if not token.startswith("--mount=")]


def seconds(duration: str) -> float:
    """A Docker/compose duration such as 45s or 1m30s in seconds."""
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.findall(r"(\d+(?:\.\d+)?)([hms])", duration)
    assert "".join(n + u for n, u in parts) == duration, f"unsupported duration {duration!r}"
    return sum(float(n) * units[u] for n, u in parts)


def compose() -> dict[str, Any]:
    """compose.yaml as data (anchors resolved)."""
    return yaml_file(COMPOSE)


def services() -> dict[str, dict[str, Any]]:
    """compose.yaml's services by name."""
    return compose_services()


def run_checked(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a linter or validator; fail with its output unless it exits 0."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, **kwargs)
    assert result.returncode == 0, f"{shlex.join(cmd)} exited {result.returncode}:\n{result}"
    return result


def dev_tool(name: str) -> str:
    """A dev dependency's executable from the running venv; missing is a failure, not a skip."""
    path = VENV_BIN / name
    assert path.exists(), f"{name} is a dev dependency but is not in {VENV_BIN}: run `make install`"
    return str(path)


# --- The Dockerfile -----------------------------------------------------------------------


def test_dockerfile_passes_hadolint() -> None:
    """hadolint reports nothing, at any level (ignored rules are annotated in the file)."""
    result = run_checked([dev_tool("hadolint"), "--format", "json", "--no-color", str(DOCKERFILE)])
    assert json.loads(result.stdout) == []


def test_both_stages_use_one_exactly_pinned_python_image() -> None:
    """Builder and runtime share one base image tag, pinned to a patch release."""
    bases = [i.args.split()[0] for i in INSTRUCTIONS if i.keyword == "FROM"]
    assert len(bases) == 2
    assert bases[0] == bases[1]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", bases[0])


def test_uv_is_the_version_the_makefile_bootstraps() -> None:
    """The build stage copies uv from the official image at the Makefile's UV_VERSION."""
    makefile = (ROOT / "Makefile").read_text()
    version = re.search(r"^UV_VERSION := (\S+)$", makefile, re.MULTILINE)
    assert version is not None
    copy = next(i.args for i in BUILDER if i.keyword == "COPY")
    assert copy.startswith(f"--from=ghcr.io/astral-sh/uv:{version.group(1)} ")


def test_build_stage_installs_only_locked_runtime_dependencies() -> None:
    """uv installs from the lock, without dev tools, compiled, on the image's own Python."""
    assert uv_command() == ["uv", "sync", "--locked", "--no-dev", "--no-install-project"]
    env = env_of(BUILDER)
    assert env["UV_COMPILE_BYTECODE"] == "1"
    assert env["UV_LINK_MODE"] == "copy"
    assert env["UV_PYTHON_DOWNLOADS"] == "never"


@pytest.mark.parametrize(
    ("keyword", "expected"),
    [
        pytest.param("USER", "10001:10001", id="fixed-non-root-user"),
        pytest.param("WORKDIR", "/app", id="code-in-app"),
        pytest.param("EXPOSE", "8000 9100", id="gunicorn-and-metrics-ports"),
        pytest.param("STOPSIGNAL", "SIGTERM", id="graceful-stop-signal"),
        pytest.param("ENTRYPOINT", '["tini", "--"]', id="tini-as-pid-1"),
        pytest.param("CMD", '["gunicorn", "-c", "gunicorn.conf.py"]', id="exec-form-gunicorn"),
    ],
)
def test_runtime_stage_instruction(keyword: str, expected: str) -> None:
    """The runtime stage's instructions that deployments rely on have the agreed values."""
    assert last(keyword) == expected


def test_runtime_environment_is_the_agreed_one() -> None:
    """The venv comes first on PATH; Python is unbuffered and writes no bytecode; gunicorn
    binds all interfaces on port 8000."""
    env = env_of(RUNTIME)
    assert env.pop("PATH") == "/app/.venv/bin:$PATH"
    assert env == {
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",
        "GUNICORN_BIND": "0.0.0.0:8000",
        "APP_ENV": "production",
    }


def test_health_check_is_the_kit_command_inside_dockers_timeout() -> None:
    """HEALTHCHECK runs `python -m chassis.serving.probe`, whose own timeout ends first."""
    options, command = healthcheck_of()
    assert command == ["python", "-m", "chassis.serving.probe"]
    assert seconds(options["timeout"]) > TIMEOUT_S
    assert set(options) >= {"interval", "timeout", "start-period", "retries"}


# --- compose.yaml ---------------------------------------------------------------------


def test_compose_file_matches_the_compose_spec() -> None:
    """compose.yaml validates against the compose-spec schema check-jsonschema ships."""
    cmd = [dev_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)]
    run_checked(cmd)


def test_app_starts_after_a_healthy_database_and_a_completed_migration() -> None:
    """The app waits for pg_isready and for `alembic upgrade heads` to exit 0."""
    assert services()["app"]["depends_on"] == {
        "db": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    assert services()["nginx"]["depends_on"] == {"app": {"condition": "service_healthy"}}


def test_migration_is_a_one_shot_alembic_upgrade() -> None:
    """migrate runs the image with `alembic upgrade heads` once, never restarted."""
    migrate = services()["migrate"]
    assert migrate["command"] == ["alembic", "upgrade", "heads"]
    assert migrate["restart"] == "no"
    assert migrate["build"] == services()["app"]["build"]
    assert migrate["environment"] == services()["app"]["environment"]


def test_only_nginx_publishes_a_port() -> None:
    """gunicorn and PostgreSQL are reachable only inside the compose networks."""
    published = {name: s["ports"] for name, s in services().items() if "ports" in s}
    assert published == {"nginx": ["${HTTP_PORT:-8080}:8080"]}


@pytest.mark.parametrize("name", ["migrate", "app"])
def test_stateless_services_run_read_only(name: str) -> None:
    """Only tmpfs mounts are writable in the app and migration containers."""
    assert services()[name]["read_only"] is True
    assert "/tmp" in services()[name]["tmpfs"]


def test_nginx_can_write_where_the_unprivileged_image_needs() -> None:
    """nginx runs read-only; it (UID 101) owns the tmpfs it renders templates into and its
    cache; its /tmp, where request bodies wait, is a volume, not memory.

    A tmpfs is root's unless its options say otherwise, and the image's entrypoint then
    renders no site (tests/deploy/test_compose.py shows the stack serving)."""
    nginx = services()["nginx"]
    assert nginx["read_only"] is True
    assert sorted(nginx["tmpfs"]) == [
        "/etc/nginx/conf.d:uid=101,gid=101,mode=0755",
        "/var/cache/nginx:uid=101,gid=101,mode=0755",
    ]
    assert "nginx-temp:/tmp" in nginx["volumes"]


@pytest.mark.parametrize(
    ("service", "variable", "secret"),
    [
        pytest.param("app", "SECRET_KEY", "SECRET_KEY", id="secret-key"),
        pytest.param("app", "DATABASE_URL", "POSTGRES_PASSWORD", id="database-url"),
        pytest.param("db", "POSTGRES_PASSWORD", "POSTGRES_PASSWORD", id="postgres-password"),
    ],
)
def test_secrets_are_required_never_defaulted(service: str, variable: str, secret: str) -> None:
    """A missing secret stops `docker compose` with a message (${VAR:?...}), not a default."""
    value = services()[service]["environment"][variable]
    assert re.search(rf"\$\{{{secret}:\?[^}}]+\}}", value), value


def test_app_runs_production_behind_exactly_one_proxy() -> None:
    """Production settings, JSON logs, and ProxyFix trusting nginx's three headers."""
    env = services()["app"]["environment"]
    assert {k: v for k, v in env.items() if k.startswith("PROXY_FIX_")} == {
        "PROXY_FIX_X_FOR": "1",
        "PROXY_FIX_X_PROTO": "1",
        "PROXY_FIX_X_HOST": "1",
    }
    assert (env["APP_ENV"], env["LOG_FORMAT"]) == ("production", "json")
    assert env["DATABASE_URL"].startswith("postgresql://kit:")
    assert env["DATABASE_URL"].endswith("@db:5432/kit")


def test_app_stop_timeout_outlasts_gunicorns_graceful_timeout() -> None:
    """Docker waits 45 s after SIGTERM; gunicorn finishes requests within 30 s."""
    assert seconds(services()["app"]["stop_grace_period"]) == 45


def test_nginx_gets_every_variable_its_template_names() -> None:
    """Each ${VAR} in nginx/templates is set for the nginx container, upstream at app:8000."""
    env = services()["nginx"]["environment"]
    names = set()
    for template in (ROOT / "nginx" / "templates").glob("*.template"):
        names |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)\}", template.read_text()))
    assert names, "no nginx templates found"
    assert names <= set(env)
    assert (env["APP_UPSTREAM"], env["NGINX_PORT"]) == ("app:8000", "8080")


def test_images_are_pinned_to_exact_versions() -> None:
    """Every pulled image names a full x.y.z version, never a floating tag."""
    images = {name: s["image"] for name, s in services().items() if "image" in s}
    assert set(images) == {"db", "nginx"}
    for image in images.values():
        assert re.search(r":\d+\.\d+(\.\d+)?-[a-z]+(@sha256:[0-9a-f]{64})?$", image), image


def compose_plugin() -> str:
    """The docker CLI with its Compose plugin (no engine needed); skip or fail without."""
    docker, _ = programs.require("docker", "docker-compose")
    return docker


@pytest.mark.parametrize(
    ("secrets_set", "fails_naming"),
    [
        pytest.param(["POSTGRES_PASSWORD", "SECRET_KEY"], None, id="both-set"),
        pytest.param(["POSTGRES_PASSWORD"], "SECRET_KEY", id="no-secret-key"),
        pytest.param(["SECRET_KEY"], "POSTGRES_PASSWORD", id="no-postgres-password"),
    ],
)
def test_compose_config_resolves_only_with_both_secrets(
    secrets_set: list[str], fails_naming: str | None
) -> None:
    """`docker compose config` succeeds with the secrets and fails loudly naming a missing one."""
    docker = compose_plugin()
    env = base_env(**{name: secrets.token_hex(20) for name in secrets_set})
    cmd = [docker, "compose", "--env-file", os.devnull, "-f", str(COMPOSE), "config", "-q"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=False)
    if fails_naming is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode != 0
        assert fails_naming in result.stderr
