"""deploy/supervisor/kit.conf under a real supervisord: it serves the app with the settings
of the environment file, and `supervisorctl stop` ends gunicorn gracefully, not with SIGKILL.

The program section is used as shipped, with its paths moved to this checkout and a
temporary directory. Its `user=kit` becomes `nobody` when the tests run as root and nobody
can run this checkout's interpreter; otherwise the line is dropped (only root can switch
users, and a virtual environment made from an interpreter under /root is unreadable to
nobody), so the program runs as the test's own user.

Its environment file loader, deploy/supervisor/with-env-file, is held to systemd's
EnvironmentFile= in tests/deploy/test_systemd_env_file.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import secrets
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import programs
from harness.processes import ROOT, base_env, free_port, get, wait_until

PROGRAM = ROOT / "deploy" / "supervisor" / "kit.conf"
SUPERVISORD = ROOT / ".venv" / "bin" / "supervisord"
SUPERVISORCTL = ROOT / ".venv" / "bin" / "supervisorctl"
ALEMBIC = ROOT / ".venv" / "bin" / "alembic"
WORKERS = 2
# Bounds on each wait: supervisord's own stop wait (stopwaitsecs=45) plus a margin.
TIMEOUT = 60
# supervisord considers the program started after startsecs=5.
START_TIMEOUT = 20

SUPERVISORD_CONF = """\
[unix_http_server]
file={socket}
chmod=0700

[supervisord]
nodaemon=true
logfile={logs}/supervisord.log
pidfile={logs}/supervisord.pid
childlogdir={logs}
loglevel=info

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{socket}

