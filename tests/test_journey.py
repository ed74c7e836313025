"""The journey from the template to a service of your own, as one walk in the state a user
is in: a project made with `copier copy` whose database `make serve` has already migrated;
the example removed; two resources added; migrated; lint, types, the new resources' tests
and the chassis's database tests on SQLite and PostgreSQL; then a change in the template,
taken with `make update`; and the same checks again.

The template is a clone of this repository's committed history, as copier fetches it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from harness import programs
from harness.processes import ROOT, base_env
from tests.support.checkout import nested_pytest_args, run

NAME = "orders-api"
# The project reads its own name's variable (KIT_ becomes ORDERS_API_): PostgreSQL is
# required in the project's tests when this run requires it.
REQUIRED = {"ORDERS_API_REQUIRE_SERVICES": os.environ.get("KIT_REQUIRE_SERVICES", "")}
MAKE = ("make", "-o", "install", "-o", "runtime")  # the project shares this .venv
pytestmark = pytest.mark.skipif(
    not (ROOT / "copier.yml").exists(),
    reason="walks from the template itself (copier.yml): this project was made from it",
)


def git(cwd: Path, *args: str) -> str:
    """git in `cwd` as a throwaway identity."""
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    return run(cwd, "git", *identity, *args).stdout.strip()


def checks(project: Path, tmp_path: Path, env: dict[str, str]) -> None:
    """What a user runs on their service: lint, types, the new resources' tests and the
    chassis's database tests, on SQLite and on PostgreSQL."""
    tmp_path.mkdir(exist_ok=True)
    run(project, "ruff", "check", ".")
    run(project, "ruff", "format", "--check", ".")
    run(project, "mypy", timeout=600)
    tested = run(
        project, "python", "-m", "pytest", *nested_pytest_args(tmp_path),
        "tests/app/widgets", "tests/app/boxes", "tests/chassis/test_db.py",
        env=env | REQUIRED, timeout=600,
    ).stdout  # fmt: skip
    summary = tested.strip().splitlines()[-1]
    assert re.search(r"\d+ passed", summary), tested
    assert "failed" not in summary, tested
    assert "skipped" not in summary or not REQUIRED["ORDERS_API_REQUIRE_SERVICES"], tested


def test_from_copier_copy_to_two_resources_and_through_an_update(tmp_path: Path) -> None:
    """copier copy, make migrate (as make serve does), make remove-example, make resource
    twice, make migrate, the checks; a template change, make update, the checks again."""
    programs.require("git")
    template = tmp_path / "template"
    run(ROOT, "git", "clone", "--quiet", "--no-local", str(ROOT), str(template))
    if not git(template, "tag", "--list", "v*"):  # a clone of one branch has no tags
        version = tomllib.loads((template / "pyproject.toml").read_text())["project"]["version"]
        git(template, "tag", "--annotate", f"v{version}", "--message", "released here")
    project = tmp_path / NAME
    copier = [sys.executable, "-m", "copier"]
    run(ROOT, *copier, "copy", "--trust", "--defaults", "--vcs-ref", "HEAD",
        "--data", f"name={NAME}", str(template), str(project), timeout=600)  # fmt: skip
    (project / ".venv").symlink_to(ROOT / ".venv")
    if (ROOT / ".mypy_cache").is_dir():  # type-checks in seconds, not from scratch
        shutil.copytree(ROOT / ".mypy_cache", project / ".mypy_cache")
    git(project, "init", "--quiet")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", "made with copier")

    # The state a newcomer is in: `make serve` has already migrated the default database.
    env = {"DATABASE_URL": f"sqlite:///{project / 'data' / 'app.db'}"}
    run(project, *MAKE, "migrate", env=env)
    run(project, *MAKE, "remove-example", env=env)
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", "without the example")
    run(project, *MAKE, "resource", "name=widgets", env=env)
    run(project, *MAKE, "resource", "name=boxes", "singular=box", env=env)
    run(project, *MAKE, "migrate", env=env)
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", "widgets and boxes")
    checks(project, tmp_path / "first", env)

    # A change in the template, near code the rename rewrote, then the update.
    probe = template / "chassis" / "web" / "health.py"
    probe.write_text(probe.read_text() + "\n\n# A line the template added after the copy.\n")
    git(template, "commit", "--quiet", "--all", "--message", "a template change")
    # Released, as `copier update` takes the newest release (docs/copier.md, "Versions").
    major, minor, patch = git(template, "describe", "--tags", "--abbrev=0").lstrip("v").split(".")
    git(template, "tag", "--annotate", f"v{major}.{minor}.{int(patch) + 1}", "--message", "next")
    path = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    updated = subprocess.run(
        [sys.executable, str(project / "template" / "update.py"), "--defaults"],
        cwd=project, env=base_env(PATH=path), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert updated.stdout.splitlines()[-1].startswith("update: merged with no conflict")
    assert (
        (project / "chassis" / "web" / "health.py")
        .read_text()
        .endswith("# A line the template added after the copy.\n")
    )
    assert (project / "app" / "widgets").is_dir()
    assert not (project / "app" / "items").exists()
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", "the template's change")
    run(project, *MAKE, "migrate", env=env)
    checks(project, tmp_path / "second", env)
