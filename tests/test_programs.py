"""harness/programs.toml is the one list of the programs the suite runs: every test (and
every server of harness/ the tests start) finds them through it, .ci/run installs what it
names, and a name it lacks is refused."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness import programs
from harness.processes import ROOT

LOOKUPS = {"require", "find", "missing_reason", "program"}
# Where programs are asked for: the tests, the servers they share with the benchmarks, and
# the benchmarks.
SCANNED = ("tests", "harness", "bench")
# Where only the list's own module may look a program up on PATH.
WHICH_FREE = ("tests", "harness")


def python_files(*folders: str) -> list[Path]:
    """Every Python file under the repository's `folders`."""
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def named_programs() -> dict[str, set[str]]:
    """Each program name passed as a string to a `programs.` look-up, with the files."""
    named: dict[str, set[str]] = {}
    for path in python_files(*SCANNED):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "programs"
                and node.func.attr in LOOKUPS
            ):
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                        named.setdefault(arg.value, set()).add(str(path.relative_to(ROOT)))
    return named


def test_every_program_a_test_asks_for_is_listed() -> None:
    """No test names a program that harness/programs.toml (and so .ci/run) does not."""
    named = named_programs()
    assert {name: named[name] for name in set(named) - set(programs.listed())} == {}


def test_every_listed_program_is_asked_for_by_a_test() -> None:
    """The list holds nothing no test needs: CI installs no dead weight."""
    assert set(programs.listed()) - set(named_programs()) == set()


def test_no_test_looks_a_program_up_past_the_list() -> None:
    """`shutil.which` is called only by the list's own module, in tests/ and harness/."""
    own = ROOT / "harness" / "programs.py"
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in python_files(*WHICH_FREE)
        if path != own
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Attribute) and node.attr == "which"
    ]
    assert found == []


def test_a_program_missing_from_the_list_is_refused() -> None:
    """Asking for an unlisted program is the test's mistake, said as one."""
    unlisted = "not-a-listed-program"
    with pytest.raises(LookupError, match=rf"{unlisted} is not in programs\.toml"):
        programs.require(unlisted)


def test_a_missing_program_skips_with_its_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without KIT_REQUIRE_SERVICES a missing program skips, naming the package to install."""
    monkeypatch.delenv(programs.REQUIRE_SERVICES, raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.skip.Exception, match="wrk: apt-get install wrk"):
        programs.require("wrk")


def test_a_missing_program_fails_when_services_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under KIT_REQUIRE_SERVICES=1, as CI runs, the same absence fails the test."""
    monkeypatch.setenv(programs.REQUIRE_SERVICES, "1")
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(pytest.fail.Exception, match="KIT_REQUIRE_SERVICES=1 but not installed"):
        programs.require("wrk")


def test_ci_installs_what_the_list_finds_missing() -> None:
    """.ci/run asks the list what is missing, with the standard library alone, and on a
    machine with nothing on PATH the answer names every package without a `where`
    directory, each from its own release."""
    assert "harness/programs.py missing" in (ROOT / ".ci" / "run").read_text()
    done = subprocess.run(
        # -I -S: no site-packages, as before .ci/run has made the virtual environment.
        [sys.executable, "-I", "-S", "harness/programs.py", "missing"],
        cwd=ROOT, env={**os.environ, "PATH": "/nonexistent"},
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    printed = {tuple(line.split()) for line in done.stdout.splitlines()}
    unplaced = {p for p in programs.listed().values() if not p.where}
    assert {(p.package, p.release or "-") for p in unplaced} <= printed
    assert ("wrk", "-") in printed
