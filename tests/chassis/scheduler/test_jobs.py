"""chassis/scheduler/registry.py: declaring jobs and computing their scheduled times."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from chassis.scheduler import Registry, Run

UTC = dt.UTC


def at(hour: int, minute: int, second: int = 0, micro: int = 0) -> dt.datetime:
    """A time on 2026-11-21, UTC."""
    return dt.datetime(2026, 11, 21, hour, minute, second, micro, tzinfo=UTC)


def noop(run: Run) -> None:
    """A job that does nothing."""


def declared(seconds: float | None = None, expression: str | None = None) -> Registry:
    """A registry holding one job `j`, every `seconds` or at a cron `expression`."""
    registry = Registry()
    if seconds is not None:
        registry.every("j", seconds=seconds)(noop)
    else:
        registry.cron("j", str(expression))(noop)
    return registry


@pytest.mark.parametrize(
    ("schedule", "now", "latest", "after"),
    [
        pytest.param({"seconds": 1}, at(11, 7, 3, 500), at(11, 7, 3), at(11, 7, 4), id="every-1s"),
        pytest.param({"seconds": 60}, at(11, 7, 3), at(11, 7), at(11, 8), id="every-minute"),
        pytest.param({"seconds": 3600}, at(11, 7), at(11, 0), at(12, 0), id="every-hour"),
        pytest.param(
            {"expression": "*/5 * * * *"}, at(11, 7, 3), at(11, 5), at(11, 10), id="cron-5min"
        ),
        pytest.param(
            {"expression": "17 3 * * *"},
            at(11, 7),
            at(3, 17),
            dt.datetime(2026, 11, 22, 3, 17, tzinfo=UTC),
            id="cron-daily",
        ),
    ],
)
def test_scheduled_times(
    schedule: dict[str, Any], now: dt.datetime, latest: dt.datetime, after: dt.datetime
) -> None:
    """latest() is the last time at or before now; after() the first one after it."""
    job = declared(**schedule).jobs["j"]
    assert job.latest(now) == latest
    assert job.after(now) == after


def test_interval_times_are_the_same_in_every_process() -> None:
    """Intervals count from the epoch, not from when a process started."""
    job = declared(seconds=7).jobs["j"]
    assert job.latest(at(11, 7, 3)) == job.latest(at(11, 7, 3, 999_999))
    assert job.latest(at(11, 7, 3)).timestamp() % 7 == 0


def test_due_lists_every_time_in_between_oldest_first() -> None:
    """Times after `seen` up to `now`, none skipped, none repeated."""
    job = declared(seconds=1).jobs["j"]
    times = list(job.due(at(11, 7, 0), at(11, 7, 3, 200)))
    assert times == [at(11, 7, 1), at(11, 7, 2), at(11, 7, 3)]


def test_due_is_bounded() -> None:
    """A long gap yields at most `limit` times per call."""
    job = declared(seconds=1).jobs["j"]
    assert len(list(job.due(at(10, 0), at(11, 0), limit=100))) == 100


@pytest.mark.parametrize(
    ("declare", "message"),
    [
        pytest.param(lambda r: r.cron("bad", "61 * * * *"), "invalid cron", id="bad-cron"),
        pytest.param(lambda r: r.every("fast", seconds=0.5), "at least one second", id="fast"),
        pytest.param(
            lambda r: r.every("short", seconds=5, lease_seconds=0.1), "lease", id="short-lease"
        ),
    ],
)
def test_bad_declarations_fail_at_import(declare: object, message: str) -> None:
    """A schedule that cannot work is refused where it is declared."""
    with pytest.raises(ValueError, match=message):
        declare(Registry())  # type: ignore[operator]


def test_a_name_is_declared_once() -> None:
    """Two jobs with one name would share one lock: refused."""
    registry = declared(seconds=5)
    with pytest.raises(ValueError, match="declared twice"):
        registry.every("j", seconds=10)


def test_decorator_returns_the_function() -> None:
    """Declaring leaves the function callable as it was."""
    registry = Registry()
    assert registry.every("j", seconds=5)(noop) is noop
    assert registry.jobs["j"].func is noop


def test_kit_jobs_are_declared() -> None:
    """The kit's own registry holds the history purge (the example to copy)."""
    from app.jobs import jobs

    assert jobs.jobs["purge-job-history"].cron == "17 3 * * *"
