"""The chassis's folders are its layers, and every import points down: settings at the
bottom, then observability, the database, the scheduler, the web surface, serving on top."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from harness.processes import ROOT

CHASSIS = ROOT / "chassis"
# Bottom first: a layer may import from its own and from those before it.
LAYERS = ["settings", "observability", "database", "scheduler", "web", "serving"]
# The names services made before 0.3 import; each re-exports its new home for one release.
MOVED = {
    "chassis.db": "chassis.database.sessions",
    "chassis.models": "chassis.database.models",
    "chassis.upsert": "chassis.database.upsert",
    "chassis.responses": "chassis.web.responses",
    "chassis.validation": "chassis.web.validation",
    "chassis.operations": "chassis.web.operations",
}
MAX_LINES = 400


def layer_modules() -> list[Path]:
    """Every module inside a layer's folder."""
    return sorted(path for layer in LAYERS for path in (CHASSIS / layer).rglob("*.py"))


def chassis_imports(path: Path) -> set[str]:
    """Each `chassis.*` module `path` imports, at its top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            found |= {name for name in names if name.startswith("chassis.")}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("chassis.")}
    return found


@pytest.mark.parametrize(
    "path", [pytest.param(p, id=str(p.relative_to(CHASSIS))) for p in layer_modules()]
)
def test_every_import_points_down(path: Path) -> None:
    """A module imports only from its own layer and the layers below it."""
    own = LAYERS.index(path.relative_to(CHASSIS).parts[0])
    upward = {
        name
        for name in chassis_imports(path)
        if name.split(".")[1] in LAYERS and LAYERS.index(name.split(".")[1]) > own
    }
    assert upward == set()


def test_every_module_lives_in_a_layer() -> None:
    """Beside the layers' folders, chassis/ holds only its __init__.py and the moved names."""
    loose = {path.stem for path in CHASSIS.glob("*.py")} - {"__init__"}
    assert {f"chassis.{name}" for name in loose} == set(MOVED)
    assert {path.name for path in CHASSIS.iterdir() if path.is_dir()} - {"__pycache__"} == set(
        LAYERS
    )


def test_no_module_is_over_the_length_of_one_sitting() -> None:
    """No module of the chassis or the service is over 400 lines: past that it is two."""
    long = {
        str(path.relative_to(ROOT)): lines
        for folder in ("chassis", "app")
        for path in sorted((ROOT / folder).rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert long == {}


def test_package_init_files_only_re_export() -> None:
    """Each __init__.py holds a docstring, imports and `__all__` (chassis's own, a lazy
    `__getattr__` for `build_app`): no code runs when a package is imported."""
    for path in sorted(CHASSIS.rglob("__init__.py")):
        body = ast.parse(path.read_text()).body
        kinds = {
            type(node).__name__
            for node in body
            if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
            and not (isinstance(node, ast.FunctionDef) and node.name == "__getattr__")
            and not (
                isinstance(node, ast.Assign)
                and [getattr(t, "id", "") for t in node.targets] == ["__all__"]
            )
        }
        assert kinds <= {"Import", "ImportFrom"}, path


@pytest.mark.parametrize(
    ("module", "kept_out"),
    [
        pytest.param("chassis.settings", {"flask", "sqlalchemy", "werkzeug"}, id="settings"),
        pytest.param("chassis", {"flask", "sqlalchemy", "pydantic"}, id="chassis"),
        pytest.param("chassis.serving", {"flask", "sqlalchemy", "gevent"}, id="serving"),
        pytest.param("chassis.web.envelope", {"flask", "werkzeug", "sqlalchemy"}, id="envelope"),
    ],
)
def test_importing_a_light_module_loads_no_framework(module: str, kept_out: set[str]) -> None:
    """Importing settings (or the chassis package, or serving before gevent patches) loads
    neither Flask nor SQLAlchemy: checked in a fresh interpreter's sys.modules."""
    code = f"import sys, {module}; print(sorted({{m.split('.')[0] for m in sys.modules}}))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert set(ast.literal_eval(done.stdout)) & kept_out == set()


@pytest.mark.parametrize("old", sorted(MOVED))
def test_a_moved_module_keeps_its_names_for_one_release(old: str) -> None:
    """Each name a service imported from the old module is the new home's own object."""
    import importlib

    moved = importlib.import_module(old)
    home = importlib.import_module(MOVED[old])
    exported = {name: getattr(moved, name) for name in moved.__all__}
    assert exported
    assert all(getattr(home, name, value) is value for name, value in exported.items())


def test_build_app_is_still_importable_from_the_package() -> None:
    """`from chassis import build_app`, as app/__init__.py said before 0.3."""
    from chassis import build_app
    from chassis.web.app import build_app as home

    assert build_app is home


def test_gunicorns_master_imports_the_web_layer_before_it_forks() -> None:
    """gunicorn.conf.py, as the master runs it, has imported the chassis's web layer (so the
    workers share its memory: make bench's PSS row) but not the service, which each worker
    imports after the fork."""
    code = (
        "import runpy, sys; runpy.run_path('gunicorn.conf.py'); "
        "print(sorted(m for m in ('chassis.web.app', 'chassis.database.sessions', "
        "'sqlalchemy', 'app') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert ast.literal_eval(done.stdout.strip().splitlines()[-1]) == [
        "chassis.database.sessions",
        "chassis.web.app",
        "sqlalchemy",
    ]
