"""A copy of this repository to change and check as a user would: rename it, delete the
example, add a resource, make a project from it with copier."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path

from harness import programs
from harness.processes import ROOT, base_env

VENV_BIN = ROOT / ".venv" / "bin"


# What a copy leaves out where the repository is no git work tree (a copy of a copy): the
# environment, caches and the local database, as .gitignore does.
LEFT_OUT = {".git", ".venv", ".tools", "data", "__pycache__", ".mypy_cache", ".ruff_cache"}


def repository_files() -> list[str]:
    """The repository's files, relative to it: tracked and new, not ignored, by git; or,
    in a copy that is no git work tree, every file outside LEFT_OUT."""
    (git,) = programs.require("git")
    listed = subprocess.run(
        [git, "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=False,
    )  # fmt: skip
    if listed.returncode == 0:
        return list(filter(None, listed.stdout.decode().split("\0")))
    found: list[str] = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if name not in LEFT_OUT]
        found += [str((Path(folder) / name).relative_to(ROOT)) for name in files]
    return found


def copy_repository(destination: Path) -> Path:
    """Copy the repository's files (`repository_files`) to `destination`, with a link to
    this .venv, so the copy runs with the same installed packages, and mypy's cache when
    there is one (`make typecheck` leaves it): mypy re-checks every file whose content
    differs from what the cache recorded, so a copy type-checks as from scratch, in 2 s
    instead of 18."""
    for name in repository_files():
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    (destination / ".venv").symlink_to(ROOT / ".venv")
    if (ROOT / ".mypy_cache").is_dir():
        shutil.copytree(ROOT / ".mypy_cache", destination / ".mypy_cache")
    return destination


def run(
    cwd: Path, *cmd: str, timeout: float = 300, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in `cwd` with this .venv first on PATH and `env` set; fail with its output."""
    path = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    done = subprocess.run(
        cmd, cwd=cwd, env=base_env(PATH=path, **(env or {})), capture_output=True, text=True,
        timeout=timeout, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout}{done.stderr}"
    return done


def nested_pytest_args(tmp_path: Path) -> list[str]:
    """Arguments for a pytest run inside a test: quiet, no cache, and its temporary files
    under `tmp_path`. Without --basetemp it would number a new directory beside this
    session's and delete all but the newest three, this session's own (and the PostgreSQL
    server running from it) among them."""
    return ["-q", "-p", "no:cacheprovider", f"--basetemp={tmp_path / 'nested-pytest'}"]
