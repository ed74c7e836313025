"""The programs the suite runs beside Python, found only through harness/programs.toml.

A test asks for a program by name: `require("wrk")` returns its path, or skips with the
Debian package to install (fails under KIT_REQUIRE_SERVICES=1, as CI sets). A name the list
does not hold is an error, so a new dependency cannot reach the suite without reaching
.ci/run, which runs this file to learn what to install:

    python3 harness/programs.py missing    # "package release" per missing program

Standard library only: .ci/run runs it before any virtual environment exists.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

LIST = Path(__file__).resolve().parent / "programs.toml"
REQUIRE_SERVICES = "KIT_REQUIRE_SERVICES"


@dataclass(frozen=True)
class Program:
    """One table of harness/programs.toml."""

    name: str
    package: str
    release: str
    where: tuple[str, ...]
    github: str
    tests: str

    @property
    def install_hint(self) -> str:
        """What to run to get it, on Debian or Ubuntu."""
        release = f" -t {self.release}" if self.release else ""
        return f"apt-get install{release} {self.package.split('=')[0]}"

    def find(self) -> str | None:
        """Its path on this machine, on PATH or in its `where` directories, or None."""
        if found := shutil.which(self.name):
            return found
        directories = [d for pattern in self.where for d in sorted(glob.glob(pattern))]
        return shutil.which(self.name, path=os.pathsep.join(directories)) if directories else None


def listed() -> dict[str, Program]:
    """Every program of the list, by name."""
    tables = tomllib.loads(LIST.read_text())
    return {
        name: Program(
            name=name,
            package=table["package"],
            release=table.get("release", ""),
            where=tuple(table.get("where", ())),
            github=table["github"],
            tests=table["tests"],
        )
        for name, table in tables.items()
    }


def program(name: str) -> Program:
    """The list's entry for `name`; a name it does not hold is a mistake in the test."""
    programs = listed()
    if name not in programs:
        raise LookupError(f"{name} is not in {LIST.name}: add it there, so that CI installs it")
    return programs[name]


def find(name: str) -> str | None:
    """The path of listed program `name`, or None when it is not installed."""
    return program(name).find()


def missing_reason(*names: str) -> str | None:
    """Say what to install when any of the listed `names` is missing, else None."""
    absent = [program(name) for name in names if find(name) is None]
    if not absent:
        return None
    hints = "; ".join(f"{p.name}: {p.install_hint}" for p in absent)
    return f"not installed: {hints} (harness/programs.toml says what needs each)"


def require_service(reason: str) -> None:
    """Skip for a missing service, or fail when CI demands every service (KIT_REQUIRE_SERVICES)."""
    import pytest  # only here: .ci/run runs this file before pytest is installed

    if os.environ.get(REQUIRE_SERVICES) == "1":
        pytest.fail(f"{REQUIRE_SERVICES}=1 but {reason}")
    pytest.skip(reason)


def require(*names: str) -> list[str]:
    """The paths of the listed `names`, or a skip (a failure under KIT_REQUIRE_SERVICES)."""
    if reason := missing_reason(*names):
        require_service(reason)
    return [str(find(name)) for name in names]


def main(argv: list[str]) -> int:
    """`missing`: print "package release" for each listed program not installed here."""
    if argv != ["missing"]:
        print(f"usage: {sys.argv[0]} missing", file=sys.stderr)
        return 2
    packages = {(p.package, p.release) for p in listed().values() if p.find() is None}
    for package, release in sorted(packages):
        print(package, release or "-")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
