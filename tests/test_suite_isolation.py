"""The suite shares the machine: another pytest run (a developer's one file, a second
checkout's suite) changes nothing for the servers this session runs as other users."""

from __future__ import annotations

import getpass
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from harness import tempdirs
from harness.postgres import PostgresServer
from harness.processes import base_env

OTHER_RUN = """\
def test_asks_for_a_temporary_path(tmp_path):
    assert tmp_path.is_dir()
"""


def test_another_pytest_run_leaves_the_sessions_postgres_serving(
    postgres: PostgresServer, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A second pytest with the default base temp folder sets `pytest-of-<user>` back to
    0700; the session's PostgreSQL, running as postgres outside it, still checkpoints (it
    opens its control file anew) and answers."""
    users_folder = Path(tempfile.gettempdir()) / f"pytest-of-{getpass.getuser()}"
    for pytests in (tmp_path_factory.getbasetemp(), users_folder):
        assert not postgres.base_dir.resolve().is_relative_to(pytests.resolve())
    other = tmp_path / "other-checkout"
    other.mkdir()
    (other / "test_other.py").write_text(OTHER_RUN)
    done = subprocess.run(
        # No --basetemp: this run numbers its folder in pytest-of-<user>, as a user's does.
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_other.py"],
        cwd=other, env=base_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    engine = sa.create_engine(postgres.url(), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("CHECKPOINT"))
            assert connection.execute(sa.text("SELECT 1")).scalar() == 1
    finally:
        engine.dispose()


def test_nginx_reads_static_files_from_outside_the_checkout() -> None:
    """nginx's workers (www-data) read static files from a copy other users may enter, so a
    clone in a folder only its owner may enter serves them too."""
    root = tempdirs.static_root()
    assert (root / "robots.txt").read_bytes() == (Path("app/static/robots.txt")).read_bytes()
    for folder in [root, *root.parents]:
        assert folder.stat().st_mode & 0o001, f"{folder} cannot be entered by other users"
