"""The developer loop runs one set of tools: `make format` fixes what `make lint` checks, the
pre-commit hooks run `make lint` and `make typecheck`, `make coverage` is `make test` with
coverage.py, and `make outdated` asks uv about the locked dependencies."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import yaml

from harness.processes import ROOT, base_env

MAKEFILE = ROOT / "Makefile"
PRE_COMMIT = ROOT / ".pre-commit-config.yaml"
# coverage.py's last report line: statements, missed, branches, partial, percent.
TOTAL = re.compile(r"^TOTAL\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+%$", re.M)


def recipe(target: str) -> list[list[str]]:
    """Each command of `target`'s recipe in the Makefile, split as the shell would, with
    $(VENV) read as .venv; make's own comments (`@#`) left out."""
    lines = MAKEFILE.read_text().replace("\\\n", " ").splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(rf"{target}:(?!=)", line))
    commands = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        command = line.strip().removeprefix("@").replace("$(VENV)", ".venv")
        if not command.startswith("#"):
            commands.append(shlex.split(command))
    return commands


def test_format_fixes_with_the_tools_lint_checks_with() -> None:
    """`make format` runs `make lint`'s commands on the same paths, each told to fix instead
    of to check."""
    fixed = [[word for word in command if word != "--fix"] for command in recipe("format")]
    checked = [[word for word in command if word != "--check"] for command in recipe("lint")]
    assert fixed == checked
    assert [command[:3] for command in recipe("format")] == [
        [".venv/bin/ruff", "check", "--fix"],
        [".venv/bin/ruff", "format", "."],
    ]


def test_pre_commit_hooks_run_what_lint_and_typecheck_run() -> None:
    """Each hook is a local one running a Makefile command from .venv (no download, the
    locked versions), over the whole tree as make runs it."""
    config = yaml.safe_load(PRE_COMMIT.read_text())
    (repo,) = config["repos"]
    assert repo["repo"] == "local"
    hooks = repo["hooks"]
    assert [shlex.split(hook["entry"]) for hook in hooks] == recipe("lint") + recipe("typecheck")
    for hook in hooks:
        assert (hook["language"], hook["pass_filenames"]) == ("system", False), hook["id"]


def test_coverage_is_the_test_target_under_coverage_and_reports_a_total(tmp_path: Path) -> None:
    """`make coverage` runs pytest as `make test` does, with the same PYTEST_ARGS, under
    coverage.py, then prints a report of app/ and chassis/ ending in its total; `make test`
    itself never measures (it would be slower)."""
    (pytest_command,) = recipe("test")
    assert recipe("coverage")[0] == [".venv/bin/coverage", "run", "-m", "pytest", "$(PYTEST_ARGS)"]
    assert pytest_command == [".venv/bin/pytest", "$(PYTEST_ARGS)"]
    args = f"tests/chassis/test_responses.py -q -p no:cacheprovider --basetemp={tmp_path / 'run'}"
    done = subprocess.run(
        ["make", "-o", "install", "coverage", f"PYTEST_ARGS={args}"],
        cwd=ROOT,
        env=base_env(COVERAGE_FILE=str(tmp_path / ".coverage")),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert TOTAL.search(done.stdout), done.stdout
    reported = re.findall(r"^(\S+\.py)\s+\d+", done.stdout, re.M)
    assert reported
    assert {path.split("/")[0] for path in reported} <= {"app", "chassis"}


def test_outdated_asks_uv_about_the_dependencies_pyproject_names() -> None:
    """`make outdated` lists, from uv.lock as it is (never re-locked), each direct
    dependency with a newer release; the network it needs is not asked here."""
    (command,) = recipe("outdated")
    assert "$(UV) tree --outdated --depth 1 --locked |" in " ".join(command)
