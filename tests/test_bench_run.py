"""bench/run.py (`make bench`) measures each row, prints its tables and each target's
verdict, and draws them (bench/plot.py).

No number is compared with a target here: on a shared machine that would fail at random.
The plot is drawn from fixed numbers; one short real run (1 s per load run, the nginx and
cold-start rows) checks that every measurement is taken, printed and drawn.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from matplotlib.image import imread
from matplotlib.text import Text

from bench.plot import draw, write_png
from bench.progress import LINE
from bench.report import ColdStart, Report, Run, Target
from harness import programs
from harness.processes import ROOT, base_env

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# One load run's table row: label, req/s, p99 ms, socket errors, non-2xx/3xx, worker PSS.
TABLE_ROW = re.compile(r"^\| (.+?) \| (\d+) \| ([\d.]+) \| (\d+) \| (\d+) \| ([\d., ]+) \|$", re.M)
# One cold start's row: app and worker class, median, each launch.
COLD_ROW = re.compile(r"^\| (\w+, \w+) \| ([\d.]+) \| ([\d., ]+) \|$", re.M)
# One target's line: what, its value, the target, the verdict.
VERDICT = re.compile(r"^- (.+?): (.+) \(target (.+)\): (met|not met)$", re.M)

REPORT = Report(
    date="2026-12-01",
    machine="Intel(R) Xeon(R) Processor x 2, Python 3.11.7",
    runs=[
        Run("healthz", "bare", "bare /healthz, sync, c=50", 4708, 14.4, 0, 0, (38.1, 38.3)),
        Run("healthz", "kit", "kit /healthz, sync, c=50", 4356, 15.2, 0, 0, (45.0, 45.2)),
        Run("healthz", "bare", "bare /healthz, gevent, c=50", 6397, 141.5, 0, 0, (52.0, 52.4)),
        Run("healthz", "kit", "kit /healthz, gevent, c=50", 5294, 576.3, 0, 0, (60.2, 60.9)),
        Run("nginx", "kit", "kit /healthz, sync, c=50, direct", 4300, 15.0, 0, 0, (45.1, 45.0)),
        Run("nginx", "nginx", "kit /healthz, sync, c=50, through nginx", 3900, 18, 0, 0, (45.3,)),
        Run("database", "sync", "pg_sleep 50 ms, sync, c=200", 38, 5000.0, 0, 0, (47.0, 47.1)),
        Run("database", "gevent", "pg_sleep 50 ms, gevent, c=200", 589, 132.7, 3, 2, (70.2,)),
    ],
    cold_starts=[
        ColdStart("bare", "sync", (0.71, 0.69, 0.74)),
        ColdStart("kit", "sync", (0.93, 0.90, 1.02)),
    ],
    targets=[
        Target("/healthz, sync", "kit / bare = 0.93", ">= 0.95", False),
        Target("worker PSS, sync", "largest kit worker - largest bare worker = +6.9 MiB",
               "<= +10 MiB", True),
        Target("cold start, kit, sync", "median of 3 = 0.93 s", "<= 1.0 s", True),
    ],
)  # fmt: skip


def test_plot_is_a_png_of_every_row_dated_and_naming_the_machine(tmp_path: Path) -> None:
    """write_png creates the directory and a PNG matplotlib reads back; the figure shows the
    date, the machine, each run and each target's verdict."""
    path = tmp_path / "docs" / "bench.png"
    write_png(REPORT, path)
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    assert len(data) > 50_000
    height, width, _ = imread(path).shape
    assert (width, height) == (1600, 1200)
    texts = [text.get_text() for text in draw(REPORT).findobj(Text)]
    assert f"make bench, {REPORT.date}: {REPORT.machine}" in texts
    assert {run.label for run in REPORT.runs} <= set(texts)
    assert [target.line() for target in REPORT.targets] == [
        text for text in texts if "(target " in text
    ]


@pytest.mark.usefixtures("requires_nginx")
def test_short_run_prints_tables_verdicts_and_writes_the_plot(tmp_path: Path) -> None:
    """The nginx and cold-start rows, 1 s per load run, two pairs, one launch each: each
    comparison's median run is in the table with no error and each worker's PSS, every target has its verdict, the PNG is
    written where --plot says, nothing is left in the temporary directory, and each run was
    said on stderr as it started, numbered within its row."""
    programs.require("wrk")
    temporary, plot = tmp_path / "tmp", tmp_path / "plots" / "bench.png"
    temporary.mkdir()
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--seconds", "1", "--rows", "nginx", "cold-start",
         "--pairs", "2", "--cold-starts", "1", "--plot", str(plot)],
        cwd=ROOT,
        env=base_env(TMPDIR=str(temporary)),
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = TABLE_ROW.findall(result.stdout)
    assert [label for label, *_ in rows] == [
        f"kit /healthz, {worker_class}, c=50, {way}"
        for worker_class in ("sync", "gevent")
        for way in ("direct", "through nginx")
    ]
    for label, rps, _, socket_errors, non_2xx, pss in rows:
        assert float(rps) > 0, label
        assert (socket_errors, non_2xx) == ("0", "0"), label
        assert [float(mib) > 10 for mib in pss.split(", ")] == [True, True], label
    cold_starts = COLD_ROW.findall(result.stdout)
    assert [name for name, *_ in cold_starts] == [
        "bare, sync", "kit, sync", "bare, gevent", "kit, gevent"
    ]  # fmt: skip
    for name, median, each in cold_starts:
        assert 0 < float(median) == float(each) < 60, name
    verdicts = VERDICT.findall(result.stdout)
    assert [(what, target) for what, _, target, _ in verdicts] == [
        ("/healthz, sync", ">= 0.85"),
        ("/healthz, gevent", ">= 0.85"),
        ("cold start, kit, sync", "<= 1.0 s"),
        ("cold start, kit, gevent", "<= 1.0 s"),
        ("errors", "0 in every run"),
    ]
    # The table shows each comparison's median run; the ratio is the pairs' median.
    assert all("median of 2 pairs" in value for _, value, _, _ in verdicts[:2])
    assert verdicts[-1][1:] == (
        "0 socket errors, 0 non-2xx/3xx answers in 8 load runs",
        "0 in every run",
        "met",
    )
    assert plot.read_bytes()[:8] == PNG_SIGNATURE
    assert list(temporary.iterdir()) == []
    progress = [
        (what.split(",")[0], int(n), int(of)) for n, of, what in LINE.findall(result.stderr)
    ]
    assert progress == [("nginx", n, 8) for n in range(1, 9)] + [
        ("cold-start", n, 4) for n in range(1, 5)
    ]
