"""`gunicorn.conf.py` resolves as documented for each worker class and environment.

The file reads `os.environ` when imported, so each case imports it in a fresh interpreter
with its own environment, and the test process's environment is never touched. (The gevent
pool sizing happens in the post_fork hook and is tested with real workers in
tests/test_gunicorn_serving.py.)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.processes import ROOT, Gunicorn, base_env, load_gunicorn_conf, resolve_gunicorn_conf

# 64 hex digits, the shape `secrets.token_hex(32)` produces.
GOOD_KEY = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def test_empty_environment_resolves_to_the_documented_defaults() -> None:
    """With nothing set: loopback:8000, sync with 2 x CPUs + 1 workers, logs to stdio."""
    resolved = resolve_gunicorn_conf()
    cpus = resolved.pop("cpus")
    assert resolved == {
        "wsgi_app": "app.wsgi:app",
        "bind": ["127.0.0.1:8000"],
        "worker_class": "sync",
        "workers": 2 * cpus + 1,
        "threads": 1,
        "worker_connections": 50,
        "timeout": 30,
        "graceful_timeout": 30,
        "keepalive": 75,
        "max_requests": 0,
        "max_requests_jitter": 0,
        "preload_app": False,
        "preload_refused": False,
        "forwarded_allow_ips": "127.0.0.1,::1",
        "worker_tmp_dir": "/dev/shm" if os.path.isdir("/dev/shm") else None,
        "accesslog": "-",
        "errorlog": "-",
        "logger_class": "chassis.serving.hooks.StructuredLogger",
        "control_socket_disable": True,
    }


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({"PORT": "9000"}, {"bind": ["127.0.0.1:9000"]}, id="port-on-loopback"),
        pytest.param(
            {"GUNICORN_BIND": "0.0.0.0:8080", "PORT": "9000"},
            {"bind": ["0.0.0.0:8080"]},
            id="bind-wins-over-port",
        ),
        pytest.param(
            {"GUNICORN_WORKER_CLASS": "gevent", "GUNICORN_WORKER_CONNECTIONS": "20"},
            {
                "worker_class": "chassis.serving.gevent_worker.GeventWorker",
                "worker_connections": 20,
            },
            id="gevent-worker-connections",
        ),
        pytest.param(
            {"GUNICORN_WORKER_CLASS": "gthread"},
            {"worker_class": "chassis.serving.gthread_worker.ThreadWorker", "threads": 4},
            id="gthread-four-threads",
        ),
        pytest.param(
            # gunicorn would serve a sync worker with threads as its own gthread worker.
            {"GUNICORN_WORKER_CLASS": "sync", "GUNICORN_THREADS": "8"},
            {"worker_class": "sync", "threads": 1},
            id="sync-ignores-threads",
        ),
        pytest.param(
            {"GUNICORN_WORKER_CLASS": "gthread", "GUNICORN_THREADS": "8"},
            {"threads": 8},
            id="gthread-threads-set",
        ),
        pytest.param(
            {"GUNICORN_PRELOAD": "true"},
            {"preload_app": True, "preload_refused": False},
            id="preload-under-sync",
        ),
        pytest.param(
            {"GUNICORN_PRELOAD": "true", "GUNICORN_WORKER_CLASS": "gevent"},
            {"preload_app": False, "preload_refused": True},
            id="preload-refused-under-gevent",
        ),
        pytest.param(
            {"GUNICORN_MAX_REQUESTS": "1000", "GUNICORN_MAX_REQUESTS_JITTER": "100"},
            {"max_requests": 1000, "max_requests_jitter": 100},
            id="max-requests",
        ),
        pytest.param(
            {"APP_ENV": "production", "SECRET_KEY": GOOD_KEY},
            {"wsgi_app": "app.wsgi:app"},
            id="production-with-key",
        ),
    ],
)
def test_environment_overrides_resolve(environ: dict[str, str], expected: dict[str, Any]) -> None:
    """Each variable sets the names it documents."""
    resolved = resolve_gunicorn_conf(**environ)
    assert {name: resolved[name] for name in expected} == expected


@pytest.mark.parametrize(
    ("worker_class", "per_cpu", "extra"),
    [
        pytest.param("sync", 2, 1, id="sync-2-per-cpu-plus-1"),
        pytest.param("gthread", 1, 1, id="gthread-1-per-cpu-plus-1"),
        pytest.param("gevent", 1, 0, id="gevent-1-per-cpu"),
    ],
)
def test_workers_default_from_available_cpus(worker_class: str, per_cpu: int, extra: int) -> None:
    """Without WEB_CONCURRENCY, each worker class derives its process count from the CPUs."""
    resolved = resolve_gunicorn_conf(GUNICORN_WORKER_CLASS=worker_class)
    assert resolved["workers"] == per_cpu * resolved["cpus"] + extra


@pytest.mark.parametrize(
    "worker_class",
    [
        pytest.param("sync", id="sync"),
        pytest.param("gthread", id="gthread"),
        pytest.param("gevent", id="gevent"),
    ],
)
def test_web_concurrency_sets_workers_for_every_worker_class(worker_class: str) -> None:
    """WEB_CONCURRENCY wins over the CPU-derived default whatever the worker class."""
    resolved = resolve_gunicorn_conf(GUNICORN_WORKER_CLASS=worker_class, WEB_CONCURRENCY="3")
    assert resolved["workers"] == 3


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        pytest.param({"GUNICORN_WORKER_CLASS": "eventlet"}, "GUNICORN_WORKER_CLASS", id="eventlet"),
        pytest.param({"WEB_CONCURRENCY": "0"}, "WEB_CONCURRENCY", id="zero-workers"),
        pytest.param({"WEB_CONCURRENCY": "many"}, "WEB_CONCURRENCY", id="word-workers"),
        pytest.param({"GUNICORN_TIMEOUT": "-1"}, "GUNICORN_TIMEOUT", id="negative-timeout"),
        pytest.param({"GUNICORN_THREADS": "0"}, "GUNICORN_THREADS", id="zero-threads"),
        pytest.param({"GUNICORN_PRELOAD": "maybe"}, "GUNICORN_PRELOAD", id="maybe-preload"),
        pytest.param({"PORT": "http"}, "PORT", id="word-port"),
        pytest.param({"APP_ENV": "production"}, "SECRET_KEY", id="production-no-key"),
        pytest.param({"LOG_FORMAT": "xml"}, "LOG_FORMAT", id="unknown-log-format"),
    ],
)
def test_bad_value_exits_with_one_line_naming_it(environ: dict[str, str], name: str) -> None:
    """A bad value stops the import with status 1 and one stderr line naming the variable."""
    result = load_gunicorn_conf(**environ)
    lines = result.stderr.splitlines()
    assert result.returncode == 1
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"configuration error: {name}:")


def test_real_gunicorn_refuses_unknown_worker_class() -> None:
    """`gunicorn -c gunicorn.conf.py` exits 1 with one line naming GUNICORN_WORKER_CLASS."""
    result = subprocess.run(
        [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        cwd=ROOT,
        env=base_env(GUNICORN_WORKER_CLASS="eventlet"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    lines = result.stderr.splitlines()
    assert result.returncode == 1
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: GUNICORN_WORKER_CLASS:")


def test_gunicorn_cmd_args_override_the_file(tmp_path: Path) -> None:
    """GUNICORN_CMD_ARGS="--workers 1" wins over the file, as the ready line reports."""
    env = base_env(
        GUNICORN_CMD_ARGS="--workers 1",
        LOG_FORMAT="json",
        DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
    )
    server = Gunicorn(tmp_path, env).start()
    try:
        messages = [line.get("message", "") for line in server.json_lines("stderr")]
    finally:
        server.stop()
    ready = [message for message in messages if message.startswith("ready: ")]
    assert len(ready) == 1, messages
    assert "workers=1" in ready[0].split()
