"""chassis/observability/metric_files.py on files written by prometheus_client itself, in this process: a dead
worker's counts are summed into the archive value by value, and a fold that finds a scrape
reading waits for the next worker exit instead of holding up the master.

The whole cycle under real gunicorn is in test_metrics.py.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.mmap_dict import MmapedDict, mmap_key

from chassis.observability.metric_files import LOCK_FILE, MetricFiles
from tests.support.scrape import read_files, total, value

# prometheus_client's file writer and key, untyped there.
_open: Callable[[str], Any] = MmapedDict
_key: Callable[[str, str, list[str], list[str], str], str] = mmap_key


def write_counts(directory: Path, pid: int, counts: dict[str, float]) -> None:
    """Write `pid`'s counter file as a worker would: http_requests_total by route."""
    out = _open(str(directory / f"counter_{pid}.db"))
    try:
        for route, count in counts.items():
            key = _key("http_requests", "http_requests_total", ["route"], [route], "Requests.")
            out.write_value(key, count, 0.0)
    finally:
        out.close()


def test_dead_workers_counts_are_summed_into_the_archive_by_series(tmp_path: Path) -> None:
    """Two dead workers' counts add up per route in one archive file; theirs are gone, a
    live worker's stays, and the total read is what it was."""
    write_counts(tmp_path, 11, {"/a": 3, "/b": 1})
    write_counts(tmp_path, 12, {"/a": 4})
    write_counts(tmp_path, 13, {"/b": 10})
    files = MetricFiles(tmp_path)
    files.worker_exited(11)
    files.worker_exited(12)
    names = {path.name for path in tmp_path.glob("*.db")}
    assert names == {"counter_archive.db", "counter_13.db"}
    samples = read_files(tmp_path)
    assert value(samples, "http_requests_total", route="/a") == 7
    assert value(samples, "http_requests_total", route="/b") == 11


def test_a_fold_put_off_by_a_reading_scrape_happens_at_the_next_exit(tmp_path: Path) -> None:
    """While a scrape holds the lock the dead worker's file stays (counted once); the next
    exit folds it with the new one."""
    write_counts(tmp_path, 21, {"/a": 2})
    write_counts(tmp_path, 22, {"/a": 5})
    files = MetricFiles(tmp_path)
    scrape = os.open(tmp_path / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(scrape, fcntl.LOCK_SH)
        files.worker_exited(21)
        assert (tmp_path / "counter_21.db").exists()
        assert files.unfolded == {21}
    finally:
        os.close(scrape)
    assert total(read_files(tmp_path), "http_requests_total") == 7
    files.worker_exited(22)
    assert {path.name for path in tmp_path.glob("*.db")} == {"counter_archive.db"}
    assert total(read_files(tmp_path), "http_requests_total") == 7


def test_a_worker_killed_before_sizing_its_file_is_folded_away(tmp_path: Path) -> None:
    """An empty file (a worker SIGKILLed between creating and sizing it) is removed, not
    read: prometheus_client cannot read it, and the fold runs in gunicorn's master."""
    write_counts(tmp_path, 31, {"/a": 2})
    (tmp_path / "counter_32.db").touch()
    files = MetricFiles(tmp_path)
    files.worker_exited(32)
    files.worker_exited(31)
    assert {path.name for path in tmp_path.glob("*.db")} == {"counter_archive.db"}
    assert value(read_files(tmp_path), "http_requests_total", route="/a") == 2
