"""The files of prometheus_client's multiprocess mode under gunicorn: where they live, emptied
at start, and folded when a worker dies so that they never pile up.

Each worker writes its values to files of its own in PROMETHEUS_MULTIPROC_DIR
(`counter_<pid>.db`, `histogram_<pid>.db`, `gauge_livesum_<pid>.db`, ...), and a scrape
sums every file it finds (https://prometheus.github.io/client_python/multiprocess/). The
gunicorn master (hooks in chassis/serving/hooks.py) owns the directory:

- at start, before the first fork, it creates it (by default a private directory on the
  memory filesystem, removed at exit) and deletes the metric files a previous run left;
  private directories of masters that died without removing theirs (SIGKILL, out of
  memory) are removed too: each master and its workers hold a lock on a file in theirs;
- when a worker exits it marks it dead (`mark_process_dead`: its live gauges go), then folds
  its counter, histogram and summary files into one archive file per kind, summing value by
  value, and deletes them. Totals never go backwards, and the directory holds the live
  workers' files plus at most three archives, however often workers are recycled
  (GUNICORN_MAX_REQUESTS) or killed.

A scrape that read the new archive and the dead worker's file would count it twice, so the
fold and every scrape take a lock on one file: scrapes share it, the fold holds it alone. The
master never waits on a scrape for long: when it cannot take the lock quickly, the files stay
as they are (still counted once) and are folded at the next worker exit.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, values
from prometheus_client.metrics_core import Metric
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

# The variable prometheus_client reads, in every worker, for where to write.
VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Kinds whose values add up across processes, so a dead worker's can be summed into one file.
SUMMED_KINDS = ("counter", "histogram", "summary")
# Not `*.db`, so the collector never reads it as metrics.
LOCK_FILE = "fold.lock"
# Held by a private directory's master (and the workers it forks) for as long as they live.
OWNER_FILE = "owner.lock"
PREFIX = "chassis-metrics-"
# How long the master tries for the lock before leaving a fold for the next worker exit.
FOLD_LOCK_SECONDS = 0.5

# prometheus_client's multiprocess parts are untyped; their types, as used here. The file
# format is the library's, read and written only through it. `read_values(path)` yields
# each entry of one file: its key (JSON: metric, sample, labels, help), value, timestamp.
# Private in prometheus_client, checked against 0.26.0: `values.ValueClass` (which class a
# metric keeps its values in, chosen at import; write_to_files chooses again) and
# `mmap_dict.MmapedDict` (the files' reader and writer, which the multiprocess collector
# uses too). tests/test_private_internals.py fails, naming each, if an upgrade changes it.
_mark_dead: Callable[[int, str], None] = mark_process_dead
read_values: Callable[[str], Iterable[tuple[str, float, float, int]]] = (
    MmapedDict.read_all_values_from_file
)
_open_file: Callable[[str], Any] = MmapedDict
_files_collector: Callable[[CollectorRegistry | None, str], Any] = MultiProcessCollector
_file_value_class: Callable[[], Any] = values.MultiProcessValue


def memory_directory() -> str | None:
    """The memory filesystem when there is one (as for gunicorn's heartbeat files), else
    None: the temp dir."""
    return "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108


@dataclass
class MetricFiles:
    """The master's hold on the directory: which dead workers still have files to fold."""

    directory: Path
    # In a directory made here (removed at exit): the descriptor holding OWNER_FILE's lock.
    owner: int | None = None
    unfolded: set[int] = field(default_factory=set)

    @classmethod
    def prepare(cls, configured: str | None) -> MetricFiles:
        """Create the directory (`configured`, or a private one), delete the metric files
        in it, and name it in PROMETHEUS_MULTIPROC_DIR for the workers to come."""
        owner = None
        if configured:
            directory = Path(configured)
            directory.mkdir(parents=True, exist_ok=True)
        else:
            parent = Path(memory_directory() or tempfile.gettempdir())
            remove_abandoned(parent)
            directory = Path(tempfile.mkdtemp(prefix=PREFIX, dir=parent))
            owner = os.open(directory / OWNER_FILE, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(owner, fcntl.LOCK_EX)
        # Only metric files: a directory shared with anything else keeps the rest.
        for stale in directory.glob("*.db"):
            stale.unlink()
        os.environ[VARIABLE] = str(directory)
        write_to_files()
        return cls(directory, owner)

    def worker_exited(self, pid: int) -> None:
        """Drop a dead worker's live gauges, and fold its other files (and those of any
        worker whose fold was put off) into the archives."""
        _mark_dead(pid, str(self.directory))
        self.unfolded.add(pid)
        with _lock(self.directory, fcntl.LOCK_EX, FOLD_LOCK_SECONDS) as locked:
            if locked:
                for dead in sorted(self.unfolded):
                    for kind in SUMMED_KINDS:
                        fold(self.directory, kind, dead)
                self.unfolded.clear()

    def remove(self) -> None:
        """At exit: remove the directory if it was made here (a configured one is kept, and
        emptied at the next start)."""
        if self.owner is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            os.close(self.owner)


def remove_abandoned(parent: Path) -> None:
    """Remove the private directories in `parent` whose master and workers are all gone:
    nobody holds their owner lock any more (the kernel released it when they died).

    A directory without the lock file is left alone: its master may be between creating it
    and locking it."""
    for candidate in parent.glob(f"{PREFIX}*"):
        try:
            descriptor = os.open(candidate / OWNER_FILE, os.O_RDWR)
        except OSError:  # no lock file yet, or another user's
            continue
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # alive
            continue
        else:
            shutil.rmtree(candidate, ignore_errors=True)
        finally:
            os.close(descriptor)


def write_to_files() -> None:
    """Make prometheus_client keep the values of metrics made from now on in the files.

    It decides once, when first imported, from PROMETHEUS_MULTIPROC_DIR; the gunicorn
    master imports it (with the chassis) before its on_starting hook sets the variable. So
    the choice is made again here, as prometheus_client's own tests do: in the master before
    the first fork, for every worker to inherit (a service's metrics made when its modules
    are imported included), and in each worker whose master did not (metrics.py)."""
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = _file_value_class()


def fold(directory: Path, kind: str, pid: int) -> None:
    """Add the values of `pid`'s `kind` file to `kind`'s archive, then delete the file.

    Keys are prometheus_client's own (metric, sample, labels, help), so each sum is one time
    series. The archive is rewritten beside and renamed into place, so a reader sees the old
    one or the new one, never half of one."""
    dead = directory / f"{kind}_{pid}.db"
    if not dead.exists():
        return
    if dead.stat().st_size == 0:
        # A worker killed between creating its file and sizing it (SIGKILL just after boot):
        # no values, and a file prometheus_client cannot read, in a scrape or a fold.
        dead.unlink()
        return
    archive = directory / f"{kind}_archive.db"
    totals: dict[str, tuple[float, float]] = {}
    for path in (archive, dead):
        if path.exists():
            for key, value, timestamp, _ in read_values(str(path)):
                total, latest = totals.get(key, (0.0, 0.0))
                totals[key] = (total + value, max(latest, timestamp))
    written = directory / f".{kind}_archive.new"
    written.unlink(missing_ok=True)
    out = _open_file(str(written))
    try:
        for key, (value, timestamp) in totals.items():
            out.write_value(key, value, timestamp)
    finally:
        out.close()
    os.replace(written, archive)
    dead.unlink()


class _FoldAwareCollector(Collector):
    """prometheus_client's collector of the files, reading them under the fold lock."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files = _files_collector(None, str(directory))

    def collect(self) -> Iterable[Metric]:
        with _lock(self.directory, fcntl.LOCK_SH, None):
            return list(self.files.collect())


def collecting_registry(directory: Path) -> CollectorRegistry:
    """A registry that reads every process's files in `directory` when collected."""
    registry = CollectorRegistry()
    registry.register(_FoldAwareCollector(directory))
    return registry


@contextlib.contextmanager
def _lock(directory: Path, operation: int, patience: float | None) -> Iterator[bool]:
    """Hold the directory's lock (shared or exclusive) and yield True; with `patience`
    (seconds), yield False instead once it has run out. A process that dies releases it."""
    descriptor = os.open(directory / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        if patience is None:
            fcntl.flock(descriptor, operation)
        else:
            deadline = time.monotonic() + patience
            while True:
                try:
                    fcntl.flock(descriptor, operation | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        yield False
                        return
                    time.sleep(0.01)
        yield True
    finally:
        os.close(descriptor)
