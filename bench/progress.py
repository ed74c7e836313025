"""One line on stderr as each run of a benchmark starts, so minutes of load or callgrind are
never silent: the time since the benchmark began, the run's number among those planned, and
what it runs. The tables stay alone on stdout."""

from __future__ import annotations

import re
import sys
import threading
import time

# A progress line, as read back (the tests): the run's number, the runs planned, what it is.
LINE = re.compile(r"^\[ *\d+ s\] run (\d+) of (\d+): (.+)$", re.M)


class Progress:
    """Counts the runs of one benchmark, or of one of its rows, as they start (from any
    thread: counted runs may start in parallel)."""

    def __init__(self, runs: int, began: float | None = None) -> None:
        self.runs = runs
        # A row's runs count from 1 while the time runs on from the benchmark's start.
        self.began = time.monotonic() if began is None else began
        self.started = 0
        self._lock = threading.Lock()

    def start(self, what: str) -> None:
        """Say that the next run starts: `what` it measures."""
        with self._lock:
            self.started += 1
            elapsed = time.monotonic() - self.began
            line = f"[{elapsed:4.0f} s] run {self.started} of {self.runs}: {what}\n"
            sys.stderr.write(line)
            sys.stderr.flush()
