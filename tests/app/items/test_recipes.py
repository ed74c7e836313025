"""The service's resources are folders: one is added (`make resource`), or the example
removed (`make remove-example`), as the README says ("Your own resources"), in a copy of
this repository, which must then still lint, type-check, migrate, serve through gunicorn and
pass the tests, nginx's and the deploy files' included. These tests are the example's own,
so they go with it; tests/test_journey_resources.py tests the two commands themselves."""

from __future__ import annotations

import ast
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from harness.processes import ROOT, Gunicorn, base_env, request
from tests.support.checkout import copy_repository, nested_pytest_args, run

# What removing the example takes away: its folders, its migration, two lines.
EXAMPLE_PATHS = [
    "app/items",
    "tests/app/items",
    "migrations/versions/20261121_0001_create_items.py",
]
EXAMPLE_LINES = ["from app import items\n", "    app.register_blueprint(items.bp)\n"]
# -o: the copy shares this .venv; never let make re-sync it.
MAKE = ("make", "-o", "install", "-o", "runtime")


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the repository using this .venv."""
    repo = copy_repository(tmp_path / "repo")
    # nginx's workers (www-data) serve app/static from the copy, as they do from a checkout:
    # open the directories above it that pytest made private.
    for parent in [repo, *repo.parents][:4]:
        parent.chmod(parent.stat().st_mode | 0o055)
    return repo


def service_env(tmp_path: Path) -> dict[str, str]:
    """What the copy's server and its migrations read: a SQLite file of their own."""
    return {"DATABASE_URL": f"sqlite:///{tmp_path / 'service.db'}", "WEB_CONCURRENCY": "1"}


def serve(checkout: Path, env: dict[str, str], log_dir: Path) -> Gunicorn:
    """gunicorn serving the copy, after `alembic upgrade heads` on its database."""
    run(checkout, "alembic", "upgrade", "heads", env=env)
    log_dir.mkdir()
    return Gunicorn(log_dir, base_env(**env), cwd=checkout).start()


def send(server: Gunicorn, method: str, path: str, body: object = None) -> tuple[int, Any]:
    """One JSON request; the status and the envelope's data."""
    raw = json.dumps(body).encode() if body is not None else None
    status, _, answer = request(server.port, method, path, raw)
    return status, json.loads(answer)["data"]


def test_a_resource_is_a_folder_and_one_registration_line(checkout: Path, tmp_path: Path) -> None:
    """`make resource name=widgets` writes app/widgets/, its registration line and the
    migration Alembic writes from its model; the service serves /api/widgets beside
    /api/items, and /openapi.json documents its operations, linked as the example's are."""
    env = service_env(tmp_path)
    run(checkout, *MAKE, "resource", "name=widgets", env=env)
    factory = (checkout / "app" / "__init__.py").read_text()
    assert "    app.register_blueprint(widgets.bp)\n" in factory
    (migration,) = (checkout / "migrations" / "versions").glob("*_create_widgets.py")
    assert re.search(r"create_table\(\s*\"widgets\"", migration.read_text())

    server = serve(checkout, env, tmp_path / "logs")
    try:
        status, created = send(server, "POST", "/api/widgets", {"name": "sprocket"})
        assert (status, created["name"]) == (201, "sprocket")
        assert send(server, "GET", f"/api/widgets/{created['id']}")[0] == 200
        assert send(server, "POST", "/api/items", {"name": "bolt"})[0] == 201
        status, _, answer = request(server.port, "GET", "/openapi.json")
    finally:
        server.stop()
    assert status == 200
    paths = json.loads(answer)["paths"]
    documented = {(path, method) for path, methods in paths.items() for method in methods}
    assert {
        ("/api/widgets", "post"),
        ("/api/widgets", "get"),
        ("/api/widgets/{id}", "get"),
        ("/api/widgets/by-name/{name}", "put"),
        ("/api/widgets/{id}", "delete"),
    } <= documented
    links = paths["/api/widgets"]["post"]["responses"]["201"]["links"]
    assert set(links) == {"widgets.get_widget", "widgets.delete_widget", "widgets.put_widget"}


def test_removing_the_example_leaves_a_service_that_lints_migrates_and_serves(
    checkout: Path, tmp_path: Path
) -> None:
    """After `make remove-example`, without app/items/, its migration and its lines, the
    service lints, type-checks, migrates (the chassis's job history alone) and serves, and
    the chassis's own database, error, migration and factory tests still pass."""
    env = service_env(tmp_path)
    run(checkout, *MAKE, "remove-example", env=env)
    assert [path for path in EXAMPLE_PATHS if (checkout / path).exists()] == []
    factory = (checkout / "app" / "__init__.py").read_text()
    assert [line for line in EXAMPLE_LINES if line in factory] == []

    run(checkout, "ruff", "check", ".")
    run(checkout, "ruff", "format", "--check", ".")
    run(checkout, "mypy")
    secrets = {"POSTGRES_PASSWORD": "x" * 16, "SECRET_KEY": "y" * 64}
    run(checkout, "docker", "compose", "config", "--quiet", env=secrets)
    server = serve(checkout, env, tmp_path / "logs")
    try:
        assert send(server, "GET", "/readyz")[0] == 200
        assert send(server, "GET", "/api/items")[0] == 404
    finally:
        server.stop()
    # The chassis's own tests, which use a test-only resource (harness/apps/records.py), and
    # the tests of the deploy files and of nginx (`nginx -t` under the stock nginx.conf).
    # The deployments themselves (compose up, systemd boot) take minutes; that nothing
    # outside the example's folder needs the example is checked by the next test.
    chassis_tests = [
        *(f"tests/chassis/test_{name}.py" for name in ("db", "upsert", "errors", "health")),
        "tests/test_migrations.py",
        "tests/test_app.py",
        "tests/deploy/test_agreement.py",
        "tests/deploy/test_kubernetes.py",
        "tests/deploy/test_workflows.py",
        "tests/nginx",
    ]
    required = {"KIT_REQUIRE_SERVICES": os.environ.get("KIT_REQUIRE_SERVICES", "")}
    tested = run(
        checkout, "python", "-m", "pytest", *nested_pytest_args(tmp_path), *chassis_tests,
        env=required,
    ).stdout  # fmt: skip
    assert re.search(r"\d+ passed", tested), tested
    assert "skipped" not in tested or not required["KIT_REQUIRE_SERVICES"], tested
    tables = run(
        checkout, "python", "-c",
        "import sqlalchemy as sa, os; e = sa.create_engine(os.environ['DATABASE_URL']); "
        "print(sorted(sa.inspect(e).get_table_names()))",
        env=env,
    ).stdout  # fmt: skip
    assert tables.strip() == "['alembic_version', 'job_runs']"


