"""copier makes a project from this repository and updates it (copier.yml): a project made
from an older commit, changed by its owner, takes HEAD's changes with a three-way merge and
then passes its tests.

The template is a clone of this repository's committed history: what `copier update` would
fetch from the template's remote. Uncommitted changes here are not part of it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from harness import programs
from harness.processes import ROOT, base_env
from template.rename import current_name, project_files, rewrite, word
from tests.support.checkout import nested_pytest_args, run

# These tests make projects from the template's copier.yml. copier leaves that file out of
# the projects it makes, so in one of them the tests skip, saying so, instead of failing.
TEMPLATE_ONLY = "tests the template itself (copier.yml): this project was made from it"
pytestmark = pytest.mark.skipif(not (ROOT / "copier.yml").exists(), reason=TEMPLATE_ONLY)

NAME = "orders-api"
OLD, PROJECT = current_name(ROOT)
USER_LINE = "\n\n# The owner's own line: an update must keep it.\n"
# Quick tests that exercise the service, its settings and its deploy files in the project.
PROJECT_TESTS = [
    "tests/app/items/test_items.py",
    "tests/app/items/test_validation.py",
    "tests/chassis/test_settings.py",
    "tests/chassis/test_errors.py",
    "tests/test_app.py",
    "tests/deploy/test_agreement.py",
    "tests/deploy/test_kubernetes.py",
]


def git(cwd: Path, *args: str) -> str:
    """Run git in `cwd` as a throwaway identity; return its output."""
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    return run(cwd, "git", *identity, *args).stdout.strip()


def copier(cwd: Path, *args: str) -> str:
    """Run copier without questions (--defaults) and with its tasks (--trust)."""
    return run(cwd, "copier", *args, "--trust", "--defaults", timeout=600).stderr


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of this repository's history, as a template remote would serve it."""
    programs.require("git")
    clone = tmp_path_factory.mktemp("copier") / "template"
    run(ROOT, "git", "clone", "--quiet", "--no-local", str(ROOT), str(clone))
    return clone


# The versions a project is made from: the first with copier.yml, and 0.2's last commit,
# before the chassis was put in layers, whose owner wrote code against its flat modules.
ORIGINS = {"first-copier-commit": None, "flat-chassis": "74cf225"}
# The owner's own resource in the flat-chassis project, importing the old module names,
# and its test: after the update both must still work (CHANGELOG: moved for one release).
OWNER_RESOURCE = '''\
"""The owner's own resource, written against the chassis of 0.2."""

from flask import Blueprint, Response

from chassis import build_app  # noqa: F401  as app/__init__.py imported it
from chassis.db import Database, get_db, get_session  # noqa: F401
from chassis.models import Base, UTCDateTime, utcnow  # noqa: F401
from chassis.operations import IntParam, TextParam, operation  # noqa: F401
from chassis.responses import created, envelope_body, error, ok  # noqa: F401
from chassis.upsert import upsert  # noqa: F401
from chassis.validation import MAX_INT, Text  # noqa: F401

bp = Blueprint("notes", __name__, url_prefix="/api/notes")


@bp.get("")
@operation(answers={200: "The time and the largest id."}, database=False)
def list_notes() -> Response:
    return ok({"now": utcnow(), "largest": MAX_INT, "keys": list(envelope_body(0, "", 0, ""))})
'''
OWNER_TEST = """\
from app import create_app
from app.notes import bp
from chassis.settings import Settings


def test_the_owners_resource_answers(tmp_path):
    app = create_app(Settings(app_env="test", database_url=f"sqlite:///{tmp_path / 'a.db'}"))
    app.register_blueprint(bp)
    answer = app.test_client().get("/api/notes")
    assert answer.status_code == 200
    assert answer.json["data"]["largest"] == 2**31 - 1
    assert answer.json["data"]["keys"] == ["code", "msg", "data", "tracking_id"]
"""
OWNER_FILES = {"app/notes.py": OWNER_RESOURCE, "tests/test_owners_notes.py": OWNER_TEST}


