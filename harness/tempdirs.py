"""Directories for the processes a test runs as another user: PostgreSQL's server (as
postgres) and nginx's workers (as www-data).

They live straight in the system's temporary directory, never under pytest's base temp
folder or the checkout:
- pytest sets its folder (`pytest-of-<user>`) back to 0700 whenever any other run on the
  machine first asks for a temporary path, and deletes all but its newest runs' folders;
  a server of another user living there loses its files in the middle of the suite;
- a clone in a folder only its owner may enter (`mktemp -d`, /root, a home folder) cannot
  be read by www-data at all.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from harness.processes import ROOT


def for_other_users(prefix: str) -> Path:
    """A new directory that other users may pass through (0711: enter, not list), removed
    when the test process exits."""
    directory = Path(tempfile.mkdtemp(prefix=f"kit-{prefix}-"))
    directory.chmod(0o711)
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    return directory


@functools.cache
def static_root() -> Path:
    """A copy of app/static that nginx's workers can read wherever the clone lives."""
    copy = for_other_users("static") / "static"
    shutil.copytree(ROOT / "app" / "static", copy)
    for path in [copy, *copy.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return copy
