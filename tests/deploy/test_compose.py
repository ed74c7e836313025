"""compose.yaml on a real Docker engine: `docker compose up --build --wait`, then every
promise of the stack checked through nginx on the published port, with only the kit's own
endpoints, so these tests pass whatever resources the service has. The metrics listener,
which nginx never reaches, is tried from a container on each of the app's networks and from
the Docker host instead.

The stack (`stack`, tests/deploy/compose_stack.py) is shared with the example resource's
tests (tests/app/items/test_deployed.py). The tests that stop, restart or recreate containers
come last, in file order. Where no registry is reachable the base images are stand-ins
(tests/images/README.md).
"""

from __future__ import annotations

import json
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from chassis.settings.parsers import tcp_port
from harness.processes import ROOT, base_env, free_port, request, wait_until
from tests.deploy.compose_stack import Stack, healthy, lines_with
from tests.deploy.files import compose_services
from tests.support.engine import docker

pytestmark = pytest.mark.usefixtures("engine")

ONE_MIB = 1024 * 1024
FORGED = "203.0.113.77"


# --- Up and serving -------------------------------------------------------------------


def documented_compose_commands() -> str:
    """The shell block under the "Docker Compose" heading of docs/deploy.md."""
    page = (ROOT / "docs" / "deploy.md").read_text()
    section = page.split("\n## Docker Compose\n", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def test_documented_compose_commands_work_verbatim() -> None:
    """docs/deploy.md's commands, run as written, bring up a stack that answers through nginx
    (only the project name and the published port come from the environment)."""
    project, port = f"kit-docs-{secrets.token_hex(4)}", free_port()
    env = base_env(COMPOSE_PROJECT_NAME=project, HTTP_PORT=str(port))
    try:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", documented_compose_commands()],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
            stdin=subprocess.DEVNULL, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        status, _, body = request(port, "GET", "/healthz")
        assert (status, json.loads(body)["data"]) == (200, {"status": "alive"})
    finally:
        # `down` reads compose.yaml too, which demands both secrets; any value does here.
        subprocess.run(
            ["docker", "compose", "down", "--volumes", "--timeout", "10"],
            cwd=ROOT, env=env | {"SECRET_KEY": "x", "POSTGRES_PASSWORD": "x"},
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip


def test_up_wait_leaves_every_service_healthy(stack: Stack) -> None:
    """db, app and nginx are running and healthy; the migration step exited 0."""
    for service in ("db", "app", "nginx"):
        state = stack.state(service)
        assert (state["Status"], state["Health"]["Status"]) == ("running", "healthy"), service
    migrate = stack.state("migrate")
    assert (migrate["Status"], migrate["ExitCode"]) == ("exited", 0)


@pytest.mark.parametrize(
    "path", [pytest.param("/healthz", id="liveness"), pytest.param("/readyz", id="readiness")]
)
def test_health_endpoints_answer_through_nginx(stack: Stack, path: str) -> None:
    """Liveness and readiness (which queries PostgreSQL) answer 200 through nginx."""
    status, headers, body = stack.send("GET", path, headers={"X-Tracking-ID": "health-1"})
    assert status == 200
    assert body["code"] == 200
    assert headers["X-Tracking-ID"] == "health-1"


@pytest.mark.parametrize(
    ("method", "path", "status", "msg"),
    [
        pytest.param("GET", "/api/no-such-resource", 404, "not found", id="app-404"),
        pytest.param("PATCH", "/healthz", 405, "method not allowed", id="app-405"),
    ],
)
def test_app_errors_come_back_as_the_envelope(
    stack: Stack, method: str, path: str, status: int, msg: str
) -> None:
    """The app's own 404 and 405 pass through nginx as the JSON envelope (the app answered:
    gunicorn logged it, so it is not nginx's own envelope for the same status)."""
    got, headers, body = stack.send(method, path)
    assert got == status
    assert headers["Content-Type"] == "application/json"
    assert (body["code"], body["msg"], body["tracking_id"]) == (
        status,
        msg,
        headers["X-Tracking-ID"],
    )
    (access,) = lines_with(stack.logs("app"), headers["X-Tracking-ID"])
    assert (access["logger"], access["status"]) == ("gunicorn.access", status)


def test_oversized_body_gets_nginx_413_envelope(stack: Stack) -> None:
    """A body over 1 MiB is refused by nginx itself, with the envelope; the app never sees it."""
    status, headers, body = stack.send("POST", "/api/uploads", b"x" * (ONE_MIB + 1))
    assert status == 413
    assert body == {
        "code": 413,
        "msg": "request body is over the 1 MiB limit",
        "data": None,
        "tracking_id": headers["X-Tracking-ID"],
    }
    assert lines_with(stack.logs("app"), headers["X-Tracking-ID"]) == []


def test_static_file_is_served_by_nginx(stack: Stack) -> None:
    """/static/ comes from the mounted app/static without reaching the app."""
    status, _, raw = request(
        stack.port, "GET", "/static/robots.txt", headers={"X-Tracking-ID": "static-1"}
    )
    assert status == 200
    assert raw == (ROOT / "app" / "static" / "robots.txt").read_bytes()
    (line,) = lines_with(stack.logs("nginx"), "static-1")
    assert line["upstream"] == ""
    assert lines_with(stack.logs("app"), "static-1") == []


def test_unknown_host_gets_no_answer(stack: Stack) -> None:
    """A Host nginx does not serve is closed without a response (444)."""
    with pytest.raises(ConnectionError):
        request(stack.port, "GET", "/healthz", headers={"Host": "other.example"})


def test_forged_forwarded_for_never_reaches_the_app_logs(stack: Stack) -> None:
    """A client's own X-Forwarded-For is replaced by nginx: the app logs the real peer."""
    stack.send("GET", "/healthz", headers={"X-Forwarded-For": FORGED, "X-Tracking-ID": "forged-1"})
    (line,) = lines_with(stack.logs("app"), "forged-1")
    assert line["client"] != FORGED
    assert FORGED not in stack.compose("logs", "--no-color", "app").stdout


def applied_revisions(stack: Stack) -> list[str]:
    """The revisions the migration container applied when it last ran, as Alembic logs them."""
    return [
        line["message"]
        for line in stack.logs("migrate")
        if line["message"].startswith("Running upgrade")
    ]


def revision_count() -> int:
    """How many revisions the migrations hold, on every branch."""
    scripts = ScriptDirectory.from_config(Config(toml_file=str(ROOT / "pyproject.toml")))
    return len(list(scripts.walk_revisions()))


def test_migration_rerun_applies_nothing(stack: Stack) -> None:
    """The one-shot migration applied each revision once; running it again changes nothing."""
    assert len(applied_revisions(stack)) == revision_count()
    rerun = stack.compose("run", "--rm", "migrate", timeout=120)
    assert "Running upgrade" not in rerun.stdout + rerun.stderr
    assert stack.send("GET", "/readyz")[0] == 200


# --- The app container ------------------------------------------------------------------


def test_app_runs_as_10001_on_a_read_only_root(stack: Stack) -> None:
    """gunicorn runs as 10001:10001 and the container's root filesystem is read-only."""
    ids = stack.compose(
        "exec", "-T", "app", "python", "-c", "import os; print(os.getuid(), os.getgid())"
    )
    assert ids.stdout.split() == ["10001", "10001"]
    config = docker("inspect", "--format", "{{.HostConfig.ReadonlyRootfs}}", stack.container("app"))
    assert config.stdout.strip() == "true"


WRITE_PROBE = """
import os, tempfile
for path in ["/", "/app", "/app/app", "/app/.venv", "/etc", "/home", "/usr/local", "/var/tmp",
             "/run", "/tmp", "/dev/shm"]:
    try:
        tempfile.TemporaryFile(dir=path).close()
        print(path)
    except OSError:
        pass
"""


@pytest.mark.parametrize(
    ("limit", "expected"),
    [pytest.param("1", "1", id="one-cpu"), pytest.param("0.5", "1", id="half-a-cpu")],
)
def test_cpu_count_follows_the_container_cpu_limit(stack: Stack, limit: str, expected: str) -> None:
    """The CPU count gunicorn sizes its workers by is the container's CPU limit (--cpus, a
    cgroup quota), never the host's CPUs, rounded down and at least one."""
    image = docker("inspect", "--format", "{{.Image}}", stack.container("app")).stdout.strip()
    code = "from chassis.serving.hooks import available_cpus; print(available_cpus())"
    done = docker("run", "--rm", "--cpus", limit, "--entrypoint", "python", image, "-c", code)
    assert done.stdout.strip() == expected


def test_app_can_write_only_to_its_tmpfs(stack: Stack) -> None:
    """Of the places a process might write, only /tmp (and Docker's /dev/shm) accept a file."""
    writable = stack.compose("exec", "-T", "app", "python", "-c", WRITE_PROBE).stdout.split()
    # /dev/shm is Docker's own per-container tmpfs, where gunicorn keeps its heartbeat files.
    assert writable == ["/tmp", "/dev/shm"]


# --- The metrics listener ---------------------------------------------------------------

# GETs /metrics on port argv[1] of each address after it, all at once, and prints (as JSON)
# those where the kit's listener answered: a 200 with its app_build_info gauge. Refused, timed
# out, or another server on a route out of the machine: no answer.
METRICS_PROBE = """
import concurrent.futures, http.client, json, sys

def answered(address):
    conn = http.client.HTTPConnection(address, int(sys.argv[1]), timeout=5)
    try:
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        return response.status == 200 and b"app_build_info" in response.read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()

with concurrent.futures.ThreadPoolExecutor() as pool:
    found = pool.map(answered, sys.argv[2:])
print(json.dumps([address for address, ok in zip(sys.argv[2:], found) if ok]))
"""


def metrics_port() -> str:
    """The metrics listener's port, METRICS_BIND's in compose.yaml."""
    port = tcp_port(compose_services()["app"]["environment"]["METRICS_BIND"])
    assert port is not None
    return str(port)


def addresses(stack: Stack, container: str) -> dict[str, str]:
    """The container's address on each of the stack's networks, by the network's name in
    compose.yaml."""
    out = docker("inspect", "--format", "{{json .NetworkSettings.Networks}}", container).stdout
    prefix = f"{stack.project}_"
    return {
        name.removeprefix(prefix): network["IPAddress"] for name, network in json.loads(out).items()
    }


def metrics_answered_from(stack: Stack, network: str | None, targets: list[str]) -> list[str]:
    """The targets whose metrics listener answers a container on `network` (a throwaway one
    from the app's image), or the Docker host itself when `network` is None."""
    probe = ["-c", METRICS_PROBE, metrics_port(), *targets]
    if network is None:
        done = subprocess.run(
            [sys.executable, *probe], capture_output=True, text=True, timeout=60, check=True
        )
        found: list[str] = json.loads(done.stdout)
        return found
    replica = stack.container("app").split()[0]
    image = docker("inspect", "--format", "{{.Image}}", replica).stdout.strip()
    run = ["run", "--rm", "--network", f"{stack.project}_{network}", "--entrypoint", "python"]
    found = json.loads(docker(*run, image, *probe, timeout=60).stdout)
    return found


def test_metrics_answer_only_on_the_metrics_network(stack: Stack) -> None:
    """GET /metrics, tried at each of the app's addresses and at `app` from a container on
    each of its networks (nginx's, PostgreSQL's, and the metrics one, where Prometheus
    scrapes) and from the Docker host, is answered on the metrics network alone, and there
    at the app's address on it."""
    app = addresses(stack, stack.container("app"))
    targets = [*app.values(), "app"]

    answered = {
        "host": metrics_answered_from(stack, None, targets),
        **{network: metrics_answered_from(stack, network, targets) for network in app},
    }

    assert answered == {
        "host": [],
        "frontend": [],
        "backend": [],
        "metrics": [app["metrics"], "app"],
    }


# --- Stopping, restarting, recreating (these change the stack: keep them last) ---------


def test_stop_ends_gunicorn_with_exit_0_well_inside_the_grace_period(stack: Stack) -> None:
    """`docker compose stop app` reaches gunicorn as SIGTERM (through tini), which exits 0
    well before stop_grace_period (45 s) rather than being killed; started again, it serves."""
    started = time.monotonic()
    stack.compose("stop", "app", timeout=60)
    stopped_after = time.monotonic() - started
    assert stack.state("app")["ExitCode"] == 0
    assert stopped_after < 45
    stack.start_app()


def test_database_restart_under_load_never_gives_500(stack: Stack) -> None:
    """Under light load (4 clients on /readyz, which queries PostgreSQL), `docker compose
    restart db` answers only 200 or the 503 envelope, never a 500 or a 502, and nothing
    fails 5 s after the database is healthy: the pool's dead connections are replaced.

    Whether a request lands while PostgreSQL is down depends on timing (the restart takes
    about a second); the next test stops it for certain."""
    seen: list[tuple[float, int]] = []
    done = threading.Event()

    def load() -> None:
        while not done.is_set():
            seen.append((time.monotonic(), stack.send("GET", "/readyz")[0]))
            time.sleep(0.05)

    loaders = [threading.Thread(target=load) for _ in range(4)]
    for loader in loaders:
        loader.start()
    try:
        time.sleep(1)
        stack.compose("restart", "db", timeout=120)
        wait_until(healthy(stack, "db"), 60, "db not healthy")
        healthy_at = time.monotonic()
        time.sleep(7)
    finally:
        done.set()
        for loader in loaders:
            loader.join(30)
    assert {status for _, status in seen} <= {200, 503}
    assert all(status == 200 for at, status in seen if at > healthy_at + 5)


def readiness_failures(stack: Stack) -> list[dict[str, Any]]:
    """The app's warnings that a readiness check could not query the database."""
    return [
        line
        for line in stack.logs("app")
        if line["logger"] == "chassis.database.sessions"
        and line["message"].startswith("readiness check failed")
    ]


def test_database_down_gives_503_envelope_then_recovers(stack: Stack) -> None:
    """With PostgreSQL stopped, /readyz answers the 503 envelope with Retry-After, whose
    tracking id is the same in the response, nginx's log and gunicorn's access log, and the
    app logs a warning naming the database's host; 200 again within 5 s of the database
    being healthy."""
    warned = len(readiness_failures(stack))
    stack.compose("stop", "db", timeout=120)
    try:
        status, headers, body = stack.send("GET", "/readyz")
    finally:
        stack.compose("start", "db", timeout=120)
    tracking_id = headers["X-Tracking-ID"]
    assert (status, headers["Retry-After"]) == (503, "1")
    assert (body["code"], body["msg"], body["tracking_id"]) == (
        503,
        "database unavailable",
        tracking_id,
    )
    (nginx_line,) = lines_with(stack.logs("nginx"), tracking_id)
    assert nginx_line["status"] == 503
    # The check's own thread (chassis/database/sessions.py, Database.is_ready) logs under the request's id.
    (warning,) = readiness_failures(stack)[warned:]
    said = "readiness check failed: database unreachable: DATABASE_URL's db:5432: "
    assert (warning["message"][: len(said)], warning["tracking_id"]) == (said, tracking_id)
    (access,) = [
        line for line in lines_with(stack.logs("app"), tracking_id)
        if line["logger"] == "gunicorn.access"
    ]  # fmt: skip
    assert access["status"] == 503
    wait_until(healthy(stack, "db"), 60, "db not healthy")
    wait_until(lambda: stack.send("GET", "/readyz")[0] == 200, 5, "no 200 within 5 s")


def test_image_healthcheck_fails_once_gunicorn_stops(stack: Stack) -> None:
    """The image's own HEALTHCHECK turns the container unhealthy when gunicorn stops answering
    (its processes frozen with SIGSTOP); only the probe timing is shortened here."""
    image = docker("inspect", "--format", "{{.Image}}", stack.container("app")).stdout.strip()
    name = f"{stack.project}-health"
    docker(
        "run",
        "--detach",
        "--name",
        name,
        "--health-interval",
        "1s",
        "--health-retries",
        "2",
        "--health-start-period",
        "30s",
        "--health-start-interval",
        "1s",
        "--env",
        f"SECRET_KEY={secrets.token_hex(32)}",
        "--env",
        "DATABASE_URL=sqlite:////tmp/app.db",
        image,
    )
    try:

        def health() -> str:
            return str(
                docker("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
            )

        wait_until(lambda: health() == "healthy", 60, "never healthy")
        top = docker("top", name, "-o", "pid,args").stdout.splitlines()[1:]
        gunicorn = [row.split()[0] for row in top if "gunicorn" in row and "tini" not in row]
        assert gunicorn
        subprocess.run(["kill", "-STOP", *gunicorn], check=True)
        # Two failed probes of up to 5 s each, 1 s apart: about 12 s, more on a busy machine,
        # where Docker starts each probe late (seen: past 30 s while other suites ran).
        wait_until(lambda: health() == "unhealthy", 60, "still healthy with gunicorn stopped")
    finally:
        docker("rm", "--force", name, check=False)


def test_slow_uploads_cannot_run_nginx_out_of_memory(stack: Stack) -> None:
    """150 connections each send a 1 MiB body but its last byte, then stall (nginx waits for
    it up to client_body_timeout, 30 s): nginx, limited to 128M, is not killed for memory
    and keeps answering others. NGINX_CONN_LIMIT is raised for the test: from 150
    addresses the per-address limit would not stop them either."""
    head = (
        b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % ONE_MIB
    )
    with stack.recreated("nginx", NGINX_CONN_LIMIT="1000"):
        container = stack.container("nginx")
        uploads: list[socket.socket] = []
        try:
            for _ in range(150):
                upload = socket.create_connection(("127.0.0.1", stack.port), timeout=10)
                uploads.append(upload)
                upload.sendall(head + b" " * (ONE_MIB - 1))
            status = stack.send("GET", "/healthz")[0]
            memory = docker("stats", "--no-stream", "--format", "{{.MemUsage}}", container)
            print(f"nginx holding 150 stalled 1 MiB uploads: {memory.stdout.strip()}")
        finally:
            for upload in uploads:
                upload.close()
        state = stack.state("nginx")
        killed = [line for line in stack.compose("logs", "nginx").stdout.splitlines()
                  if "exited on signal 9" in line]  # fmt: skip
        assert (status, state["OOMKilled"], killed) == (200, False, [])
        assert stack.container("nginx") == container


def test_each_replica_serves_metrics_at_its_own_address(stack: Stack) -> None:
    """Scaled to two, each app replica listens for /metrics at its own address on the
    metrics network (each finds it among both replicas' at start), so a scraper on that
    network reaches both, and nothing on nginx's network reaches either."""
    scale = ["up", "--detach", "--wait", "--no-deps", "--scale"]
    stack.compose(*scale, "app=2", "app", timeout=180)
    try:
        replicas = stack.compose("ps", "--quiet", "app").stdout.split()
        metrics = sorted(addresses(stack, replica)["metrics"] for replica in replicas)
        frontend = [addresses(stack, replica)["frontend"] for replica in replicas]
        answered = sorted(metrics_answered_from(stack, "metrics", metrics))
        assert (len(replicas), answered) == (2, metrics)
        assert metrics_answered_from(stack, "frontend", [*metrics, *frontend]) == []
    finally:
        stack.compose(*scale, "app=1", "app", timeout=180)
        # nginx resolved `app` when it started; scaling recreated or removed that replica.
        stack.compose("kill", "--signal", "HUP", "nginx")
        wait_until(lambda: stack.send("GET", "/healthz")[0] == 200, 10, "nginx does not reach app")


def test_database_survives_down_and_up_but_not_down_volumes(stack: Stack) -> None:
    """The named volume keeps PostgreSQL's data across `down` and `up`: the new migration
    container finds every revision applied already. After `down -v` it applies them all again."""
    stack.compose("down", timeout=120)
    stack.up()
    assert applied_revisions(stack) == []
    stack.compose("down", "--volumes", timeout=120)
    stack.up()
    assert len(applied_revisions(stack)) == revision_count()


# --- The image itself -------------------------------------------------------------------

# The dev dependencies (pyproject.toml's dev group) whose executables must not ship.
DEV_TOOLS = ["pytest", "mypy", "ruff", "hadolint", "check-jsonschema", "supervisord", "uv",
             "actionlint", "shellcheck"]  # fmt: skip


def test_image_holds_the_server_and_no_dev_tools(stack: Stack) -> None:
    """The image's venv has gunicorn and alembic, and none of the dev tools or uv."""
    image = docker("inspect", "--format", "{{.Image}}", stack.container("app")).stdout.strip()
    listed = docker("run", "--rm", "--entrypoint", "ls", image, "/app/.venv/bin").stdout.split()
    assert {"gunicorn", "alembic"} <= set(listed)
    assert sorted(set(DEV_TOOLS) & set(listed)) == []


def test_build_context_holds_only_what_the_image_needs(tmp_path: Path) -> None:
    """What the engine sends to the builder, read back from an image of it: .dockerignore
    admits the code, the migrations, gunicorn.conf.py, pyproject.toml and uv.lock, and
    nothing else (no .env, .git, venvs, local databases, tests or bytecode)."""
    tag = f"kit-context:{secrets.token_hex(4)}"
    listing = "FROM python:3.11.14-slim-bookworm\nCOPY . /context\n"
    built = subprocess.run(
        ["docker", "build", "--quiet", "--tag", tag, "--file", "-", str(ROOT)],
        input=listing, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    try:
        found = docker("run", "--rm", tag, "find", "/context", "-type", "f").stdout.split()
    finally:
        docker("rmi", "--force", tag, check=False)
    files = {path.removeprefix("/context/") for path in found}
    tops = {path.split("/")[0] for path in files}
    assert tops == {"app", "chassis", "migrations", "gunicorn.conf.py", "pyproject.toml", "uv.lock"}
    assert [path for path in files if "__pycache__" in path or path.endswith(".pyc")] == []
    assert "app/static/robots.txt" in files


BUILD_FILES = [
    "Dockerfile",
    ".dockerignore",
    "app",
    "chassis",
    "migrations",
    "gunicorn.conf.py",
    "pyproject.toml",
    "uv.lock",
]


def build(context: Path, tag: str) -> tuple[float, str]:
    """Build the kit's image from `context`; return the seconds taken and BuildKit's log."""
    started = time.monotonic()
    result = docker("build", "--progress", "plain", "--tag", tag, str(context), timeout=900)
    return time.monotonic() - started, result.stderr


def test_image_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Cold build, rebuild after an app/ change (dependencies from cache) and image size.

    "Cold" means no layer cache (--no-cache) and an empty uv download cache, so every
    locked wheel is fetched again: what a fresh CI runner does.
    """
    context = tmp_path / "context"
    context.mkdir()
    for name in BUILD_FILES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, context / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, context / name)
    tag = f"kit-figures:{secrets.token_hex(4)}"
    # Empty the uv cache mount the Dockerfile uses (it is keyed by its target path).
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "Dockerfile").write_text(
        "FROM python:3.11.14-slim-bookworm\n"
        "RUN --mount=type=cache,target=/root/.cache/uv rm -rf /root/.cache/uv/*\n"
    )
    docker("build", "--no-cache", "--quiet", str(empty), timeout=300)
    try:
        started = time.monotonic()
        docker("build", "--no-cache", "--quiet", "--tag", tag, str(context), timeout=900)
        cold = time.monotonic() - started
        with (context / "app" / "__init__.py").open("a") as module:
            module.write("# touched by test_image_figures\n")
        rebuilt, log = build(context, tag)
        size = int(docker("image", "inspect", "--format", "{{.Size}}", tag).stdout)
    finally:
        docker("rmi", "--force", tag, check=False)
    sync_step = next(line for line in log.splitlines() if "uv sync --locked" in line)
    step = sync_step.split()[0]
    assert f"{step} CACHED" in log, "the dependency layer was rebuilt for an app/ change"
    with capsys.disabled():
        print(
            f"\nimage figures: cold build {cold:.1f} s, rebuild after an app/ change "
            f"{rebuilt:.1f} s, image size {size / 1e6:.0f} MB"
        )
