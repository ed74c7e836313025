"""From a clone to your own service, in a copy of this repository: `make remove-example`
takes the example's table down in the database `make serve` made (SQLite or PostgreSQL),
keeps a resource added before it, and refuses a dirty git tree; `make resource` writes
resources that lint, type-check, pass their own tests and appear in /openapi.json, in a
renamed clone too. Make runs with `-o install -o runtime`: the copy shares this .venv, and
make must never re-sync it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import create_engine, inspect, text

from harness.postgres import PostgresServer
from harness.processes import ROOT, base_env
from template import registration
from template.resource import Names, files, refusal
from tests.support.checkout import VENV_BIN, copy_repository, nested_pytest_args, run

MAKE = ("make", "-o", "install", "-o", "runtime")
EXAMPLE = (ROOT / "app" / "items").is_dir()
needs_example = pytest.mark.skipif(not EXAMPLE, reason="the example is already removed")
# What the chassis alone migrates: its job history, and Alembic's record.
CHASSIS_TABLES = ["alembic_version", "job_runs"]


@pytest.fixture(params=["sqlite", "postgres"])
def new_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database of the test's own, not yet migrated: a SQLite file, or a PostgreSQL one
    in the session's server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    postgres: PostgresServer = request.getfixturevalue("postgres")
    return postgres.create_database(re.sub(r"\W", "_", request.node.name).lower()[:60])


def tables(url: str) -> list[str]:
    """The tables of the database at `url`."""
    engine = create_engine(url)
    try:
        return sorted(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def lint_and_type_check(checkout: Path) -> None:
    """What `make lint` and `make typecheck` run, in the copy."""
    run(checkout, "ruff", "check", ".")
    run(checkout, "ruff", "format", "--check", ".")
    run(checkout, "mypy")


def refused(checkout: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in the copy, which must exit 2."""
    path = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    done = subprocess.run(
        cmd, cwd=checkout, env=base_env(PATH=path), capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, f"{done.stdout}{done.stderr}"
    return done


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the repository using this .venv."""
    return copy_repository(tmp_path / "repo")


@needs_example
def test_remove_example_takes_its_table_down_so_migrate_still_works(
    checkout: Path, new_database: str
) -> None:
    """After `make serve`'s migration, the removal downgrades the example's migration, then
    deletes its files: `make migrate` succeeds on the same database, which keeps the
    chassis's tables alone, and the copy lints and type-checks."""
    env = {"DATABASE_URL": new_database}
    run(checkout, *MAKE, "migrate", env=env)
    assert tables(new_database) == sorted([*CHASSIS_TABLES, "items"])

    removed = run(checkout, *MAKE, "remove-example", env=env).stdout
    assert "deleted app/items/" in removed
    assert not (checkout / "app" / "items").exists()
    assert not (checkout / "tests" / "app" / "items").exists()
    assert list((checkout / "migrations" / "versions").glob("*_create_items.py")) == []
    assert "items" not in (checkout / "app" / "__init__.py").read_text()
    assert tables(new_database) == CHASSIS_TABLES

    run(checkout, *MAKE, "migrate", env=env)
    assert tables(new_database) == CHASSIS_TABLES
    lint_and_type_check(checkout)
    again = run(checkout, *MAKE, "remove-example", env=env).stdout
    assert "the example resource is already removed" in again


@needs_example
def test_remove_example_keeps_a_resource_added_before_it(checkout: Path, new_database: str) -> None:
    """A resource added while the example was there has its migration on the example's:
    the removal runs the example's downgrade alone and makes the resource's migration the
    first of the service's branch, so the resource's rows stay and `make migrate` works."""
    env = {"DATABASE_URL": new_database}
    run(checkout, *MAKE, "resource", "name=widgets", env=env)
    run(checkout, *MAKE, "migrate", env=env)
    engine = create_engine(new_database)
    try:
        with engine.begin() as connection:
            connection.execute(
                text("INSERT INTO widgets (name, created_at, updated_at) VALUES (:n, :t, :t)"),
                {"n": "kept", "t": "2026-01-02T03:04:05+00:00"},
            )
    finally:
        engine.dispose()

    removed = run(checkout, *MAKE, "remove-example", env=env).stdout
    assert "keeping yours" in removed
    run(checkout, *MAKE, "migrate", env=env)
    assert tables(new_database) == sorted([*CHASSIS_TABLES, "widgets"])
    engine = create_engine(new_database)
    try:
        with engine.connect() as connection:
            assert connection.execute(text("SELECT name FROM widgets")).scalars().all() == ["kept"]
    finally:
        engine.dispose()
    history = run(checkout, "alembic", "history", env=env).stdout
    assert re.search(r"<base> -> \w+ \(service\)( \(head\))?, create widgets", history), history
    run(checkout, "ruff", "check", ".")
    run(checkout, "ruff", "format", "--check", ".")


@needs_example
def test_remove_example_refuses_a_dirty_git_tree_and_deletes_nothing(checkout: Path) -> None:
    """In a git work tree with a change not committed, the removal exits 2 with one line
    saying why, and every file of the example stays."""
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.invalid"]
    run(checkout, "git", "init", "--quiet")
    run(checkout, "git", "add", "--all")
    run(checkout, "git", *identity, "commit", "--quiet", "--message", "from the template")
    with (checkout / "app" / "jobs.py").open("a") as changed:
        changed.write("# not committed\n")

    done = refused(checkout, *MAKE, "remove-example")
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("remove-example:")]
    assert "uncommitted changes (app/jobs.py)" in line
    assert line.endswith("nothing removed")
    status = run(checkout, "git", "status", "--porcelain").stdout
    assert status.splitlines() == [" M app/jobs.py"]


