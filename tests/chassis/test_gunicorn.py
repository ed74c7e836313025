"""The CPU count gunicorn's defaults come from (`chassis/serving/hooks.py`), and how
`gunicorn.conf.py` reads its settings: defaults, parsing, and one-line exits on bad values
(`chassis.settings.read_or_exit`)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chassis.settings import ServerSettings, Settings, read_or_exit
from harness.processes import ROOT


def test_available_cpus_follows_the_cpu_affinity() -> None:
    """A process pinned to one CPU (taskset, a cpuset) counts one, whatever the machine has.

    (The container CPU quota is checked on a real engine: tests/deploy/test_compose.py.)"""
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from chassis.serving.hooks import available_cpus; print(available_cpus())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout == "1\n"


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({}, id="missing"),
        pytest.param({"GUNICORN_TIMEOUT": "", "GUNICORN_PRELOAD": ""}, id="empty"),
        pytest.param({"GUNICORN_TIMEOUT": "   ", "GUNICORN_WORKER_CLASS": " "}, id="blank"),
    ],
)
def test_missing_or_empty_value_gives_the_default(environ: dict[str, str]) -> None:
    """An unset, empty or blank variable means the declared default."""
    server = ServerSettings.from_env(environ)
    assert (server.gunicorn_timeout, server.gunicorn_preload) == (30, False)
    assert (server.gunicorn_worker_class, server.bind) == ("sync", "127.0.0.1:8000")


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        pytest.param("GUNICORN_TIMEOUT", " 12 ", 12, id="integer"),
        pytest.param("GUNICORN_MAX_REQUESTS", "0", 0, id="integer-at-minimum"),
        pytest.param("GUNICORN_PRELOAD", "Yes", True, id="flag-true"),
        pytest.param("GUNICORN_PRELOAD", "off", False, id="flag-false"),
        pytest.param("GUNICORN_WORKER_CLASS", " GEvent ", "gevent", id="choice"),
        pytest.param("GUNICORN_BIND", "  0.0.0.0:8000\n", "0.0.0.0:8000", id="text-stripped"),
    ],
)
def test_good_value_is_parsed(name: str, raw: str, expected: object) -> None:
    """A valid value is read, with surrounding space and letter case ignored."""
    assert getattr(ServerSettings.from_env({name: raw}), name.lower()) == expected


@pytest.mark.parametrize(
    ("name", "raw", "message"),
    [
        pytest.param(
            "GUNICORN_TIMEOUT", "0", "GUNICORN_TIMEOUT: must be at least 1 (got '0')", id="zero"
        ),
        pytest.param(
            "GUNICORN_MAX_REQUESTS",
            "-1",
            "GUNICORN_MAX_REQUESTS: must be at least 0 (got '-1')",
            id="integer-negative",
        ),
        pytest.param(
            "WEB_CONCURRENCY",
            "many",
            "WEB_CONCURRENCY: must be a whole number (got 'many')",
            id="integer-not-a-number",
        ),
        pytest.param(
            "GUNICORN_KEEPALIVE",
            "1.5",
            "GUNICORN_KEEPALIVE: must be a whole number (got '1.5')",
            id="integer-fraction",
        ),
        pytest.param("PORT", "70000", "PORT: must be at most 65535 (got '70000')", id="port"),
        pytest.param(
            "GUNICORN_PRELOAD",
            "maybe",
            "GUNICORN_PRELOAD: must be one of 1, true, yes, on, 0, false, no, off (got 'maybe')",
            id="bad-flag",
        ),
        pytest.param(
            "GUNICORN_WORKER_CLASS",
            "eventlet",
            "GUNICORN_WORKER_CLASS: must be one of sync, gevent, gthread (got 'eventlet')",
            id="bad-choice",
        ),
    ],
)
def test_bad_value_exits_naming_the_variable(name: str, raw: str, message: str) -> None:
    """read_or_exit turns a bad value into SystemExit with one line naming the variable."""
    with pytest.raises(SystemExit) as excinfo:
        read_or_exit(lambda: ServerSettings.from_env({name: raw}))
    assert excinfo.value.code == f"configuration error: {message}"


def test_application_settings_errors_exit_naming_the_variable() -> None:
    """The app's settings go through the same reader and the same one-line exit."""
    with pytest.raises(SystemExit) as excinfo:
        read_or_exit(lambda: Settings.from_env({"LOG_FORMAT": "xml"}))
    assert excinfo.value.code == (
        "configuration error: LOG_FORMAT: must be one of json, text (got 'xml')"
    )