@pytest.fixture(scope="module", params=list(ORIGINS))
def older(template: Path, request: pytest.FixtureRequest) -> str:
    """The commit a project is made from: the first with copier.yml (the oldest a project
    can be made from), or 0.2's flat chassis."""
    commits = git(template, "log", "--reverse", "--format=%H", "--", "copier.yml").split()
    assert commits, "no commit has copier.yml (a shallow clone? fetch the whole history)"
    origin = ORIGINS[request.param]
    commit = git(template, "rev-parse", origin) if origin else commits[0]
    assert commit != git(template, "rev-parse", "HEAD"), "no later commit to update to"
    return commit


def owners_files(older: str) -> dict[str, str]:
    """The files the owner of a project made from `older` wrote: none on the oldest."""
    return OWNER_FILES if older.startswith(ORIGINS["flat-chassis"] or "-") else {}


def answers(project: Path) -> dict[str, str]:
    """The project's .copier-answers.yml."""
    loaded: dict[str, str] = yaml.safe_load((project / ".copier-answers.yml").read_text())
    return loaded


@pytest.fixture(scope="module")
def made(template: Path, older: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project made from `older` and committed, as its owner would."""
    project = tmp_path_factory.mktemp("copier") / NAME
    copier(ROOT, "copy", "--vcs-ref", older, "--data", f"name={NAME}", str(template), str(project))
    made = answers(project)  # copier records the commit as `git describe` names it
    assert (made["_src_path"], made["name"]) == (str(template), NAME)
    assert git(template, "rev-parse", f"{made['_commit']}^{{commit}}") == older
    git(project, "init", "--quiet")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", "made with copier")
    return project


@pytest.fixture(scope="module")
def updated(made: Path, older: str) -> Path:
    """The project, changed by its owner, then updated to the template's HEAD."""
    with (made / "app" / "jobs.py").open("a") as jobs:
        jobs.write(USER_LINE)
    for name, text in owners_files(older).items():
        (made / name).write_text(text)
    git(made, "add", "--all")
    git(made, "commit", "--quiet", "--all", "--message", "the owner's change")
    copier(made, "update", "--vcs-ref", "HEAD")
    return made


def test_a_new_project_is_renamed(made: Path) -> None:
    """`copier copy` applied the name it asked for (given here) and left copier.yml out."""
    assert (made / "deploy" / "systemd" / f"{NAME}.service").is_file()
    assert not (made / "copier.yml").exists()


def test_an_older_project_updates_to_head_keeping_its_owners_change(
    updated: Path, template: Path
) -> None:
    """`copier update` to HEAD: the owner's change stays, every file the template changed
    since is HEAD's (renamed), nothing conflicts, and the old name is nowhere."""
    project = updated
    commit = f"{answers(project)['_commit']}^{{commit}}"  # a tag, or `<tag>-<n>-g<sha>`
    assert git(template, "rev-parse", commit) == git(template, "rev-parse", "HEAD")
    status = git(project, "status", "--porcelain").splitlines()
    assert not [line for line in status if line.endswith(".rej")], status
    marker = re.compile(rb"^" + b"<" * 7 + rb" ", re.MULTILINE)  # a merge conflict's start
    conflicted = [
        str(path) for path in project_files(project) if marker.search((project / path).read_bytes())
    ]
    assert conflicted == []
    assert (project / "app" / "jobs.py").read_text().endswith(USER_LINE)
    for name in ("chassis/settings/declarations.py", "gunicorn.conf.py", "README.md", "Makefile"):
        shipped = run(template, "git", "show", f"HEAD:{name}").stdout
        target = Path(rewrite(name, OLD, NAME, PROJECT))
        assert (project / target).read_text() == rewrite(shipped, OLD, NAME, PROJECT), name
    left = [
        str(path) for path in project_files(project)
        if path.name != "CHANGELOG.md"
        and word(OLD).search(f"{path}\n{(project / path).read_text(errors='replace')}")
    ]  # fmt: skip
    assert left == []


def test_the_updated_project_passes_its_tests(updated: Path, older: str, tmp_path: Path) -> None:
    """The updated project's own tests pass, run with this repository's packages: the
    owner's own code, written against the older chassis, included."""
    (updated / ".venv").symlink_to(ROOT / ".venv")
    # The example's tests go when the template (or its owner) removes the example.
    present = [path for path in PROJECT_TESTS if (updated / path).exists()]
    present += [name for name in owners_files(older) if name.startswith("tests/")]
    assert "tests/chassis/test_settings.py" in present
    done = run(updated, "python", "-m", "pytest", *nested_pytest_args(tmp_path), *present,
               timeout=600)  # fmt: skip
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary, done.stdout
    assert "failed" not in summary, done.stdout


# A module the template gains, with a line the rename makes too long: ruff re-wraps it in
# the project. Later the template changes the line after it.
WRAPPED = """\
\"\"\"Two lines: the first re-wrapped by the rename, the second changed by the template.\"\"\"


def said(*words: str) -> str:
    return " ".join(words)


GREETING = said("kit", "serves kit_items to kit users; a line the rename makes too long.")
FAREWELL = said("as the template first wrote it")
"""


def test_a_template_change_beside_a_rewrapped_line_merges_cleanly(
    template: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The rename lengthens a line and ruff re-wraps it in the project. When the template
    later changes the next line, `copier update` merges the change with no conflict: the
    rename formats both versions copier renders to compare, so they are wrapped alike."""
    assert OLD == "kit", "WRAPPED spells the template's name"
    clone = tmp_path_factory.mktemp("rewrapped") / "template"
    run(template, "git", "clone", "--quiet", str(template), str(clone))
    module = clone / "app" / "wrapped.py"
    module.write_text(WRAPPED)
    git(clone, "add", "app/wrapped.py")
    git(clone, "commit", "--quiet", "--message", "a module with a long line")
    project = clone.parent / NAME
    copier(ROOT, "copy", "--vcs-ref", "HEAD", "--data", f"name={NAME}", str(clone), str(project))
    made = (project / "app" / "wrapped.py").read_text()
    assert "GREETING = said(\n" in made, made  # re-wrapped: one line was too long
    git(project, "init", "--quiet")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", "made with copier")
    module.write_text(WRAPPED.replace("as the template first wrote it", "as it says now"))
    git(clone, "commit", "--quiet", "--all", "--message", "the line after the long one")
    copier(project, "update", "--vcs-ref", "HEAD")
    merged = (project / "app" / "wrapped.py").read_text()
    assert merged == made.replace("as the template first wrote it", "as it says now"), merged
    assert not git(project, "diff", "--name-only", "--diff-filter=U")


def test_make_update_names_each_conflicted_file_and_fails(
    template: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """An owner's change to a line the template also changed conflicts: `make update` (run
    as template/update.py) exits 1 with one line naming the file; copier alone exits 0."""
    older = git(template, "rev-parse", ORIGINS["flat-chassis"] or "HEAD")
    project = tmp_path_factory.mktemp("conflict") / NAME
    copier(ROOT, "copy", "--vcs-ref", older, "--data", f"name={NAME}", str(template), str(project))
    conf = project / "gunicorn.conf.py"
    # A line HEAD's gunicorn.conf.py changed too (its settings' name).
    lines = conf.read_text().splitlines(keepends=True)
    (changed,) = [i for i, line in enumerate(lines) if line.startswith("env = ")]
    lines[changed] = "env = read_or_exit(ServerSettings.from_env)  # the owner's\n"
    git(project, "init", "--quiet")
    git(project, "add", "--all")
    git(project, "commit", "--quiet", "--message", "made with copier")
    conf.write_text("".join(lines))
    git(project, "commit", "--quiet", "--all", "--message", "the owner's change")
    path = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
    done = subprocess.run(
        [sys.executable, str(ROOT / "template" / "update.py"), "--vcs-ref", "HEAD", "--defaults"],
        cwd=project, env=base_env(PATH=path), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == (
        "update: 1 conflicted, resolve and commit: gunicorn.conf.py"
    )


def test_the_templates_own_tests_skip_in_a_project_saying_why(
    updated: Path, tmp_path: Path
) -> None:
    """In a project made with copier, these tests skip with their reason: not a failure,
    and not a reason such as a shallow clone."""
    (updated / ".venv").unlink(missing_ok=True)
    (updated / ".venv").symlink_to(ROOT / ".venv")
    done = run(updated, "python", "-m", "pytest", *nested_pytest_args(tmp_path), "-rs",
               "tests/test_copier.py", timeout=300)  # fmt: skip
    assert TEMPLATE_ONLY in done.stdout
    summary = done.stdout.strip().splitlines()[-1]
    assert " skipped" in summary, done.stdout
    assert "passed" not in summary, done.stdout
    assert "failed" not in summary, done.stdout
