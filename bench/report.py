"""What `make bench` (bench/run.py) reports: each load run and cold start, each target with
its verdict, and the notes beside them, printed as Markdown tables (bench/plot.py draws
the same report)."""

from __future__ import annotations

import os
import shlex
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Run:
    """One wrk run, and each gunicorn worker's PSS right after it."""

    row: str  # the --rows name it belongs to
    variant: str  # its side of the comparison: bare or kit, nginx, sync or gevent
    label: str
    rps: float
    p99_ms: float
    socket_errors: int  # wrk's connect, read, write and timeout errors
    non_2xx: int  # answers with a status outside 2xx and 3xx
    pss_mib: tuple[float, ...]
    # CPU seconds per request, by process (gunicorn, PostgreSQL, wrk), where measured.
    cpu_per_request: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ColdStart:
    """Seconds from launching gunicorn (one worker) to the first 200 on /healthz."""

    app: str  # bare or kit
    worker_class: str
    seconds: tuple[float, ...]  # one per launch

    @property
    def median(self) -> float:
        """The median launch."""
        return statistics.median(self.seconds)


@dataclass(frozen=True)
class Target:
    """One target: what is measured, its value as printed, the target, and the verdict."""

    what: str
    value: str
    target: str
    met: bool

    def line(self) -> str:
        """The target as printed: `what: value (target ...): met`."""
        return (
            f"{self.what}: {self.value} (target {self.target}): {'met' if self.met else 'not met'}"
        )


@dataclass
class Report:
    """Everything one benchmark measured: what the tables, the verdicts and the plot show."""

    date: str
    machine: str
    runs: list[Run] = field(default_factory=list)  # those the table shows
    # The other runs of each comparison's pairs, which only the errors target counts.
    unshown: list[Run] = field(default_factory=list)
    cold_starts: list[ColdStart] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    # Lines printed beside the targets: other ratios worth knowing, rows skipped and why.
    notes: list[str] = field(default_factory=list)


def ratio(what: str, value: float, limit: float, shown: str) -> Target:
    """A target of at least `limit`, the value shown as `shown = value`."""
    return Target(what, f"{shown} = {value:.2f}", f">= {limit:.2f}", value >= limit)


def median_run(runs: list[Run]) -> Run:
    """The run with the median throughput (the upper one of an even count)."""
    return sorted(runs, key=lambda run: run.rps)[len(runs) // 2]


def pairs_shown(shown: str, ratios: list[float]) -> str:
    """`shown`, qualified as the median of the pairs' ratios, each listed."""
    if len(ratios) == 1:
        return shown
    each = ", ".join(f"{value:.2f}" for value in ratios)
    return f"{shown}, median of {len(ratios)} pairs ({each})"


def cpu_share_note(what: str, run: Run, other: Run) -> str:
    """The CPU each request cost in `run` and in `other`, and the throughput ratio that the
    two would have if the cores were the limit: `other`'s CPU per request over `run`'s.

    With wrk, gunicorn (and nginx) on the same cores, a /healthz run keeps them busy, so
    this ratio is what a quiet machine would measure; the req/s ratio adds the noise of
    whatever else ran."""
    cores = len(os.sched_getaffinity(0))

    def spent(measured: Run) -> str:
        total = sum(measured.cpu_per_request.values())
        parts = " + ".join(
            f"{seconds * 1e6:.0f} us {name}" for name, seconds in measured.cpu_per_request.items()
        )
        return f"{parts} = {total * 1e6:.0f} us (cores busy {measured.rps * total / cores:.0%})"

    ratio_cpu = sum(other.cpu_per_request.values()) / sum(run.cpu_per_request.values())
    return (
        f"{what}: CPU per request {spent(run)} against {spent(other)}: "
        f"{ratio_cpu:.2f} where the cores are the limit"
    )


def errors_target(runs: list[Run]) -> Target:
    """No socket error and no non-2xx/3xx answer in any load run."""
    sockets = sum(run.socket_errors for run in runs)
    statuses = sum(run.non_2xx for run in runs)
    return Target(
        "errors",
        f"{sockets} socket errors, {statuses} non-2xx/3xx answers in {len(runs)} load runs",
        "0 in every run",
        sockets == statuses == 0,
    )


def show(report: Report, plot: Path) -> None:
    """Print the load runs and cold starts as Markdown tables, then the targets' verdicts."""
    print("Throughput, memory and cold start, kit against bare Flask (bench/bare.py), 127.0.0.1.")
    print(f"{report.date}; {report.machine}\n")
    if report.runs:
        print("| run | req/s | p99 ms | socket errors | non-2xx/3xx | worker PSS MiB |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for run in report.runs:
            pss = ", ".join(f"{mib:.1f}" for mib in run.pss_mib)
            print(
                f"| {run.label} | {run.rps:.0f} | {run.p99_ms:.1f} | {run.socket_errors} "
                f"| {run.non_2xx} | {pss} |"
            )
        print()
    if report.cold_starts:
        print("| cold start to the first 200, 1 worker | median s | each launch s |")
        print("| --- | ---: | ---: |")
        for cold in report.cold_starts:
            each = ", ".join(f"{s:.2f}" for s in cold.seconds)
            print(f"| {cold.app}, {cold.worker_class} | {cold.median:.2f} | {each} |")
        print()
    for note in report.notes:
        print(f"- {note}")
    for target in report.targets:
        print(f"- {target.line()}")
    print(f"\nplot: {shown(plot)}")
    executable = Path(sys.executable)
    command = [str(shown(executable)), "bench/run.py", *sys.argv[1:]]
    print(f"command: {shlex.join(command)}")


def shown(path: Path) -> Path:
    """`path` relative to the checkout when inside it, so no machine's paths are printed."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
