"""Add a resource: `make resource name=widgets` (or `python -m template.resource widgets`),
from the project root; `singular=widget` when the name is not its singular and an "s".

Writes, in the example's shape (a declared answer model that builds every answer, one
constant per length limit): app/<name>/ with the table (a unique name and a note),
the five operations (create, list, read, create-or-update by name, delete) and their
`@operation` declarations; its registration in app/__init__.py; its migration on the
service's branch, written by Alembic from the model, as `make revision` does, against a
scratch SQLite database migrated first (your own database is left alone: `make migrate`
applies it); and tests/app/<name>/, which run each operation on SQLite and PostgreSQL.
Refuses (exit 2) a name that is no lower-case identifier or that the service already uses.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import keyword
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from string import Template

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

import chassis.scheduler.models  # noqa: F401  the chassis's own table, in Base.metadata
from app import create_app  # and the service's models, each resource's
from chassis.database.models import Base
from chassis.settings import Settings
from harness.apps import records
from template import registration

# A lower-case Python identifier: the package, the table, the blueprint and its URL.
IDENTIFIER = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")
# PostgreSQL cuts identifiers at 63 bytes; the constraint names add a prefix and a suffix.
MAX_LENGTH = 40
# The label of the service's migration branch (the Makefile's `revision` target).
SERVICE_BRANCH = "service"
# Field names of the page answer besides the list itself.
PAGE_FIELDS = {"total", "limit", "offset"}
# The resource's files, in the example's shape, with ${...} for its names (Names below).
TEMPLATES = Path(__file__).parent / "new_resource"


@dataclass(frozen=True)
class Names:
    """A resource's names in each spelling its files use."""

    plural: str  # widgets, line_items: the package, the table, the blueprint
    singular: str  # widget, line_item: the functions

    @property
    def cls(self) -> str:
        """The model's class: Widget, LineItem."""
        return "".join(part.capitalize() for part in self.singular.split("_"))

    def substitutions(self) -> dict[str, str]:
        """What the templates (template/new_resource/) fill in."""
        many = self.plural.replace("_", " ")
        return {
            "plural": self.plural,
            "singular": self.singular,
            "Class": self.cls,
            "url": self.plural.replace("_", "-"),
            "one": self.singular.replace("_", " "),
            "many": many,
            "Many": many[0].upper() + many[1:],
        }


def routes(url: str, one: str) -> str:
    """The views module's table of routes, its columns aligned for `url`."""
    rows = [
        ("POST", f"/api/{url}", "create", "201, 409 if the name is taken"),
        ("GET", f"/api/{url}?limit=&offset=", "list a page", "200 with the total"),
        ("GET", f"/api/{url}/<id>", "read", "200, 404"),
        ("PUT", f"/api/{url}/by-name/<name>", "create or update", "201 created, 200 updated"),
        ("DELETE", f"/api/{url}/<id>", "delete", f"200 with the deleted {one}, 404"),
    ]
    width = max(len(path) for _, path, _, _ in rows)
    return "\n".join(
        f"    {method:<6} {path:<{width}}   {what:<16}  {answer}".rstrip()
        for method, path, what, answer in rows
    )


def files(names: Names) -> dict[Path, str]:
    """Each file the resource is, by its path from the project root: the templates of
    template/new_resource/ filled in."""
    values = names.substitutions()
    values["routes"] = routes(values["url"], values["one"])
    package = Path("app") / names.plural
    written = {
        package / "__init__.py": "__init__.py",
        package / "models.py": "models.py",
        package / "views.py": "views.py",
        Path("tests") / "app" / names.plural / f"test_{names.plural}.py": "test.py",
    }
    return {
        path: Template((TEMPLATES / f"{name}.tmpl").read_text()).substitute(values)
        for path, name in written.items()
    }


def bound_twice(source: str) -> list[str]:
    """The names `source` binds more than once at its top level (a model class called
    `Name` would replace the field rule of that name)."""
    seen: list[str] = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            seen += [(alias.asname or alias.name).split(".")[0] for alias in node.names]
        elif isinstance(node, ast.FunctionDef | ast.ClassDef):
            seen.append(node.name)
        elif isinstance(node, ast.Assign):
            seen += [target.id for target in node.targets if isinstance(target, ast.Name)]
    return sorted({name for name in seen if seen.count(name) > 1})


