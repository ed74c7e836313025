"""deploy/systemd/kit.service installed in a container that boots Debian's systemd, for the
tests that drive the unit with systemctl: the kit's (tests/deploy/test_systemd_boot.py) and
the example resource's (tests/app/items/test_deployed.py), which share one booted container
per session (tests/deploy/fixtures.py).

One privileged container boots systemd as PID 1 (tests/images/systemd/Dockerfile); the unit
is installed there unchanged, as its header's install steps say. Everything a step sends or
measures runs inside the container, where gunicorn listens on 127.0.0.1:8000 as in
production. Each test writes the environment file it needs and restarts the unit.
"""

from __future__ import annotations

import json
import secrets
import shlex
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from harness.processes import ROOT
from tests.support.engine import BASE, docker

UNIT = ROOT / "deploy" / "systemd" / "kit.service"
DOCKERFILE = ROOT / "tests" / "images" / "systemd" / "Dockerfile"
IMAGE = "kit-systemd-host:test"

# systemd needs to create cgroups, namespaces and seccomp filters for the unit's sandbox;
# /run and /run/lock are tmpfs as on a booted host. A private cgroup namespace puts the
# container's systemd at the root of a cgroup tree of its own, not in the host's.
RUN_FLAGS = ("--privileged", "--cgroupns=private", "--tmpfs", "/run", "--tmpfs", "/run/lock")

# Debian's interpreter in the image, for the probes (the kit's venv is the service's own).
PYTHON = "python3.11"

# Two workers keep a 2-core machine responsive; the SQLite file is in the drop-in's
# StateDirectory= (tests/images/systemd/sqlite.conf).
DATABASE_URL = "sqlite:////var/lib/kit/app.db"
WORKERS = 2

# What a refused system call or a dying worker leaves in the journal. SystemCallErrorNumber=
# EPERM turns a filtered call into "Operation not permitted" rather than SIGSYS; both count.
SANDBOX_FAILURES = (
    "Bad system call",
    "SIGSYS",
    "status=31/SYS",
    "Operation not permitted",
    "Traceback",
    "exited with code",
    "was sent SIGKILL",
    "WORKER TIMEOUT",
    "Worker failed to boot",
)

# The unit's last lines, shown when a command in the container fails.
JOURNAL_TAIL = ("journalctl", "--unit=kit", "--lines=15", "--output=cat", "--no-pager")

# Prints the PIDs of the main process's children: gunicorn's workers.
WORKER_PIDS = """
import json, os, subprocess, sys

def worker_pids():
    show = ["systemctl", "show", "--property=MainPID", "--value", "kit"]
    main = subprocess.run(show, capture_output=True, text=True, check=True).stdout.strip()
    pids = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = stat.read().rpartition(")")[2].split()[1]
        except OSError:
            continue
        if parent == main:
            pids.add(int(entry))
    return pids
"""

# Sends one request to 127.0.0.1:8000 (argv: method, path, JSON body or "") and prints its
# status and decoded body; a connection error is printed as the status.
REQUEST = """
import http.client, json, sys

def send(method, path, body=""):
    conn = http.client.HTTPConnection("127.0.0.1", 8000, timeout=10)
    try:
        headers = {"Content-Type": "application/json"} if body else {}
        conn.request(method, path, body=body or None, headers=headers)
        response = conn.getresponse()
        return response.status, json.loads(response.read() or "null")
    except OSError as error:
        return repr(error), None
    finally:
        conn.close()
"""


def documented_migration() -> list[str]:
    """The migration command written in the unit's header, continuation lines joined."""
    lines = [line.removeprefix("#").strip() for line in UNIT.read_text().splitlines()]
    start = next(i for i, line in enumerate(lines) if line.startswith("systemd-run "))
    command = ""
    for line in lines[start:]:
        command += line.removesuffix("\\") + " "
        if not line.endswith("\\"):
            break
    return shlex.split(command)


def sandbox_failures(journal: str) -> list[str]:
    """The journal's lines that tell of a refused system call or a dying worker."""
    return [line for line in journal.splitlines() if any(f in line for f in SANDBOX_FAILURES)]


