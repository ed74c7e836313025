"""Declaring jobs: a name, a schedule (cron expression or fixed interval) and a function."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, TypedDict, Unpack

from croniter import croniter
from sqlalchemy.orm import Session

# After downtime: "latest" runs the most recent missed time once, "skip" runs none of them.
CatchUp = Literal["latest", "skip"]
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


@dataclass(frozen=True)
class Run:
    """What a job function receives: its scheduled time, a session, and which attempt.

    The contract of `session` (the job's own, on the scheduler's connections; `get_session()`
    in the job returns it too): what the job writes through it commits when the job returns,
    in one transaction with the run's outcome, and only while this process still holds the
    run. A holder that lost the run (stalled past its lease, so another process took it
    over) has its whole transaction rolled back. A job may commit in steps; each commit is
    checked the same way and raises `LeaseLost` when the run is gone. Effects outside this
    database (HTTP calls, e-mail, files, another database) cannot be fenced: make them
    idempotent, keyed by `scheduled_at`, or write them as rows here and act on them once
    committed. On SQLite the session takes the database's one write lock at its first write
    and keeps it until that transaction ends, so write late or commit in steps.
    """

    scheduled_at: dt.datetime
    session: Session
    attempt: int
    tracking_id: str


JobFunc = Callable[[Run], None]


@dataclass(frozen=True)
class Job:
    """One declared job. Times are UTC; an interval counts from the Unix epoch, so every
    process computes the same scheduled times."""

    name: str
    func: JobFunc
    every: dt.timedelta | None = None
    cron: str | None = None
    # A holder that stops renewing (crashed, killed, cut off) loses the run after this long.
    lease: dt.timedelta = dt.timedelta(seconds=60)
    # Takeovers after a holder died; then the time is marked abandoned, not retried forever.
    max_attempts: int = 3
    catch_up: CatchUp = "latest"

    def __post_init__(self) -> None:
        if (self.every is None) == (self.cron is None):
            raise ValueError(f"job {self.name!r}: give exactly one of every= or cron=")
        if self.every is not None and self.every < dt.timedelta(seconds=1):
            raise ValueError(f"job {self.name!r}: every= must be at least one second")
        if self.cron is not None and not croniter.is_valid(self.cron):
            raise ValueError(f"job {self.name!r}: invalid cron expression {self.cron!r}")
        if self.lease < dt.timedelta(seconds=1):
            raise ValueError(f"job {self.name!r}: lease must be at least one second")

    def latest(self, now: dt.datetime) -> dt.datetime:
        """The most recent scheduled time at or before `now`."""
        if self.every is not None:
            return now - (now - EPOCH) % self.every
        previous: dt.datetime = croniter(str(self.cron), now).get_prev(dt.datetime)
        return previous

    def after(self, when: dt.datetime) -> dt.datetime:
        """The first scheduled time strictly after `when`."""
        if self.every is not None:
            return self.latest(when) + self.every
        following: dt.datetime = croniter(str(self.cron), when).get_next(dt.datetime)
        return following

    def due(self, seen: dt.datetime, now: dt.datetime, limit: int = 100) -> Iterator[dt.datetime]:
        """Scheduled times after `seen` up to `now`, oldest first, at most `limit`."""
        when = self.after(seen)
        for _ in range(limit):
            if when > now:
                return
            yield when
            when = self.after(when)


class JobOptions(TypedDict, total=False):
    """The options `every` and `cron` share (see `Registry`)."""

    lease_seconds: float
    max_attempts: int
    catch_up: CatchUp


class Registry:
    """The jobs a scheduler runs, declared with the `every` and `cron` decorators.

    `lease_seconds`: how long a silent holder keeps a run (renewed every third of it while
    the job runs). `max_attempts`: runs whose holders died this often are abandoned.
    `catch_up`: after downtime, run the latest missed time once ("latest") or not ("skip").
    """

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}

    def every(
        self, name: str, *, seconds: float, **options: Unpack[JobOptions]
    ) -> Callable[[JobFunc], JobFunc]:
        """Declare `name` to run every `seconds`, counted from the Unix epoch."""
        return self._declare(name, dt.timedelta(seconds=seconds), None, **options)

    def cron(
        self, name: str, expression: str, **options: Unpack[JobOptions]
    ) -> Callable[[JobFunc], JobFunc]:
        """Declare `name` to run at the times of a cron `expression`, in UTC."""
        return self._declare(name, None, expression, **options)

    def _declare(
        self,
        name: str,
        every: dt.timedelta | None,
        cron: str | None,
        lease_seconds: float = 60,
        max_attempts: int = 3,
        catch_up: CatchUp = "latest",
    ) -> Callable[[JobFunc], JobFunc]:
        # Built (and so validated) now, where the job is declared; the function comes next.
        lease = dt.timedelta(seconds=lease_seconds)
        job = Job(name, _pending, every, cron, lease, max_attempts, catch_up)
        if name in self.jobs:
            raise ValueError(f"job {name!r} is declared twice")

        def register(func: JobFunc) -> JobFunc:
            self.jobs[job.name] = dataclasses.replace(job, func=func)
            return func

        return register


def _pending(run: Run) -> None:
    """Placeholder until the decorator receives the function (validation runs first)."""
    raise NotImplementedError