def test_added_resources_lint_type_check_pass_their_tests_and_are_documented(
    checkout: Path, tmp_path: Path
) -> None:
    """In a renamed clone without the example, `make resource` writes two resources (one
    with an irregular singular) that pass ruff, mypy and their own tests on SQLite and
    PostgreSQL, and that /openapi.json lists."""
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'service.db'}"}
    run(checkout, "make", "rename", "name=orders-api")
    run(checkout, *MAKE, "remove-example", env=env)
    run(checkout, *MAKE, "resource", "name=widgets", env=env)
    run(checkout, *MAKE, "resource", "name=boxes", "singular=box", env=env)
    assert (checkout / "app" / "boxes" / "views.py").read_text().count("def put_box(") == 1
    lint_and_type_check(checkout)
    run(checkout, *MAKE, "migrate", env=env)
    assert tables(env["DATABASE_URL"]) == sorted([*CHASSIS_TABLES, "boxes", "widgets"])

    # The renamed copy reads its own name's variable: PostgreSQL is required when it is here.
    required = {"ORDERS_API_REQUIRE_SERVICES": os.environ.get("KIT_REQUIRE_SERVICES", "")}
    tested = run(
        checkout, "python", "-m", "pytest", *nested_pytest_args(tmp_path),
        "tests/app/widgets", "tests/app/boxes", env=required,
    ).stdout  # fmt: skip
    assert re.search(r"\d+ passed", tested), tested
    assert "skipped" not in tested or not required["ORDERS_API_REQUIRE_SERVICES"], tested

    documented = run(
        checkout, "python", "-c",
        "import json, os; from app import create_app; from chassis.settings import Settings; "
        "app = create_app(Settings(app_env='test', database_url=os.environ['DATABASE_URL'])); "
        "print(json.dumps(sorted(app.test_client().get('/openapi.json').json['paths'])))",
        env=env,
    ).stdout  # fmt: skip
    paths = json.loads(documented.splitlines()[-1])
    for url in ("/api/widgets", "/api/boxes"):
        assert {url, url + "/{id}", url + "/by-name/{name}"} <= set(paths)


@pytest.mark.parametrize(
    ("name", "singular", "why"),
    [
        pytest.param("Widgets", "widget", "is not a lower-case identifier", id="upper-case"),
        pytest.param("line-items", "line-item", "is not a lower-case identifier", id="hyphen"),
        pytest.param("widgets", "Widget", "is not a lower-case identifier", id="bad-singular"),
        pytest.param("classes", "class", "is a Python keyword", id="keyword"),
        pytest.param("jobs", "job", "exists: app/jobs.py", id="a-module-of-the-service"),
        pytest.param("job_runs", "job_run", "exists: a table", id="the-chassis-table"),
        pytest.param("total", "total", "is a field of every page answer", id="page-field"),
        pytest.param("records", "record", "exists: a table, a blueprint", id="the-tests-resource"),
        pytest.param("names", "name", "would reuse a name the code needs: Name", id="clash"),
        pytest.param("build_app", "build_app", "a name the code needs: build_app", id="factory"),
    ],
)
def test_resource_refuses_a_name_it_cannot_use(name: str, singular: str, why: str) -> None:
    """Each refusal says why, in one line, before anything is written."""
    found = refusal(ROOT, Names(name, singular))
    assert found is not None
    assert why in found


@pytest.mark.parametrize(
    ("plural", "singular"),
    [
        pytest.param("widgets", "widget", id="regular"),
        pytest.param("boxes", "box", id="irregular"),
        pytest.param("apples", "apple", id="vowel"),
        pytest.param("units", "unit", id="vowel-sounding-y"),
        pytest.param("line_items", "line_item", id="two-words"),
    ],
)
def test_the_generated_text_never_needs_an_article(plural: str, singular: str) -> None:
    """Generated docstrings and messages say "one widget", "the widget" or "No box", never
    "a" or "an" before the resource's name, which a first letter cannot choose ("a unit",
    "an apple"), and use the plural and singular given, never one made from the other."""
    one, many = singular.replace("_", " "), plural.replace("_", " ")
    # "boxs" and "boxe": a plural or a singular made by adding or removing an "s".
    made = "|".join({singular + "s", plural[:-1]} - {plural, singular}) or "(?!)"
    for path, source in files(Names(plural, singular)).items():
        assert not re.search(rf"\b[Aa]n? ({one}|{many})\b", source), path
        assert not re.search(rf"\b({made})\b", source), path


def test_registration_adds_beside_the_example_and_removes_it() -> None:
    """`make resource` registers after the last resource (or before `return app` when
    there is none), and `make remove-example` takes only the example's name away."""
    factory = (
        "from flask import Flask\n\nfrom app import items\nfrom chassis.web.app import build_app\n"
        "\n\ndef create_app() -> Flask:\n    app = build_app()\n"
        "    app.register_blueprint(items.bp)\n    return app\n"
    )
    added = registration.add(factory, "widgets")
    assert registration.registered(added) == ["items", "widgets"]
    removed = registration.remove(added, "items")
    assert registration.registered(removed) == ["widgets"]
    assert "from app import widgets\n" in removed
    assert "items" not in removed
    alone = registration.remove(factory, "items")
    assert "from app import" not in alone
    again = registration.add(alone, "boxes")
    assert again.index("app.register_blueprint(boxes.bp)") < again.index("return app")
