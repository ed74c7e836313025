"""Releases: every version the CHANGELOG lists is a git tag `v<version>` on a commit whose
pyproject.toml says that version, and the newest release is the version pyproject.toml says
now and the newest tag behind HEAD.

copier takes a template's versions from its tags: `copier copy` and `copier update` take the
newest, and copier names any commit after it `<tag>-<n>-g<sha>`. So what copier calls a
version and what the project says are the same. How to release: docs/copier.md."""

from __future__ import annotations

import re
import tomllib

import pytest

from harness import programs
from harness.processes import ROOT
from tests.support.checkout import run

TEMPLATE_ONLY = "tests the template's releases (copier.yml): this project was made from it"
pytestmark = pytest.mark.skipif(not (ROOT / "copier.yml").exists(), reason=TEMPLATE_ONLY)

# A released version's heading; `## [Unreleased]` is not one.
RELEASE = re.compile(r"^## \[(\d+\.\d+\.\d+)\]", re.MULTILINE)
NO_TAGS = "no release tags here: a clone without them (fetch them with `git fetch --tags`)"


def git(*args: str) -> str:
    """Run git in the repository; return its output."""
    programs.require("git")
    return run(ROOT, "git", *args).stdout.strip()


def released() -> list[str]:
    """The CHANGELOG's released versions, newest first."""
    return RELEASE.findall((ROOT / "CHANGELOG.md").read_text())


def tagged() -> list[str]:
    """The repository's release tags, newest first."""
    tags = git("tag", "--list", "v*", "--sort=-version:refname").split()
    assert tags, NO_TAGS
    return tags


def version_at(revision: str) -> str:
    """pyproject.toml's version at `revision`."""
    pyproject = tomllib.loads(git("show", f"{revision}:pyproject.toml"))
    version: str = pyproject["project"]["version"]
    return version


def test_each_release_is_a_tag_on_its_version_and_each_tag_a_release() -> None:
    """A version in the CHANGELOG has its tag, whose pyproject.toml says that version; a
    tag names nothing the CHANGELOG does not list."""
    versions = released()
    assert versions, "the CHANGELOG lists no release"
    assert tagged() == [f"v{version}" for version in versions]
    for version in versions:
        assert version_at(f"v{version}") == version, f"v{version} tags another version"


def test_the_newest_release_is_the_projects_version_and_copiers() -> None:
    """pyproject.toml says the newest release, and it is the newest tag behind HEAD: the
    version copier records for a project made from here (`git describe`)."""
    newest = released()[0]
    assert version_at("HEAD") == newest
    tagged()
    assert git("describe", "--tags", "--abbrev=0", "--match", "v*") == f"v{newest}"