[include]
files = {program}
"""


def run_as_user() -> str | None:
    """The user the program can run as here: nobody under root if it can, else None."""
    if os.geteuid() != 0 or programs.find("runuser") is None:
        return None
    try:
        pwd.getpwnam("nobody")
    except KeyError:
        return None
    python = str(ROOT / ".venv" / "bin" / "python")
    probe = ["runuser", "-u", "nobody", "--", python, "-c", "import gunicorn, app"]
    done = subprocess.run(probe, cwd=ROOT, capture_output=True, timeout=TIMEOUT)
    return "nobody" if done.returncode == 0 else None


@dataclass
class Supervisord:
    """A supervisord running deploy/supervisor/kit.conf, and the files it writes."""

    conf: Path
    logs: Path
    port: int
    user: str | None
    proc: subprocess.Popen[bytes] | None = None

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run supervisorctl against this supervisord."""
        return subprocess.run(
            [str(SUPERVISORCTL), "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=base_env(),
        )

    def log(self, name: str) -> str:
        """The text of one log file: supervisord.log, access.log or error.log."""
        path = self.logs / name
        return path.read_text(errors="replace") if path.exists() else ""

    def diagnostics(self) -> str:
        """Every log, for a failing assertion's message."""
        names = ("supervisord.log", "supervisord.out", "access.log", "error.log")
        return "\n".join(f"--- {name} ---\n{self.log(name)}" for name in names)

    def wait_serving(self) -> None:
        """Wait until every worker has booted and /healthz answers 200."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            assert self.proc is not None
            assert self.proc.poll() is None, self.diagnostics()
            if self.log("error.log").count("Worker ready (pid:") >= WORKERS:
                with contextlib.suppress(OSError):
                    if get(self.port, "/healthz", timeout=1)[0] == 200:
                        return
            time.sleep(0.1)
        raise AssertionError(f"kit not serving after {START_TIMEOUT}s:\n{self.diagnostics()}")

    def wait_state(self, state: str) -> None:
        """Wait until supervisorctl reports the program in `state`."""
        wait_until(
            lambda: state in self.ctl("status", "kit").stdout, START_TIMEOUT, self.diagnostics
        )


def installed_program(data: Path, logs: Path, env_file: Path, user: str | None) -> str:
    """kit.conf as installed here: this checkout for /srv/kit, temporary files elsewhere."""
    text = PROGRAM.read_text()
    text = text.replace("/srv/kit", str(ROOT)).replace("/etc/kit/kit.env", str(env_file))
    text = text.replace("/var/log/kit", str(logs))
    replacement = f"user={user}" if user else ""
    text, count = re.subn(r"(?m)^user=kit$", replacement, text)
    assert count == 1, "kit.conf must run the program as user=kit"
    return text


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Supervisord]:
    """supervisord running kit.conf on a migrated SQLite database, stopped afterwards."""
    user = run_as_user()
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    # Outside pytest's 0700 tmp_path, so that `nobody` can reach the database and secrets;
    # short, so the control socket's path fits in a Unix socket address.
    with tempfile.TemporaryDirectory(prefix="kit-sv-") as tmp:
        data = Path(tmp)
        database_url = f"sqlite:///{data / 'kit.db'}"
        subprocess.run(
            [str(ALEMBIC), "upgrade", "heads"],
            cwd=ROOT,
            env=base_env(DATABASE_URL=database_url),
            check=True,
            capture_output=True,
            timeout=TIMEOUT,
        )
        env_file = data / "kit.env"
        # The report's password, which stopped a shell loader: `$sw0rdTail` is not set.
        env_file.write_text(
            f"SECRET_KEY=pa$sw0rdTail{secrets.token_hex(32)}\n"
            f"DATABASE_URL={database_url}\n"
            f"GUNICORN_BIND=127.0.0.1:{port}\n"
            f"WEB_CONCURRENCY={WORKERS}\n"
        )
        env_file.chmod(0o640)
        if user:
            account = pwd.getpwnam(user)
            for path in [data, *data.iterdir()]:
                os.chown(path, account.pw_uid, account.pw_gid)
        program = tmp_path / "kit.conf"
        program.write_text(installed_program(data, logs, env_file, user))
        conf = tmp_path / "supervisord.conf"
        conf.write_text(
            SUPERVISORD_CONF.format(socket=data / "sv.sock", logs=logs, program=program)
        )
        supervisord = Supervisord(conf=conf, logs=logs, port=port, user=user)
        with (logs / "supervisord.out").open("wb") as out:
            supervisord.proc = subprocess.Popen(
                [str(SUPERVISORD), "-c", str(conf)],
                env=base_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            yield supervisord
        finally:
            stop_everything(supervisord)


def stop_everything(supervisord: Supervisord) -> None:
    """Stop supervisord, which stops kit first; if it hangs, kill kit's group and it."""
    proc = supervisord.proc
    assert proc is not None
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(TIMEOUT)
    except subprocess.TimeoutExpired:
        # supervisor made kit's master a process group leader; its workers are in that group.
        for pid in re.findall(r"spawned: 'kit' with pid (\d+)", supervisord.log("supervisord.log")):
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(int(pid)) == int(pid):
                    os.killpg(int(pid), signal.SIGKILL)
        proc.kill()
        proc.wait()


def test_supervised_kit_serves_with_env_file_settings(supervised: Supervisord) -> None:
    """The program serves on the env file's GUNICORN_BIND, as the configured user, and its
    JSON access log lands in the file supervisor writes."""
    supervised.wait_serving()

    status, _, body = get(supervised.port, "/readyz")
    assert (status, json.loads(body)["data"]) == (200, {"status": "ready"})

    pid = int(supervised.ctl("pid", "kit").stdout.strip())
    uid = os.stat(f"/proc/{pid}").st_uid
    expected = pwd.getpwnam(supervised.user).pw_uid if supervised.user else os.geteuid()
    assert uid == expected

    lines = [json.loads(line) for line in supervised.log("access.log").splitlines()]
    assert "/readyz" in [line["path"] for line in lines]


def test_supervisorctl_stop_lets_gunicorn_exit_cleanly(supervised: Supervisord) -> None:
    """`supervisorctl stop kit` sends TERM and gunicorn exits 0 within stopwaitsecs."""
    supervised.wait_serving()
    supervised.wait_state("RUNNING")

    stopped = supervised.ctl("stop", "kit")

    assert (stopped.returncode, stopped.stdout.strip()) == (0, "kit: stopped")
    assert "STOPPED" in supervised.ctl("status", "kit").stdout
    log = supervised.log("supervisord.log")
    assert "stopped: kit (exit status 0)" in log, supervised.diagnostics()
    assert "SIGKILL" not in log
    assert "Shutting down: Master" in supervised.log("error.log")
