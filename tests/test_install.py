"""What each make target installs: serving takes the runtime dependencies alone; testing,
linting and type checking add the development group (README: Quick start)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from harness import programs
from harness.processes import ROOT, base_env
from tests.support.checkout import copy_repository


def make(checkout: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run make in `checkout`, with uv's cache where this run has it."""
    (make_program,) = programs.require("make")
    env = base_env(UV_CACHE_DIR=os.environ.get("UV_CACHE_DIR", ""))
    env = {name: value for name, value in env.items() if value}
    return subprocess.run(
        [make_program, *args], cwd=checkout, env=env, capture_output=True, text=True, timeout=600
    )


@pytest.mark.parametrize("target", ["serve", "dev", "serve-gevent", "migrate"])
def test_serving_targets_sync_the_runtime_dependencies_only(target: str) -> None:
    """`make -n` shows what would run: the runtime sync, never the development group."""
    planned = make(ROOT, "-n", "-B", target).stdout
    assert "sync --locked --no-dev --inexact" in planned
    assert "--all-extras" not in planned


@pytest.mark.parametrize("target", ["test", "lint", "typecheck"])
def test_development_targets_sync_the_development_group(target: str) -> None:
    """Tests, lint and types need the development group and every extra."""
    assert "sync --locked --all-extras" in make(ROOT, "-n", "-B", target).stdout


def test_the_runtime_environment_serves_and_holds_no_development_tool(tmp_path: Path) -> None:
    """`make runtime` in a copy with no .venv installs gunicorn, Flask and alembic, and no
    pytest, ruff or mypy."""
    checkout = copy_repository(tmp_path / "checkout")
    (checkout / ".venv").unlink()
    if (ROOT / ".tools").is_dir():  # the uv make bootstrapped here, if it did
        (checkout / ".tools").symlink_to(ROOT / ".tools")
    done = make(checkout, "runtime")
    assert done.returncode == 0, done.stdout + done.stderr
    installed = {path.name for path in (checkout / ".venv" / "bin").iterdir()}
    assert {"gunicorn", "flask", "alembic"} <= installed
    assert {"pytest", "ruff", "mypy"} & installed == set()
