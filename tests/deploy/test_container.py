"""Dockerfile, .dockerignore and compose.yaml: linted, validated against the compose spec, and
the image's command and health check run for real, outside a container, as a non-root user,
against the project installed the way the Dockerfile installs it.

No Docker engine is needed. What these tests know about the image (its ENV, WORKDIR, USER,
COPY sources, uv command, CMD and HEALTHCHECK) they parse from the Dockerfile, and the
migration command and stop timeout from compose.yaml, so they cannot drift from the files.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chassis.probe import TIMEOUT_S
from tests.conftest import require_service
from tests.deploy.files import compose_services, yaml_file
from tests.processes import ROOT, base_env, free_port, get

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


def copied_sources() -> list[tuple[str, str]]:
    """(source, destination) of each runtime COPY from the build context (not --from)."""
    pairs = []
    for instruction in RUNTIME:
        if instruction.keyword == "COPY" and "--from=" not in instruction.args:
            *sources, destination = shlex.split(instruction.args)
            pairs += [(source, destination) for source in sources]
    return pairs


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


def dockerignore_admits(relative: str) -> bool:
    """Whether .dockerignore lets `relative` (a POSIX path) into the build context.

    Docker's rules: the last matching pattern wins, `!` re-admits, a pattern matching a
    directory matches everything in it, and `**/` also matches no directory at all.
    """
    rules = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    parts = relative.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    admitted = True
    for rule in (r for r in rules if r and not r.startswith("#")):
        pattern = rule.removeprefix("!")
        alternatives = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(p, alt) for p in prefixes for alt in alternatives):
            admitted = rule.startswith("!")
    return admitted


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
        pytest.param("EXPOSE", "8000", id="gunicorn-port"),
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
    """HEALTHCHECK runs `python chassis/probe.py`, whose own timeout ends first."""
    options, command = healthcheck_of()
    assert command == ["python", "chassis/probe.py"]
    assert seconds(options["timeout"]) > TIMEOUT_S
    assert set(options) >= {"interval", "timeout", "start-period", "retries"}


@pytest.mark.parametrize(
    ("path", "admitted"),
    [
        pytest.param("app/__init__.py", True, id="app"),
        pytest.param("app/static/robots.txt", True, id="static"),
        pytest.param("migrations/versions/0001.py", True, id="migrations"),
        pytest.param("gunicorn.conf.py", True, id="gunicorn-conf"),
        pytest.param("pyproject.toml", True, id="pyproject"),
        pytest.param("uv.lock", True, id="lock"),
        pytest.param(".env", False, id="secrets"),
        pytest.param(".git/config", False, id="git"),
        pytest.param(".venv/bin/python", False, id="dev-venv"),
        pytest.param(".tools/bin/uv", False, id="tools"),
        pytest.param("data/app.db", False, id="local-database"),
        pytest.param("tests/conftest.py", False, id="tests"),
        pytest.param("README.md", False, id="readme"),
        pytest.param("app/__pycache__/db.cpython-311.pyc", False, id="bytecode"),
    ],
)
def test_build_context_admits_only_what_the_image_needs(path: str, admitted: bool) -> None:
    """.dockerignore is an allow-list: code in, secrets, venvs and caches out."""
    assert dockerignore_admits(path) is admitted


def test_every_copied_source_is_in_the_build_context() -> None:
    """Each COPY source exists and .dockerignore admits it (else the build fails)."""
    sources = [source for source, _ in copied_sources()]
    assert sorted(sources) == sorted(
        ["app", "chassis", "migrations", "gunicorn.conf.py", "pyproject.toml", "uv.lock"]
    )
    for source in sources:
        assert (ROOT / source).exists(), source
        assert dockerignore_admits(source), source


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


@pytest.mark.parametrize("name", ["migrate", "app", "nginx"])
def test_stateless_services_run_read_only(name: str) -> None:
    """Only tmpfs mounts are writable in the app, migration and nginx containers."""
    assert services()[name]["read_only"] is True
    assert "/tmp" in services()[name]["tmpfs"]


def test_nginx_can_write_where_the_unprivileged_image_needs() -> None:
    """nginx (UID 101) owns the tmpfs it renders templates into and its cache; /tmp is open.

    A tmpfs is root's unless its options say otherwise, and the image's entrypoint then
    renders no site (tests/deploy/test_compose.py shows the stack serving)."""
    assert sorted(services()["nginx"]["tmpfs"]) == [
        "/etc/nginx/conf.d:uid=101,gid=101,mode=0755",
        "/tmp",
        "/var/cache/nginx:uid=101,gid=101,mode=0755",
    ]


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
    docker = shutil.which("docker")
    if docker is None:
        require_service("docker CLI not installed: cannot run `docker compose config`")
    assert docker is not None
    version = subprocess.run([docker, "compose", "version"], capture_output=True, check=False)
    if version.returncode != 0:
        require_service("docker compose plugin not installed: cannot run `docker compose config`")
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


# --- The image's command, run for real --------------------------------------------------

DEV_TOOLS = [
    "pytest",
    "mypy",
    "ruff",
    "hadolint",
    "check-jsonschema",
    "supervisord",
    "uv",
    "actionlint",
    "shellcheck",
]


def open_to_others(path: Path) -> bool:
    """Whether a user other than the owner may run `path` (and reach it)."""
    resolved = path.resolve()
    if not resolved.exists() or resolved.stat().st_mode & stat.S_IXOTH == 0:
        return False
    return all(parent.stat().st_mode & stat.S_IXOTH for parent in resolved.parents)


def image_python() -> Path:
    """An interpreter of the image's Python minor version that the image's user can run.

    The interpreter running the tests when it qualifies; otherwise pythonX.Y from the
    system directories (as root, one under a private home such as /root is out of reach).
    """
    base = next(i.args for i in INSTRUCTIONS if i.keyword == "FROM")
    minor = re.match(r"python:(\d+\.\d+)\.", base)
    assert minor is not None, base
    candidates = []
    if "{}.{}".format(*sys.version_info[:2]) == minor.group(1):
        candidates.append(Path(getattr(sys, "_base_executable", sys.executable)))
    for directory in ("/usr/local/bin", "/usr/bin"):
        candidates.append(Path(directory) / f"python{minor.group(1)}")
    for candidate in candidates:
        if candidate.exists() and (os.geteuid() != 0 or open_to_others(candidate)):
            return candidate
    pytest.fail(
        f"no Python {minor.group(1)} that a non-root user can run (tried {candidates}); "
        f"install python{minor.group(1)} system-wide (Debian: apt-get install python3)"
    )


def find_uv() -> str:
    """uv on PATH, else the one `make install` bootstraps into .tools/."""
    uv = shutil.which("uv") or str(ROOT / ".tools" / "bin" / "uv")
    assert Path(uv).exists(), "uv not found on PATH or in .tools/bin: run `make install`"
    return uv


def as_image_user() -> dict[str, Any]:
    """Popen arguments that run a child as the image's USER when we are root, else as us."""
    if os.geteuid() != 0:
        return {}
    uid, gid = (int(part) for part in last("USER").split(":"))
    return {"user": uid, "group": gid, "extra_groups": []}