def refusal(root: Path, names: Names) -> str | None:
    """Why `names` cannot be added to the service at `root`; None when they can."""
    for what, name in (("name", names.plural), ("singular", names.singular)):
        if keyword.iskeyword(name):
            return f"{what} {name!r} is a Python keyword"
        if not IDENTIFIER.fullmatch(name) or len(name) > MAX_LENGTH:
            return (
                f"{what} {name!r} is not a lower-case identifier: letters, digits and single "
                f"underscores, starting with a letter, at most {MAX_LENGTH} characters"
            )
    if names.plural in PAGE_FIELDS:
        return f"{names.plural!r} is a field of every page answer"
    taken = [
        path
        for path in (
            Path("app") / names.plural,
            Path("app") / f"{names.plural}.py",
            Path("tests") / "app" / names.plural,
        )
        if (root / path).exists()
    ]
    # pytest imports each test module by its file's name: two of one name collide.
    taken += [
        path.relative_to(root)
        for path in root.glob(f"tests/**/test_{names.plural}.py")
        if not any(path.is_relative_to(root / folder) for folder in taken)
    ]
    if taken:
        return f"{names.plural!r} exists: {', '.join(map(str, taken))}"
    in_use = used_by_the_service()
    url = f"/api/{names.substitutions()['url']}"
    if names.plural in in_use or any(path == url or path.startswith(f"{url}/") for path in in_use):
        return f"{names.plural!r} exists: a table, a blueprint or the URL {url}"
    # The factory's own names: `from app import settings` would lose to its argument.
    tree = ast.parse((root / registration.FACTORY).read_text())
    factory = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    factory |= {node.arg for node in ast.walk(tree) if isinstance(node, ast.arg)}
    clashes = {names.plural} & factory
    clashes |= {name for source in files(names).values() for name in bound_twice(source)}
    if clashes:
        return f"{names.plural!r} would reuse a name the code needs: {', '.join(sorted(clashes))}"
    return None


def used_by_the_service() -> set[str]:
    """The tables, blueprint names and URL rules of the service, and of the test suite's
    own resource (harness/apps/records.py), which the tests register beside it."""
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(app_env="test", database_url=f"sqlite:///{Path(scratch) / 'app.db'}")
        service = create_app(settings)
    rules = {rule.rule for rule in service.url_map.iter_rules()}
    return {
        *Base.metadata.tables, *records.TestBase.metadata.tables, *service.blueprints,
        records.bp.name, *rules, str(records.bp.url_prefix),
    }  # fmt: skip


def write_migration(root: Path, names: Names) -> Path:
    """Write the resource's migration with Alembic's autogenerate, on the service's branch,
    comparing the models with a scratch SQLite database migrated to the current heads."""
    config = Config(toml_file=root / "pyproject.toml")
    # The new table's model joins the metadata migrations/env.py compares with.
    importlib.invalidate_caches()
    importlib.import_module(f"app.{names.plural}.models")
    revisions = ScriptDirectory.from_config(config).walk_revisions()
    branches = {label for revision in revisions for label in revision.branch_labels}
    with tempfile.TemporaryDirectory() as scratch:
        scratch_url = f"sqlite:///{Path(scratch) / 'scratch.db'}"
        config.attributes["settings"] = Settings(database_url=scratch_url)
        command.upgrade(config, "heads")
        message = f"create {names.plural}"
        if SERVICE_BRANCH in branches:
            written = command.revision(
                config, message, autogenerate=True, head=f"{SERVICE_BRANCH}@head"
            )
        else:  # the branch's first revision starts it, as `make revision` does
            written = command.revision(
                config, message, autogenerate=True, head="base", branch_label=SERVICE_BRANCH,
                version_path=str(root / "migrations" / "versions"),
            )  # fmt: skip
    scripts = written if isinstance(written, list) else [written]
    (script,) = [script for script in scripts if script is not None]
    return Path(script.path).relative_to(root)


def add_resource(root: Path, names: Names) -> list[str]:
    """Write the resource's files, register it and write its migration; return what was
    done, one line each. Anything written is taken back if a step fails."""
    written: list[Path] = []
    factory = root / registration.FACTORY
    before = factory.read_text()
    try:
        for path, text in files(names).items():
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_text(text)
            written.append(path)
        factory.write_text(registration.add(before, names.plural))
        registration.tidy(root, [*written, registration.FACTORY])
        migration = write_migration(root, names)
    except BaseException:
        factory.write_text(before)
        for folder in (Path("app") / names.plural, Path("tests") / "app" / names.plural):
            shutil.rmtree(root / folder, ignore_errors=True)
        raise
    return [
        *(f"wrote {path}" for path in written),
        f"registered {names.plural} in {registration.FACTORY}",
        f"wrote {migration}",
    ]


def main(argv: list[str] | None = None) -> int:
    """Check the names, add the resource, and say what was written and what comes next."""
    parser = argparse.ArgumentParser(prog="make resource", description=__doc__.split("\n")[0])
    parser.add_argument("name", help="the resource's name, plural: widgets, line_items")
    parser.add_argument("--singular", help="its singular (default: the name without its s)")
    args = parser.parse_args(argv)
    name: str = args.name
    singular: str = args.singular or (name[:-1] if name.endswith("s") and len(name) > 1 else name)
    names = Names(name, singular)
    root = Path.cwd()
    why = refusal(root, names)
    if why:
        print(f"resource: {why}", file=sys.stderr)
        return 2
    print("\n".join(add_resource(root, names)))
    url = names.substitutions()["url"]
    print(f"/api/{url} is written (singular: {names.singular}); `make migrate` creates its table")
    print(
        f"to change its fields: app/{names.plural}/models.py and views.py, then "
        'make revision m="..." (README: "Your own resources")'
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
