"""Draw bench/run.py's report as one PNG: every row of its tables and each target's verdict,
with the date and the machine in the title.

`draw(report)` builds the figure from the numbers alone, so a test can draw fixed ones;
`write_png(report, path)` renders it with matplotlib's Agg backend, which needs no display,
creating the directory it goes in. Panels: /healthz throughput (kit against bare, sync
against gevent, direct against nginx), the database rows, each worker's memory, the cold
starts, and the verdicts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

if TYPE_CHECKING:
    # For types only: bench/run.py imports this module to draw its report.
    from bench.report import Report, Run

# One colour per side of a comparison, the same in every panel.
COLOURS = {
    "bare": "#9e9e9e",
    "kit": "#1f77b4",
    "nginx": "#2ca02c",
    "sync": "#ff7f0e",
    "gevent": "#9467bd",
}
MET, NOT_MET = "#2e7d32", "#c62828"
SMALL = 8


def bars(
    axes: Axes,
    title: str,
    unit: str,
    labels: Sequence[str],
    values: Sequence[float],
    notes: Sequence[str],
    colours: Sequence[str],
) -> None:
    """Horizontal bars, the first label on top, each bar's note written at its end."""
    axes.set_title(title, loc="left", fontsize=10)
    if not labels:
        axes.text(0.5, 0.5, "not run", ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()
        return
    positions = list(range(len(labels)))
    axes.barh(positions, values, color=colours)
    axes.set_yticks(positions, labels, fontsize=SMALL)
    axes.invert_yaxis()
    for position, value, note in zip(positions, values, notes, strict=True):
        axes.text(value, position, f" {note}", va="center", fontsize=SMALL)
    # Room on the right for the notes.
    axes.set_xlim(0, max(max(values), 1e-9) * 1.6)
    axes.set_xlabel(unit, fontsize=SMALL)
    axes.tick_params(axis="x", labelsize=SMALL)
    axes.grid(axis="x", alpha=0.3)


def throughput(axes: Axes, title: str, runs: Sequence[Run]) -> None:
    """req/s of each run, with p99 and any errors in its note."""
    notes = []
    for run in runs:
        errors = run.socket_errors + run.non_2xx
        notes.append(
            f"{run.rps:.0f} req/s, p99 {run.p99_ms:.1f} ms"
            + (f", {errors} errors" if errors else "")
        )
    bars(
        axes,
        title,
        "requests per second",
        [run.label for run in runs],
        [run.rps for run in runs],
        notes,
        [COLOURS.get(run.variant, "black") for run in runs],
    )


def draw(report: Report) -> Figure:
    """The whole report as one figure."""
    figure = Figure(figsize=(16, 12), layout="constrained")
    FigureCanvasAgg(figure)
    figure.suptitle(f"make bench, {report.date}: {report.machine}", fontsize=13)
    grid = figure.add_gridspec(3, 2, height_ratios=(4, 3, 3))
    throughput(
        figure.add_subplot(grid[0, 0]),
        "/healthz: kit against bare, sync against gevent, direct against nginx",
        [run for run in report.runs if run.row in ("healthz", "nginx")],
    )
    throughput(
        figure.add_subplot(grid[0, 1]),
        "50 ms inside PostgreSQL per request: sync against gevent",
        [run for run in report.runs if run.row == "database"],
    )
    measured = [run for run in report.runs if run.row == "healthz"]
    bars(
        figure.add_subplot(grid[1, 0]),
        "Memory of each worker after its /healthz load run (PSS; bar: the largest)",
        "MiB",
        [run.label for run in measured],
        [max(run.pss_mib) for run in measured],
        [", ".join(f"{mib:.1f}" for mib in run.pss_mib) + " MiB" for run in measured],
        [COLOURS.get(run.variant, "black") for run in measured],
    )
    bars(
        figure.add_subplot(grid[1, 1]),
        "Cold start to the first 200 on /healthz, 1 worker (bar: the median)",
        "seconds",
        [f"{cold.app}, {cold.worker_class}" for cold in report.cold_starts],
        [cold.median for cold in report.cold_starts],
        [
            f"{cold.median:.2f} s (each: {', '.join(f'{s:.2f}' for s in cold.seconds)})"
            for cold in report.cold_starts
        ],
        [COLOURS.get(cold.app, "black") for cold in report.cold_starts],
    )
    verdicts = figure.add_subplot(grid[2, :])
    verdicts.set_axis_off()
    verdicts.set_title("Targets", loc="left", fontsize=10)
    for index, target in enumerate(report.targets):
        verdicts.text(
            0,
            1 - (index + 0.5) / max(len(report.targets), 10),
            target.line(),
            color=MET if target.met else NOT_MET,
            fontsize=9,
            va="center",
            transform=verdicts.transAxes,
        )
    return figure


def write_png(report: Report, path: Path) -> None:
    """Draw `report` into a PNG at `path`, its title also in the file's metadata."""
    path.parent.mkdir(parents=True, exist_ok=True)
    title = f"make bench, {report.date}: {report.machine}"
    draw(report).savefig(path, format="png", dpi=100, metadata={"Title": title})
