"""Real gunicorn processes for tests and benchmarks: start on a free loopback port, wait,
read logs, stop."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T")

# The tracking id of wait_ready's probes, so log assertions can leave them out.
PROBE = {"X-Tracking-ID": "readiness-probe"}


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Callable[[], bool], timeout: float, failure: str | Callable[[], str]) -> None:
    """Poll `check` every 0.2 s until it holds; after `timeout` seconds fail with `failure`
    (a message, or a function that reads the logs worth showing)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(failure if isinstance(failure, str) else failure())
        time.sleep(0.2)


def base_env(**overrides: str) -> dict[str, str]:
    """An environment with only what a server needs: PATH, HOME and the given variables.

    FLASK_SKIP_DOTENV=1 too: every entry point reads a `.env` it finds (chassis/settings/
    declaring.py), and a developer's own, in the checkout, must not change what is tested
    or measured."""
    env = {k: v for k, v in os.environ.items() if k in {"PATH", "HOME", "LANG", "TMPDIR"}}
    env["FLASK_SKIP_DOTENV"] = "1"
    env.update(overrides)
    return env


def request(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, dict[str, str], bytes]:
    """Send one request to 127.0.0.1:`port` (JSON body if any); return status, headers, body."""
    sent = {"Content-Type": "application/json", **(headers or {})} if body else headers or {}
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=sent)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


def get(
    port: int, path: str, headers: dict[str, str] | None = None, timeout: float = 10
) -> tuple[int, dict[str, str], bytes]:
    """GET `path` from 127.0.0.1:`port`; return status, headers and body."""
    return request(port, "GET", path, headers=headers, timeout=timeout)


# What the resolution helpers report from gunicorn.conf.py.
GUNICORN_CONF_NAMES = (
    "wsgi_app",
    "bind",
    "worker_class",
    "workers",
    "threads",
    "worker_connections",
    "timeout",
    "graceful_timeout",
    "keepalive",
    "max_requests",
    "max_requests_jitter",
    "preload_app",
    "preload_refused",
    "forwarded_allow_ips",
    "worker_tmp_dir",
    "accesslog",
    "errorlog",
    "logger_class",
    "control_socket_disable",
)

# Runs in the child: import the file as gunicorn does, then report what it resolved, the
# pool variables it may have set, and the CPU count its worker defaults were computed from.
RESOLVE = f"""
import json, os, runpy
from chassis.serving.hooks import available_cpus
conf = runpy.run_path("gunicorn.conf.py")
resolved = {{name: conf[name] for name in {GUNICORN_CONF_NAMES!r}}}
resolved["cpus"] = available_cpus()
print(json.dumps(resolved))
"""


def load_gunicorn_conf(**environ: str) -> subprocess.CompletedProcess[str]:
    """Import gunicorn.conf.py in a fresh interpreter with only `environ` set."""
    return subprocess.run(
        [sys.executable, "-c", RESOLVE],
        cwd=ROOT,
        env=base_env(**environ),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def resolve_gunicorn_conf(**environ: str) -> dict[str, Any]:
    """The names gunicorn.conf.py resolves under `environ` (fails if the import fails)."""
    result = load_gunicorn_conf(**environ)
    assert result.returncode == 0, result.stderr
    resolved: dict[str, Any] = json.loads(result.stdout)
    return resolved


@dataclass
class Gunicorn:
    """One gunicorn master started with `gunicorn -c gunicorn.conf.py`, as the image runs it."""

    log_dir: Path
    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    # The checkout it serves (a test may serve a changed copy of this one).
    cwd: Path = ROOT

    def start(self, wait: bool = True, timeout: float = 20) -> Gunicorn:
        """Start the master; with `wait`, return once /healthz answers."""
        env = {"GUNICORN_BIND": f"127.0.0.1:{self.port}", **self.env}
        cmd = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", *self.args]
        # Files, not pipes: a chatty server can never block on a full pipe.
        with (
            (self.log_dir / "stdout.log").open("wb") as out,
            (self.log_dir / "stderr.log").open("wb") as err,
        ):
            self.proc = subprocess.Popen(cmd, cwd=self.cwd, env=env, stdout=out, stderr=err)
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 20) -> None:
        """Wait until every worker has booted (a signal sent earlier could be lost) and
        /healthz answers 200; fail with the logs if the master dies."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"gunicorn exited {self.proc.returncode}:\n{self.stderr()}")
            try:
                # How many workers gunicorn.conf.py resolved: the master's "ready:" line.
                log = self.stderr()
                resolved = re.search(r"ready: .*?\bworkers=(\d+)", log)
                booted = resolved is not None and log.count("Worker ready (pid:") >= int(
                    resolved.group(1)
                )
                if booted and get(self.port, "/healthz", PROBE, timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"gunicorn not ready after {timeout}s:\n{self.stderr()}")

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> int:
        """Send `sig` to the master and return its exit status; fail if it outlives `timeout`."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"gunicorn still running {timeout}s after {sig.name}:\n{self.stderr()}"
                ) from None
        return self.proc.returncode

    def stdout(self) -> str:
        """Everything the server wrote to stdout so far."""
        return (self.log_dir / "stdout.log").read_text(errors="replace")

    def stderr(self) -> str:
        """Everything the server wrote to stderr so far."""
        return (self.log_dir / "stderr.log").read_text(errors="replace")

    def json_lines(self, stream: str = "stdout") -> list[dict[str, Any]]:
        """Parse every line of `stream` as JSON (fails on the first line that is not),
        leaving out the lines of wait_ready's probes."""
        text = self.stdout() if stream == "stdout" else self.stderr()
        lines = [json.loads(line) for line in text.split("\n") if line.strip()]
        return [line for line in lines if line.get("tracking_id") != PROBE["X-Tracking-ID"]]


SLEEPY = "harness.apps.sleepy:app"


def serve_test_app(directory: Path, worker_class: str, **env: str) -> Gunicorn:
    """Start the test app (harness/apps/sleepy.py) under gunicorn.conf.py: `worker_class`,
    two workers, JSON logs, SQLite in `directory`, and `env` on top."""
    values = {
        "GUNICORN_WORKER_CLASS": worker_class,
        "WEB_CONCURRENCY": "2",
        "LOG_FORMAT": "json",
        "DATABASE_URL": f"sqlite:///{directory / 'app.db'}",
        **env,
    }
    return Gunicorn(directory, base_env(**values), args=[SLEEPY]).start()


class Load:
    """GET `path` from 127.0.0.1:`port` on a few threads until stopped (30 s at most);
    every outcome counted: a status, or the name of the error."""

    def __init__(
        self,
        port: int,
        path: str = "/healthz",
        threads: int = 4,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.port, self.path, self.headers = port, path, headers
        self.stopping = threading.Event()
        self.outcomes: list[int | str] = []
        self.threads = [threading.Thread(target=self._run) for _ in range(threads)]

    def _run(self) -> None:
        deadline = time.monotonic() + 30  # bounded even if never stopped
        while not self.stopping.is_set() and time.monotonic() < deadline:
            try:
                self.outcomes.append(get(self.port, self.path, self.headers, timeout=10)[0])
            except OSError as exc:
                self.outcomes.append(type(exc).__name__)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join()


def in_parallel(count: int, call: Callable[[int], T]) -> list[T]:
    """Run `call(0..count-1)` on `count` threads at once; return the results in order."""
    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(call, range(count)))
