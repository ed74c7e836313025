"""Golden fire times for every cron form docs/scheduler.md shows: a croniter release that reads one
of them differently fails here before it reaches a deployment (6.3 did, silently).

All times are UTC, counted by hand from Friday 2026-02-27 23:59:30: the 28th is a Saturday,
March 1st a Sunday, 2026 is not a leap year and 2028 is."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from chassis.scheduler.registry import Job
from harness.processes import ROOT

START = dt.datetime(2026, 2, 27, 23, 59, 30, tzinfo=dt.UTC)

GOLDEN = {
    "0 6 * * *": ["2026-02-28 06:00", "2026-03-01 06:00", "2026-03-02 06:00"],
    "*/15 * * * *": ["2026-02-28 00:00", "2026-02-28 00:15", "2026-02-28 00:30"],
    "0 9-17 * * 1-5": ["2026-03-02 09:00", "2026-03-02 10:00", "2026-03-02 11:00"],
    "30 2 1,15 * *": ["2026-03-01 02:30", "2026-03-15 02:30", "2026-04-01 02:30"],
    "0 0 13 * 5": ["2026-03-06 00:00", "2026-03-13 00:00", "2026-03-20 00:00"],
    "0 0 29 2 *": ["2028-02-29 00:00", "2032-02-29 00:00", "2036-02-29 00:00"],
    "0 0 L * *": ["2026-02-28 00:00", "2026-03-31 00:00", "2026-04-30 00:00"],
    "59/15 * * * *": ["2026-02-28 00:59", "2026-02-28 01:59", "2026-02-28 02:59"],
    "0 12 * * sun": ["2026-03-01 12:00", "2026-03-08 12:00", "2026-03-15 12:00"],
    "@hourly": ["2026-02-28 00:00", "2026-02-28 01:00", "2026-02-28 02:00"],
}


def documented_expressions() -> list[str]:
    """The expressions in docs/scheduler.md's table of cron forms."""
    page = ROOT / "docs" / "scheduler.md"
    after = page.read_text().split("| Expression | Runs |\n", 1)[1]
    table = after.split("\n\n", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", table, re.M)


def test_every_documented_form_has_golden_times() -> None:
    """docs/scheduler.md's table and this file list the same expressions."""
    assert documented_expressions() == list(GOLDEN)


@pytest.mark.parametrize("expression", list(GOLDEN))
def test_next_fire_times_are_the_golden_ones(expression: str) -> None:
    """A job on `expression` fires at the golden times after START, in order."""
    job = Job(name="golden", func=lambda run: None, cron=expression)
    times, when = [], START
    for _ in range(3):
        when = job.after(when)
        times.append(when.strftime("%Y-%m-%d %H:%M"))
    assert times == GOLDEN[expression]