@dataclass
class Host:
    """The booted container: run commands in it and drive kit.service with systemctl."""

    name: str
    secret_key: str

    def run(self, *command: str, stdin: str | None = None, timeout: float = 60) -> str:
        """Run `command` in the container as root; return stdout, fail with its output."""
        done = subprocess.run(
            ["docker", "exec", "-i", self.name, *command],
            input=stdin or "",
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            # What the unit logged last usually says why a systemctl call or a probe failed.
            tail = docker("exec", self.name, *JOURNAL_TAIL, check=False, timeout=30).stdout
            pytest.fail(
                f"{shlex.join(command)[:200]} exited {done.returncode}:\n{done.stderr}\n"
                f"kit's journal:\n{tail}"
            )
        return done.stdout

    def python(self, script: str, *args: str, timeout: float = 60) -> Any:
        """Run a probe script with Debian's Python and return the JSON it prints."""
        return json.loads(self.run(PYTHON, "-c", script, *args, timeout=timeout))

    def show(self, *properties: str) -> dict[str, str]:
        """The unit's properties as `systemctl show` reports them."""
        out = self.run("systemctl", "show", "kit", *(f"--property={p}" for p in properties))
        return dict(line.split("=", 1) for line in out.splitlines())

    def write_env(self, worker_class: str = "sync") -> None:
        """Write /etc/kit/kit.env; the image created it empty, mode 0600, root's."""
        settings = {
            "SECRET_KEY": self.secret_key,
            "DATABASE_URL": DATABASE_URL,
            "GUNICORN_WORKER_CLASS": worker_class,
            "WEB_CONCURRENCY": str(WORKERS),
        }
        lines = "".join(f"{key}={value}\n" for key, value in settings.items())
        self.run("sh", "-c", "cat > /etc/kit/kit.env", stdin=lines)

    def configure(self, worker_class: str = "sync") -> None:
        """Write /etc/kit/kit.env and restart the unit, as its header says to after a change
        to that file (a reload would keep the master's environment)."""
        self.write_env(worker_class)
        # The tests start the unit more often than its StartLimitBurst= allows in
        # StartLimitIntervalSec=; an administrator's reset-failed clears that count.
        self.run("systemctl", "reset-failed", "kit")
        self.run("systemctl", "restart", "kit", timeout=90)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """Send one request to gunicorn from inside the container: [status, body]."""
        script = REQUEST + "print(json.dumps(send(*sys.argv[1:])))"
        return self.python(script, method, path, json.dumps(body) if body else "")

    def workers(self) -> set[int]:
        """The PIDs of the unit's gunicorn workers."""
        return set(self.python(WORKER_PIDS + "print(json.dumps(sorted(worker_pids())))"))

    def seccomp_modes(self, pids: set[int]) -> set[str]:
        """The Seccomp: field of each process's status (2: a system call filter applies)."""
        statuses = [f"/proc/{pid}/status" for pid in sorted(pids)]
        out = self.run("grep", "--no-filename", "^Seccomp:", *statuses)
        return {line.split()[1] for line in out.splitlines()}

    def journal_cursor(self) -> str:
        """Where the journal ends now."""
        out = self.run("journalctl", "--lines=0", "--show-cursor", "--quiet")
        return out.strip().removeprefix("-- cursor: ")

    def journal(self, after: str) -> str:
        """The unit's journal after `after` (gunicorn's lines and systemd's about it)."""
        self.run("journalctl", "--sync")
        return self.run(
            "journalctl", "--unit=kit", f"--after-cursor={after}", "--output=cat", "--no-pager"
        )


def base_build_args() -> list[str]:
    """The stand-in Debian where this engine has it (the `engine` fixture builds it under
    KIT_STANDIN_IMAGES=1), else the Dockerfile's default base, pulled from the registry."""
    if docker("image", "inspect", BASE, check=False, timeout=30).returncode == 0:
        return ["--build-arg", f"BASE={BASE}"]
    return []


def wait_for_boot(name: str, timeout: float = 60) -> None:
    """Wait until systemd in `name` has finished booting; fail with what it reports."""
    deadline, state = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        probe = ["exec", name, "systemctl", "is-system-running"]
        state = docker(*probe, check=False, timeout=30).stdout.strip()
        if state in {"running", "degraded"}:
            return
        if docker("inspect", "--format={{.State.Running}}", name, timeout=30).stdout != "true\n":
            break
        time.sleep(0.5)
    logs = docker("logs", name, check=False, timeout=30)
    pytest.fail(f"systemd did not boot (state {state!r}):\n{logs.stdout}{logs.stderr}")


@contextmanager
def booted_host() -> Iterator[Host]:
    """A booted container with kit installed by the unit's steps, enabled and started;
    removed when the block ends."""
    build = ["build", *base_build_args(), "--file", str(DOCKERFILE), "--tag", IMAGE, str(ROOT)]
    docker(*build, timeout=900)
    name = f"kit-systemd-{secrets.token_hex(4)}"
    try:
        docker("run", "--detach", "--name", name, *RUN_FLAGS, IMAGE, timeout=60)
        wait_for_boot(name)
        host = Host(name, secret_key=secrets.token_hex(32))
        # The remaining install steps, in the header's order: secrets, daemon-reload,
        # migration as `kit` (with the drop-in's StateDirectory=, which SQLite needs), enable.
        host.write_env()
        host.run("systemctl", "daemon-reload")
        migration = documented_migration()
        migration[1:1] = ["--property=StateDirectory=kit"]
        host.run(*migration, timeout=120)
        host.run("systemctl", "enable", "--now", "kit", timeout=90)
        yield host
    finally:
        docker("rm", "--force", "--volumes", name, check=False, timeout=60)
