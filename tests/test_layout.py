"""Tests and benchmarks stand on their own helpers: what both run lives in harness/, what only
the tests use in tests/support/, and no module imports a conftest.py. The root conftest
loads the deployments' fixtures as a plugin instead of importing Docker or systemd helpers.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.processes import ROOT

ROOT_CONFTEST = ROOT / "tests" / "conftest.py"
DEPLOY_FIXTURES = "tests.deploy.fixtures"
# The session's deployments: one definition each, or a second compose stack would start.
DEPLOYMENTS = ("engine", "stack", "systemd_host")


def python_files(*folders: str) -> list[Path]:
    """Every Python file under the repository's `folders`."""
    return sorted(path for folder in folders for path in (ROOT / folder).rglob("*.py"))


def imported(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Each absolute module an import statement in `tree` names, with its line: `import a.b`
    names a.b; `from a import b` names a and a.b, since b may be a module."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def imports_of(folders: tuple[str, ...], wanted: tuple[str, ...]) -> list[str]:
    """`file:line module` for each import under `folders` of a module in `wanted` or in one of
    their packages."""
    return [
        f"{path.relative_to(ROOT)}:{line} {module}"
        for path in python_files(*folders)
        for line, module in imported(ast.parse(path.read_text(), str(path)))
        if any(module == name or module.startswith(f"{name}.") for name in wanted)
    ]


def test_no_module_imports_a_conftest() -> None:
    """Shared helpers are imported from harness/ or tests/support/: a conftest.py is pytest's
    to load, and importing it again makes a second copy of the module."""
    found = [
        f"{path.relative_to(ROOT)}:{line} {module}"
        for path in python_files("tests", "bench", "harness")
        for line, module in imported(ast.parse(path.read_text(), str(path)))
        if module.split(".")[-1] == "conftest"
    ]
    assert found == []


@pytest.mark.parametrize("folder", ["bench", "harness"])
def test_benchmarks_and_harness_import_nothing_from_tests(folder: str) -> None:
    """bench/ and harness/ run without the test suite: they import harness, chassis, app
    and libraries, never tests."""
    assert imports_of((folder,), ("tests",)) == []


def run_at_import(tree: ast.AST) -> Iterator[ast.AST]:
    """The statements of `tree` that importing the module runs: all but function bodies."""
    for child in ast.iter_child_nodes(tree):
        if not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            yield child
            yield from run_at_import(child)


def test_harness_imports_pytest_only_where_a_test_calls_it() -> None:
    """harness/ imports pytest inside the functions that skip or fail a test, never at
    module level: a benchmark, or .ci/run before any virtual environment, imports it without."""
    found = [
        f"{path.relative_to(ROOT)}:{node.lineno} {module}"
        for path in python_files("harness")
        for node in run_at_import(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for _, module in imported(node)
        if module.split(".")[0] in {"pytest", "_pytest"}
    ]
    assert found == []


def test_root_conftest_imports_no_docker_or_systemd_helper() -> None:
    """The root conftest, which every test loads, imports neither tests/deploy/ nor the
    Docker engine's helpers: the deployments' fixtures come as a plugin it names."""
    tree = ast.parse(ROOT_CONFTEST.read_text(), str(ROOT_CONFTEST))
    found = [
        f"{line} {module}"
        for line, module in imported(tree)
        if module.startswith(("tests.deploy", "tests.support.engine"))
    ]
    assert found == []


def test_root_conftest_loads_the_deployments_as_a_plugin() -> None:
    """`pytest_plugins` in the root conftest names the module of the deployments' fixtures."""
    tree = ast.parse(ROOT_CONFTEST.read_text(), str(ROOT_CONFTEST))
    plugins = [
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        and [getattr(target, "id", None) for target in node.targets] == ["pytest_plugins"]
    ]
    assert plugins == [[DEPLOY_FIXTURES]]


def fixture_scope(function: ast.FunctionDef) -> str | None:
    """The scope of a function decorated `@pytest.fixture` ("function" unless given), or None
    when it is not a fixture."""
    for decorator in function.decorator_list:
        call = decorator if isinstance(decorator, ast.Call) else None
        target = call.func if call else decorator
        if isinstance(target, ast.Attribute) and target.attr == "fixture":
            keywords = {k.arg: k.value for k in call.keywords} if call else {}
            scope = keywords.get("scope")
            return str(ast.literal_eval(scope)) if scope is not None else "function"
    return None


def test_each_deployment_is_one_session_fixture() -> None:
    """`engine`, `stack` and `systemd_host` are each defined once in the suite, for the
    session, in the plugin module: a second definition would start a second deployment."""
    defined = {
        (node.name, str(path.relative_to(ROOT)), fixture_scope(node))
        for path in python_files("tests")
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.FunctionDef)
        and node.name in DEPLOYMENTS
        and fixture_scope(node) is not None
    }
    plugin = DEPLOY_FIXTURES.replace(".", "/") + ".py"
    assert defined == {(name, plugin, "session") for name in DEPLOYMENTS}
