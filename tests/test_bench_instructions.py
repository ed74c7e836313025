"""bench/instructions.py (`make bench-instructions`) counts every row and prints its table.

The full benchmark takes minutes under callgrind; here every row runs with a few requests
under the quick counter (Python calls), and the callgrind counter counts a small process.
No count is compared with a target or a previous run: only that each is taken and shown.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from bench.instructions import APPS, Counter
from bench.progress import LINE
from bench.scenarios import ROWS, available_rows
from harness import programs
from harness.processes import ROOT, base_env

# Every row, with a few requests, counting Python calls: seconds, not callgrind's minutes.
QUICK = ["--counter", "calls", "--requests", "3", "--warmup", "1"]
# One table row: label, bare Flask, kit, kit / bare.
TABLE_ROW = re.compile(r"^\| (.+?) \| ([\d.]+)(?: k)? \| ([\d.]+)(?: k)? \| ([\d.]+) \|$", re.M)
# One target's line: the row's label and the target.
VERDICT = re.compile(r"^- (.+): kit / bare = [\d.]+ \(target <= ([\d.]+)\): (?:met|not met)$", re.M)


def test_every_row_is_counted_for_kit_and_bare_and_printed(tmp_path: Path) -> None:
    """Each row runs in-process or through gunicorn, for the kit and bare Flask, and the
    table shows both counts, their ratio, the targets' verdicts and the command; each
    counted process said on stderr as it starts, numbered among them all."""
    result = subprocess.run(
        [sys.executable, "bench/instructions.py", *QUICK],
        cwd=ROOT,
        env=base_env(TMPDIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = TABLE_ROW.findall(result.stdout)
    assert [label for label, *_ in rows] == [ROWS[name].label for name in available_rows()]
    for label, bare, ours, ratio in rows:
        assert float(bare) > 0, label
        assert float(ours) > 0, label
        # The ratio is of the unrounded counts; the table shows them to one decimal.
        assert abs(float(ratio) - float(ours) / float(bare)) < 0.011, label
    verdicts = VERDICT.findall(result.stdout)
    assert verdicts == [
        (ROWS["healthz"].label, "1.10"),
        (ROWS["gunicorn-healthz"].label, "1.15"),
    ]
    assert "command: " in result.stdout
    progress = LINE.findall(result.stderr)
    runs = [
        f"{row}, {app}, {n} requests" for row in available_rows() for app in APPS for n in (3, 0)
    ]
    assert [(int(number), int(total)) for number, total, _ in progress] == [
        (number, len(runs)) for number in range(1, len(runs) + 1)
    ]
    assert sorted(what for _, _, what in progress) == sorted(runs)
    # Every run's files were in the benchmark's own directory, removed at the end.
    assert list(tmp_path.iterdir()) == []


def test_callgrind_counter_reads_the_instructions_of_the_process_it_ran(tmp_path: Path) -> None:
    """A process doing more work counts more instructions, read from its own profile."""
    programs.require("valgrind")
    counter = Counter("instructions")
    counts: list[int] = []
    for work in ("pass", "sum(range(200_000))"):
        out_dir = tmp_path / str(len(counts))
        out_dir.mkdir()
        proc = subprocess.Popen(
            [*counter.command(out_dir), "-I", "-S", "-c", work],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        assert proc.wait(timeout=60) == 0
        counts.append(counter.read(out_dir, proc.pid))
    idle, busy = counts
    assert idle > 1_000_000
    assert busy > idle + 1_000_000
