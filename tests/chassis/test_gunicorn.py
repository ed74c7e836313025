"""`chassis/gunicorn.py`: the CPU count gunicorn's defaults come from, and environment readers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from chassis.gunicorn import Env, available_cpus
from tests.processes import ROOT

Read = Callable[[Env], object]


def test_available_cpus_follows_the_cpu_affinity() -> None:
    """A process pinned to one CPU (taskset, a cpuset) counts one, whatever the machine has.

    (The container CPU quota is checked on a real engine: tests/deploy/test_compose.py.)"""
    code = (
        "import os; os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}); "
        "from chassis.gunicorn import available_cpus; print(available_cpus())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert done.stdout == "1\n"


def test_available_cpus_is_never_more_than_the_affinity() -> None:
    """Unpinned, the count is the CPUs this process may run on, at most."""
    assert 1 <= available_cpus() <= len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({}, id="missing"),
        pytest.param({"NAME": ""}, id="empty"),
        pytest.param({"NAME": "   "}, id="blank"),
    ],
)
@pytest.mark.parametrize(
    ("read", "default"),
    [
        pytest.param(lambda env: env.integer("NAME", 7, minimum=1), 7, id="integer"),
        pytest.param(lambda env: env.flag("NAME", True), True, id="flag"),
        pytest.param(lambda env: env.choice("NAME", ("a", "b"), "b"), "b", id="choice"),
        pytest.param(lambda env: env.text("NAME", "fallback"), "fallback", id="text"),
    ],
)
def test_missing_or_empty_value_gives_the_default(
    environ: dict[str, str], read: Read, default: object
) -> None:
    """An unset, empty or blank variable means the reader's default."""
    assert read(Env(environ)) == default


@pytest.mark.parametrize(
    ("read", "raw", "expected"),
    [
        pytest.param(lambda env: env.integer("NAME", 7, minimum=1), " 12 ", 12, id="integer"),
        pytest.param(lambda env: env.integer("NAME", 7), "0", 0, id="integer-at-minimum"),
        pytest.param(lambda env: env.flag("NAME", False), "Yes", True, id="flag-true"),
        pytest.param(lambda env: env.flag("NAME", True), "off", False, id="flag-false"),
        pytest.param(lambda env: env.choice("NAME", ("a", "b"), "b"), " A ", "a", id="choice"),
    ],
)
def test_good_value_is_parsed(read: Read, raw: str, expected: object) -> None:
    """A valid value is read, with surrounding space and letter case ignored."""
    assert read(Env({"NAME": raw})) == expected


@pytest.mark.parametrize(
    ("read", "raw", "message"),
    [
        pytest.param(
            lambda env: env.integer("NAME", 7, minimum=1),
            "0",
            "configuration error: NAME: must be at least 1 (got 0)",
            id="integer-below-minimum",
        ),
        pytest.param(
            lambda env: env.integer("NAME", 7),
            "-1",
            "configuration error: NAME: must be at least 0 (got -1)",
            id="integer-negative",
        ),
        pytest.param(
            lambda env: env.integer("NAME", 7),
            "many",
            "configuration error: NAME: must be a whole number (got 'many')",
            id="integer-not-a-number",
        ),
        pytest.param(
            lambda env: env.integer("NAME", 7),
            "1.5",
            "configuration error: NAME: must be a whole number (got '1.5')",
            id="integer-fraction",
        ),
        pytest.param(
            lambda env: env.flag("NAME", False),
            "maybe",
            "configuration error: NAME: must be one of 1, true, yes, on, 0, false, no, off "
            "(got 'maybe')",
            id="bad-flag",
        ),
        pytest.param(
            lambda env: env.choice("NAME", ("sync", "gevent"), "sync"),
            "eventlet",
            "configuration error: NAME: must be one of sync, gevent (got 'eventlet')",
            id="bad-choice",
        ),
    ],
)
def test_bad_value_exits_naming_the_variable(read: Read, raw: str, message: str) -> None:
    """A bad value raises SystemExit whose one-line message names the variable."""
    with pytest.raises(SystemExit) as excinfo:
        read(Env({"NAME": raw}))
    assert excinfo.value.code == message


def test_text_strips_surrounding_space() -> None:
    """Env.text returns the value without leading or trailing whitespace."""
    assert Env({"NAME": "  0.0.0.0:8000\n"}).text("NAME", "127.0.0.1:8000") == "0.0.0.0:8000"


def test_settings_errors_exit_naming_the_variable() -> None:
    """Env.settings turns an invalid application setting into a SystemExit naming it."""
    with pytest.raises(SystemExit) as excinfo:
        Env({"LOG_FORMAT": "xml"}).settings()
    assert excinfo.value.code == (
        "configuration error: LOG_FORMAT: must be one of json, text (got 'xml')"
    )