def literal(node: ast.AST) -> str | bytes | None:
    """Return the text `node` makes from literals alone: a string or bytes, an f-string (a
    placeholder of no literal as `{}`), a `+` or a `sep.join([...])` of such; else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str | bytes):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.FormattedValue):
                text = literal(value.value)
                plain = value.format_spec is None and value.conversion in (-1, ord("s"))
                parts.append(text if isinstance(text, str) and plain else "{}")
            else:
                parts.append(str(literal(value)))
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = literal(node.left), literal(node.right)
        if isinstance(left, str) and isinstance(right, str):
            return left + right
        if isinstance(left, bytes) and isinstance(right, bytes):
            return left + right
        return None
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "join"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.List | ast.Tuple)
    ):
        separator = literal(node.func.value)
        items = [literal(item) for item in node.args[0].elts]
        if isinstance(separator, str) and all(isinstance(item, str) for item in items):
            return separator.join(str(item) for item in items)
        if isinstance(separator, bytes) and all(isinstance(item, bytes) for item in items):
            return separator.join(item for item in items if isinstance(item, bytes))
    return None


def example_uses(source: str) -> list[str]:
    """Where Python `source` imports the example or sends a request to its URL, in a string,
    bytes or a string built from literals (docstrings and comments may mention it)."""
    tree = ast.parse(source)
    documented = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    found: list[tuple[int, str]] = []
    # The parts of a literal already reported: `"/api/" + "items/"` is one finding, not two.
    reported: set[int] = set()
    for node in ast.walk(tree):  # breadth first: a whole expression before its parts
        if isinstance(node, ast.Import | ast.ImportFrom):
            prefix = f"{node.module}." if isinstance(node, ast.ImportFrom) else ""
            modules = [prefix + alias.name for alias in node.names]
            if any(m == "app.items" or m.startswith("app.items.") for m in modules):
                found.append((node.lineno, "imports the example"))
        if id(node) in reported or id(node) in documented:
            continue
        text = literal(node)
        if isinstance(text, str):
            mentioned = "/api/items" in text
        else:
            mentioned = text is not None and b"/api/items" in text
        if mentioned and isinstance(node, ast.expr):
            found.append((node.lineno, repr(text)))
            reported.update(id(part) for part in ast.walk(node))
    return [f"line {line}: {what}" for line, what in sorted(found, key=lambda use: use[0])]


def test_nothing_outside_the_examples_folders_depends_on_it() -> None:
    """No test the example's removal keeps imports it or requests its URL, and neither does
    CI, so the whole suite (compose and systemd included) passes without it."""
    kept = [
        path
        for path in ROOT.glob("tests/**/*.py")
        if not any(path.is_relative_to(ROOT / example) for example in EXAMPLE_PATHS)
    ]
    assert len(kept) > 20
    depending = [
        f"{path.relative_to(ROOT)} {use}" for path in kept for use in example_uses(path.read_text())
    ]
    for path in [*ROOT.glob(".github/workflows/*.yml"), ROOT / ".ci" / "run"]:
        code = [line.split("#", 1)[0] for line in path.read_text().splitlines()]
        depending += [f"{path.relative_to(ROOT)}: {line}" for line in code if "/api/items" in line]
    assert depending == []


def test_the_dependency_check_sees_an_import_and_a_request() -> None:
    """The check above finds what it looks for, and passes over docstrings."""
    source = '"""/api/items"""\nfrom app.items.views import ItemCreate\nget(port, "/api/items")\n'
    assert example_uses(source) == ["line 2: imports the example", "line 3: '/api/items'"]


@pytest.mark.parametrize(
    ("request_code", "found"),
    [
        pytest.param(
            'sock.sendall(b"POST /api/items HTTP/1.1\\r\\n")',
            "b'POST /api/items HTTP/1.1\\r\\n'",
            id="bytes",
        ),
        pytest.param('get(port, f"/api/items/{n}")', "'/api/items/{}'", id="f-string"),
        pytest.param("get(port, f\"/api/{'items'}\")", "'/api/items'", id="f-string-of-literal"),
        pytest.param('get(port, "/api/" + "items/" + str(n))', "'/api/items/'", id="sum"),
        pytest.param('send(b" ".join([b"PUT", b"/api/items"]))', "b'PUT /api/items'", id="join"),
        pytest.param('get(port, f"/api/{kind}")', None, id="f-string-of-a-variable"),
    ],
)
def test_the_dependency_check_sees_a_request_built_from_literals(
    request_code: str, found: str | None
) -> None:
    """The URL is found in bytes (a raw request) and in strings built from literals alone,
    once per request; a URL completed by a variable is not (the check reads no values)."""
    source = f'"""The corpus."""\n\n{request_code}\n'
    assert example_uses(source) == ([f"line 3: {found}"] if found else [])
