"""The lines of app/__init__.py that register a resource: `from app import widgets` and
`app.register_blueprint(widgets.bp)`. `make resource` adds a resource's, `make
remove-example` removes the example's; both leave the file as ruff sorts and formats it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

FACTORY = Path("app") / "__init__.py"
# One registration: the blueprint a resource's package exports, inside create_app.
REGISTRATION = re.compile(
    r"^(?P<indent>[ \t]+)app\.register_blueprint\((?P<name>\w+)\.bp\)\n", re.M
)
RETURN = re.compile(r"^(?P<indent>[ \t]+)return app\n", re.M)


def registered(text: str) -> list[str]:
    """The resources `text` (app/__init__.py) registers, in order."""
    return [match["name"] for match in REGISTRATION.finditer(text)]


def add(text: str, name: str) -> str:
    """`text` with `name`'s import (before the first import: ruff sorts it into place) and
    its registration after the last one, or before create_app's `return app`."""
    lines = text.splitlines(keepends=True)
    first_import = next(
        node.lineno
        for node in ast.parse(text).body
        if isinstance(node, ast.Import)
        or (isinstance(node, ast.ImportFrom) and node.module != "__future__")
    )
    lines.insert(first_import - 1, f"from app import {name}\n")
    text = "".join(lines)
    last = [*REGISTRATION.finditer(text)] or [*RETURN.finditer(text)]
    if not last:
        raise ValueError(f"{FACTORY}: no app.register_blueprint(...) line and no `return app`")
    line = f"{last[-1]['indent']}app.register_blueprint({name}.bp)\n"
    at = last[-1].end() if last[-1].re is REGISTRATION else last[-1].start()
    return text[:at] + line + text[at:]


def remove(text: str, name: str) -> str:
    """`text` without `name`'s registration and without `name` in its `from app import`."""
    text = "".join(
        line
        for line in text.splitlines(keepends=True)
        if not ((found := REGISTRATION.fullmatch(line)) and found["name"] == name)
    )
    for node in ast.parse(text).body:
        if not (isinstance(node, ast.ImportFrom) and node.module == "app"):
            continue
        kept = [alias for alias in node.names if alias.name != name]
        if len(kept) == len(node.names):
            continue
        lines = text.splitlines(keepends=True)
        names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in kept)
        lines[node.lineno - 1 : node.end_lineno] = [f"from app import {names}\n"] if kept else []
        return "".join(lines)
    return text


def tidy(root: Path, paths: list[Path]) -> None:
    """Sort the imports of `paths` and format them with the project's ruff, as `make lint`
    checks them."""
    files = [str(path) for path in paths]
    for command in (["check", "--fix", "--select", "I", "--quiet"], ["format", "--quiet"]):
        subprocess.run([sys.executable, "-m", "ruff", *command, *files], cwd=root, check=True)  # noqa: S603
