"""Releases: the versions the CHANGELOG lists are the versions pyproject.toml has said, in
the same order, and the newest is the one it says now. Where the clone has the release tags
(`v<version>`), they are those versions, each on a commit whose pyproject.toml says it, and
the newest is the one behind HEAD.

copier takes a template's versions from its tags: `copier copy` and `copier update` take the
newest, and copier names any commit after it `<tag>-<n>-g<sha>`. So what copier calls a
version and what the project says are the same. Tags travel apart from the branch: a clone
of one branch (as CI makes) has none, and then the history alone is checked. How to
release: docs/copier.md."""

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


def git(*args: str) -> str:
    """Run git in the repository; return its output."""
    programs.require("git")
    return run(ROOT, "git", *args).stdout.strip()


def released() -> list[str]:
    """The CHANGELOG's released versions, newest first."""
    return RELEASE.findall((ROOT / "CHANGELOG.md").read_text())


def tagged() -> list[str]:
    """The repository's release tags, newest first: none in a clone without them."""
    return git("tag", "--list", "v*", "--sort=-version:refname").split()


def version_at(revision: str) -> str:
    """pyproject.toml's version at `revision`."""
    pyproject = tomllib.loads(git("show", f"{revision}:pyproject.toml"))
    version: str = pyproject["project"]["version"]
    return version


def said() -> list[str]:
    """The versions pyproject.toml has said along HEAD's history, newest first."""
    versions: list[str] = []
    for commit in git("log", "--format=%H", "--", "pyproject.toml").split():
        version = version_at(commit)
        if version not in versions:
            versions.append(version)
    return versions


def test_releases_are_the_versions_pyproject_said_and_the_tags_where_present() -> None:
    """pyproject.toml's version changes only to release: the versions it has said are the
    CHANGELOG's releases, in order, and it says the newest. Where the clone has tags, every
    release has its tag on a commit whose pyproject.toml says it, no tag names anything
    else, and the newest is the one behind HEAD: the version copier records for a project
    made from here (`git describe`)."""
    versions = released()
    assert versions, "the CHANGELOG lists no release"
    assert said() == versions
    assert version_at("HEAD") == versions[0]
    tags = tagged()
    if tags:
        assert tags == [f"v{version}" for version in versions]
        for version in versions:
            assert version_at(f"v{version}") == version, f"v{version} tags another version"
        assert git("describe", "--tags", "--abbrev=0", "--match", "v*") == tags[0]
