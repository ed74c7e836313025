"""The service's resources are folders: one is added, or the example removed, as the README
says ("Your own resources"), in a copy of this repository, which must then still lint,
type-check, migrate and serve through gunicorn."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.processes import ROOT, Gunicorn, base_env, request

VENV_BIN = ROOT / ".venv" / "bin"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A copy of the repository's files (tracked and new, not ignored) using this .venv."""
    copy = tmp_path / "repo"
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    (copy / ".venv").symlink_to(ROOT / ".venv")
    return copy


def run(checkout: Path, *cmd: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `cmd` in the copy with this .venv first on PATH; fail with its output."""
    path = f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    done = subprocess.run(
        cmd, cwd=checkout, env=base_env(PATH=path, **env), capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{' '.join(cmd)}:\n{done.stdout}{done.stderr}"
    return done


def service_env(tmp_path: Path) -> dict[str, str]:
    """What the copy's server and its migrations read: a SQLite file of their own."""
    return {"DATABASE_URL": f"sqlite:///{tmp_path / 'service.db'}", "WEB_CONCURRENCY": "1"}


def serve(checkout: Path, env: dict[str, str], log_dir: Path) -> Gunicorn:
    """gunicorn serving the copy, after `alembic upgrade heads` on its database."""
    run(checkout, "alembic", "upgrade", "heads", **env)
    log_dir.mkdir()
    return Gunicorn(log_dir, base_env(**env), cwd=checkout).start()


def send(server: Gunicorn, method: str, path: str, body: object = None) -> tuple[int, Any]:
    """One JSON request; the status and the envelope's data."""
    raw = json.dumps(body).encode() if body is not None else None
    status, _, answer = request(server.port, method, path, raw)
    return status, json.loads(answer)["data"]


def test_a_resource_is_a_folder_and_one_registration_line(checkout: Path, tmp_path: Path) -> None:
    """A copy of app/items/ renamed to widgets, registered in one line, with the migration
    `make revision` writes from its model, serves /api/widgets beside /api/items."""
    env = service_env(tmp_path)
    widgets = checkout / "app" / "widgets"
    shutil.copytree(checkout / "app" / "items", widgets)
    for module in widgets.glob("*.py"):
        text = module.read_text()
        for old, new in (("Item", "Widget"), ("item", "widget"), ("ITEM", "WIDGET")):
            text = text.replace(old, new)
        module.write_text(text)
    factory = checkout / "app" / "__init__.py"
    text = factory.read_text().replace("from app import items", "from app import items, widgets")
    text = re.sub(
        r"( *)app\.register_blueprint\(items\.bp\)\n",
        r"\g<0>\1app.register_blueprint(widgets.bp)\n",
        text,
    )
    factory.write_text(text)

    run(checkout, "alembic", "upgrade", "heads", **env)
    # -o: the copy shares this .venv; never let make re-sync it.
    run(checkout, "make", "-o", "install", "revision", "m=create widgets", **env)
    (migration,) = (checkout / "migrations" / "versions").glob("*_create_widgets.py")
    assert "create_table('widgets'" in migration.read_text()

    server = serve(checkout, env, tmp_path / "logs")
    try:
        status, created = send(server, "POST", "/api/widgets", {"name": "sprocket"})
        assert (status, created["name"]) == (201, "sprocket")
        assert send(server, "GET", f"/api/widgets/{created['id']}")[0] == 200
        assert send(server, "POST", "/api/items", {"name": "bolt"})[0] == 201
    finally:
        server.stop()


def test_removing_the_example_leaves_a_service_that_lints_migrates_and_serves(
    checkout: Path, tmp_path: Path
) -> None:
    """Without app/items/, its migration and its line, the service lints, type-checks,
    migrates (the chassis's job history alone) and serves, and the chassis's own database,
    error, migration and factory tests still pass."""
    env = service_env(tmp_path)
    shutil.rmtree(checkout / "app" / "items")
    (checkout / "migrations" / "versions" / "20261121_0001_create_items.py").unlink()
    factory = checkout / "app" / "__init__.py"
    text = factory.read_text()
    for line in ("from app import items\n", "    app.register_blueprint(items.bp)\n"):
        assert line in text
        text = text.replace(line, "")
    factory.write_text(text)

    run(checkout, "ruff", "check", "app", "chassis", "gunicorn.conf.py", "migrations")
    run(checkout, "mypy", "app", "chassis", "gunicorn.conf.py")
    server = serve(checkout, env, tmp_path / "logs")
    try:
        assert send(server, "GET", "/readyz")[0] == 200
        assert send(server, "GET", "/api/items")[0] == 404
    finally:
        server.stop()
    # The chassis's own tests, which use a test-only resource (tests/apps/records.py).
    chassis_tests = [
        *(f"tests/chassis/test_{name}.py" for name in ("db", "upsert", "errors", "health")),
        "tests/test_migrations.py",
        "tests/test_app.py",
    ]
    required = {"KIT_REQUIRE_SERVICES": os.environ.get("KIT_REQUIRE_SERVICES", "")}
    tested = run(
        checkout, "python", "-m", "pytest", "-q", "-p", "no:cacheprovider",
        f"--basetemp={tmp_path / 'pytest'}", *chassis_tests, **required,
    ).stdout  # fmt: skip
    assert re.search(r"\d+ passed", tested), tested
    assert "skipped" not in tested or not required["KIT_REQUIRE_SERVICES"], tested
    tables = run(
        checkout, "python", "-c",
        "import sqlalchemy as sa, os; e = sa.create_engine(os.environ['DATABASE_URL']); "
        "print(sorted(sa.inspect(e).get_table_names()))",
        **env,
    ).stdout  # fmt: skip
    assert tables.strip() == "['alembic_version', 'job_runs']"