def expected_uid() -> int:
    """The uid the image's processes run as here."""
    return int(as_image_user().get("user", os.geteuid()))


@pytest.fixture(scope="module")
def installed() -> Iterator[Path]:
    """The project as the image holds it in WORKDIR: the files the runtime stage COPYs
    (filtered by .dockerignore) and a venv made by the build stage's uv command, offline
    from the uv cache `make install` filled. Owned by whoever runs the tests, readable by
    others and writable by nobody else, like the image's root-owned /app."""
    top = Path(tempfile.mkdtemp(prefix="kit-image-"))
    try:
        top.chmod(0o755)
        workdir = top / last("WORKDIR").strip("/")
        workdir.mkdir(mode=0o755)
        for source, destination in copied_sources():
            src = ROOT / source
            target = workdir / destination
            files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
            for file in files:
                if not dockerignore_admits(file.relative_to(ROOT).as_posix()):
                    continue
                if src.is_dir():  # Docker copies a directory's contents
                    into = target / file.relative_to(src)
                else:
                    into = target / file.name if destination.endswith("/") else target
                into.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(file, into)

        env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "UV_CACHE_DIR"}}
        env |= {k: v for k, v in env_of(BUILDER).items() if k.startswith("UV_")}
        env |= {
            "UV_PYTHON": str(image_python()),
            "UV_PROJECT_ENVIRONMENT": str(workdir / ".venv"),
            # Tests use no network: everything comes from the cache `make install` filled.
            "UV_OFFLINE": "1",
        }
        cmd = [find_uv(), *uv_command()[1:]]
        result = subprocess.run(
            cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, f"{shlex.join(cmd)} failed:\n{result.stderr}"
        # Docker's modes whatever our umask: everyone may read, and run what is executable.
        for path in [workdir, *workdir.rglob("*")]:
            if not path.is_symlink():
                path.chmod(0o755 if path.is_dir() or path.stat().st_mode & stat.S_IXUSR else 0o644)
        yield workdir
    finally:
        shutil.rmtree(top)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A directory only the image's user may write, for the SQLite database."""
    path = Path(tempfile.mkdtemp(prefix="kit-data-"))
    try:
        path.chmod(0o755)
        if os.geteuid() == 0:
            os.chown(path, expected_uid(), int(as_image_user()["group"]))
        yield path
    finally:
        shutil.rmtree(path)


def container_env(workdir: Path, **runtime: str) -> dict[str, str]:
    """The image's ENV with WORKDIR mapped onto `workdir`, plus `runtime` (what `-e` adds)."""
    env = {"PATH": os.environ.get("PATH", os.defpath), "LANG": "C.UTF-8"}
    image_workdir = last("WORKDIR")
    for key, value in env_of(RUNTIME).items():
        value = value.replace("${PATH}", env["PATH"]).replace("$PATH", env["PATH"])
        env[key] = re.sub(rf"(?<![^:]){re.escape(image_workdir)}(?=/|:|$)", str(workdir), value)
    return env | runtime


def run_as_image_user(
    cmd: list[str], workdir: Path, env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` the way `docker exec`/HEALTHCHECK would: image user, WORKDIR, env."""
    return subprocess.run(
        cmd,
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S + 30,
        check=False,
        **as_image_user(),
    )


def uids(pid: int) -> set[int]:
    """The real and effective uids of `pid` and of its children."""
    pids = [pid, *map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split())]
    found = set()
    for each in pids:
        status = Path(f"/proc/{each}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        found |= {int(uid) for uid in line.split()[1:3]}
    return found


def test_installed_venv_holds_the_server_and_no_dev_tools(installed: Path) -> None:
    """The image's venv has gunicorn and alembic, and none of pytest, mypy, ruff or uv."""
    bin_dir = installed / ".venv" / "bin"
    assert [tool for tool in ("gunicorn", "alembic") if not (bin_dir / tool).exists()] == []
    assert [tool for tool in DEV_TOOLS if (bin_dir / tool).exists()] == []


def test_image_command_migrates_serves_as_non_root_and_stops_on_sigterm(
    installed: Path, data_dir: Path, tmp_path: Path
) -> None:
    """compose's migration command, then the image's CMD with its ENV as its USER: the
    HEALTHCHECK passes, /healthz and /readyz answer 200, SIGTERM exits 0 within compose's
    stop_grace_period, and the HEALTHCHECK fails once the server is down."""
    port = free_port()
    env = container_env(
        installed,
        APP_ENV="production",
        SECRET_KEY=secrets.token_hex(20),
        DATABASE_URL=f"sqlite:///{data_dir / 'app.db'}",
        WEB_CONCURRENCY="2",
        # Loopback only in tests; PORT tells the health check where that is.
        GUNICORN_BIND=f"127.0.0.1:{port}",
        PORT=str(port),
    )
    migration = run_as_image_user(services()["migrate"]["command"], installed, env)
    assert migration.returncode == 0, migration.stderr

    _, check = healthcheck_of()
    command = json.loads(last("CMD"))
    stop_timeout = seconds(services()["app"]["stop_grace_period"])
    with (tmp_path / "stdout.log").open("wb") as out, (tmp_path / "stderr.log").open("wb") as err:
        server = subprocess.Popen(
            command, cwd=installed, env=env, stdout=out, stderr=err, **as_image_user()
        )
    try:
        deadline = time.monotonic() + 30
        while (probe := run_as_image_user(check, installed, env)).returncode != 0:
            logs = (tmp_path / "stderr.log").read_text(errors="replace")
            assert server.poll() is None, f"gunicorn exited {server.returncode}:\n{logs}"
            assert time.monotonic() < deadline, f"never healthy: {probe.stderr}\n{logs}"
            time.sleep(0.2)
        assert get(port, "/healthz")[0] == 200
        assert get(port, "/readyz")[0] == 200
        assert uids(server.pid) == {expected_uid()}
        assert expected_uid() != 0

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=stop_timeout) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    down = run_as_image_user(check, installed, env)
    assert down.returncode == 1
    assert down.stderr.startswith("unhealthy: GET ")
    assert down.stderr.count("\n") == 1
