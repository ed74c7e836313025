"""Remove the example resource, `/api/items`: `make remove-example` (or `python -m
template.remove_example`), from the project root.

Refuses (exit 2) while the git working tree has changes not committed, so that the removal
is a change of its own to review, and `git restore` undoes it; a copy that is no git work
tree is allowed. Says so, and exits 0, when the example is already gone.

First the database DATABASE_URL names (the app's settings) is taken below the example's
migrations where they are applied, so that `make migrate` keeps working on it: by `alembic
downgrade`, or, when a migration of yours builds on the example's (a resource added before
the example was removed), by running the example's downgrade alone and joining yours to
what came before it. Then it deletes app/items/, tests/app/items/, the migrations of the
`items` table and the two lines of app/__init__.py that register it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import Script, ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, column, delete, table, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from chassis.database.engine import build_engine, unreachable
from chassis.settings import Settings, current_settings, read_or_exit
from template import registration

# The example's name: its package, its tests' folder, its table and its blueprint.
EXAMPLE = "items"
FOLDERS = [Path("app") / EXAMPLE, Path("tests") / "app" / EXAMPLE]
VERSIONS = Path("migrations") / "versions"
# A migration of the example's table: an operation whose first argument is the table
# (create_table, batch_alter_table, add_column...), not a column that happens to share its name.
OPERATES_ON_EXAMPLE = re.compile(rf"_(table|column)\(\s*[\"']{EXAMPLE}[\"']")
# The lines of a revision file that name its place in the history (script.py.mako).
DOWN_REVISION = re.compile(r"^(down_revision\b[^=\n]*=\s*).*$", re.M)
BRANCH_LABELS = re.compile(r"^(branch_labels\b[^=\n]*=\s*).*$", re.M)
REVISES = re.compile(r"^Revises:.*$", re.M)


class Refused(Exception):
    """Why nothing was removed: one line, exit status 2."""


def uncommitted(root: Path) -> list[str]:
    """The changes `git status` lists under `root`; none outside a git work tree."""
    git = shutil.which("git")
    if git is None:
        return []
    inside = subprocess.run(  # noqa: S603
        [git, "rev-parse", "--is-inside-work-tree"], cwd=root, capture_output=True, text=True
    )
    if inside.returncode != 0:
        if "not a git repository" in inside.stderr:
            return []
        raise Refused(f"cannot tell whether the working tree is clean: {inside.stderr.strip()}")
    status = subprocess.run(  # noqa: S603
        [git, "status", "--porcelain", "--", "."], cwd=root, capture_output=True, text=True,
        check=True,
    )  # fmt: skip
    return status.stdout.splitlines()


def example_revisions(script: ScriptDirectory, root: Path) -> list[Script]:
    """The service's revisions that operate on the example's table, newest first."""
    return [
        revision
        for revision in script.walk_revisions()
        if revision.path is not None
        and Path(revision.path).parent == root / VERSIONS
        and OPERATES_ON_EXAMPLE.search(Path(revision.path).read_text())
    ]


def listed(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """A revision's `down_revision` or `depends_on` as a tuple."""
    return () if value is None else (value,) if isinstance(value, str) else tuple(value)


def below(script: ScriptDirectory, revision: str, example: set[str]) -> str | None:
    """The nearest revision under `revision` that is not the example's (None: the base)."""
    current: str | None = revision
    while current is not None and current in example:
        found = script.get_revision(current)
        down = listed(found.down_revision) if found else ()
        current = down[0] if down else None  # one at most: remove_example checked
    return current


def applied(connection: Connection, script: ScriptDirectory) -> set[str]:
    """The revisions applied to the database on `connection`."""
    heads = MigrationContext.configure(connection).get_current_heads()
    if not heads:
        return set()
    return {revision.revision for revision in script.iterate_revisions(heads, "base")}


def take_down(settings: Settings, config: Config, example: list[Script], kept: list[Script]) -> str:
    """Take the database below the example's migrations; say what was done."""
    url = make_url(settings.database_url)
    shown = url.render_as_string(hide_password=True)
    sqlite_file = url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:")
    if sqlite_file and not Path(str(url.database)).exists():
        return f"no database at {shown} yet: nothing to take down"
    script = ScriptDirectory.from_config(config)
    names = {revision.revision for revision in example}
    # No timeout: a downgrade may rewrite a large table, as migrations/env.py says.
    engine = build_engine(settings.model_copy(update={"db_statement_timeout_ms": 0}))
    try:
        with engine.connect() as connection:
            done = applied(connection, script) & names
        if not done:
            return f"{shown} has none of the example's migrations applied"
        if not kept:
            first = example[-1]
            target = below(script, first.revision, names) or f"{first.revision}@base"
            command.downgrade(config, target)
            return f"{shown}: alembic downgrade {target} (the example's migrations)"
        with engine.begin() as connection:
            context = MigrationContext.configure(connection)
            with Operations.context(context):
                for revision in example:  # newest first
                    if revision.revision in done:
                        revision.module.downgrade()
            # Alembic's record of what is applied: a head of the example's becomes the
            # revision under it, or goes when there is none.
            versions = table(context.version_table, column("version_num"))
            for head in set(context.get_current_heads()) & names:
                under = below(script, head, names)
                row = versions.c.version_num == head
                connection.execute(
                    delete(versions).where(row)
                    if under is None
                    else update(versions).where(row).values(version_num=under)
                )
        return f"{shown}: ran the example's downgrades, keeping yours"
    except sa_exc.DBAPIError as exc:
        raise SystemExit(f"{unreachable(settings.database_url, exc)}; nothing removed") from None
    except CommandError as exc:
        raise SystemExit(f"remove-example: alembic: {exc}; nothing removed") from None
    finally:
        engine.dispose()


def rejoin(
    root: Path, script: ScriptDirectory, example: list[Script], kept: list[Script]
) -> list[Path]:
    """Make each of `kept` revise what the example's revised; return the files changed."""
    names = {revision.revision for revision in example}
    labels = {label for revision in example for label in revision.branch_labels}
    changed: list[Path] = []
    for revision in kept:
        (down,) = listed(revision.down_revision)
        under = below(script, down, names)
        source = Path(str(revision.path))
        text = DOWN_REVISION.sub(rf"\g<1>{under!r}", source.read_text(), count=1)
        text = REVISES.sub(f"Revises: {under or ''}".rstrip(), text, count=1)
        if under is None and labels:  # the branch's first revision carries its label
            text = BRANCH_LABELS.sub(rf"\g<1>{tuple(sorted(labels))!r}", text, count=1)
        source.write_text(text)
        changed.append(source.relative_to(root))
    return changed


def remove_example(root: Path) -> list[str]:
    """Remove the example from the project at `root`; return what was done, one line each."""
    config = Config(toml_file=root / "pyproject.toml")
    script = ScriptDirectory.from_config(config)
    example = example_revisions(script, root)
    factory = (root / registration.FACTORY).read_text()
    present = [folder for folder in FOLDERS if (root / folder).exists()]
    if not (present or example or EXAMPLE in registration.registered(factory)):
        return []
    changes = [line[3:] for line in uncommitted(root)]
    if changes:
        more = f" and {len(changes) - 1} more" if len(changes) > 1 else ""
        raise Refused(
            f"the git working tree has uncommitted changes ({changes[0]}{more}): commit them "
            "first, so that the removal is a change of its own"
        )
    names = {revision.revision for revision in example}
    # Your revisions that build on the example's: joined to what came before it.
    kept = [
        revision
        for revision in script.walk_revisions()
        if revision.revision not in names and set(listed(revision.down_revision)) & names
    ]
    for revision in script.walk_revisions():
        merges = len(listed(revision.down_revision)) > 1 and revision in [*example, *kept]
        if merges or set(listed(revision.dependencies)) & names:
            raise Refused(
                f"migration {revision.revision} merges or depends on the example's: "
                "join it to the history by hand"
            )
    done = []
    if example:
        settings = read_or_exit(current_settings)
        config.attributes["settings"] = settings
        done.append(take_down(settings, config, example, kept))
    rejoined = rejoin(root, script, example, kept)
    done += [f"joined {path} to what the example's migration revised" for path in rejoined]
    for revision in example:
        Path(str(revision.path)).unlink()
        done.append(f"deleted {Path(str(revision.path)).relative_to(root)}")
    for folder in present:
        shutil.rmtree(root / folder)
        done.append(f"deleted {folder}/")
    (root / registration.FACTORY).write_text(registration.remove(factory, EXAMPLE))
    registration.tidy(root, [registration.FACTORY, *rejoined])
    done.append(f"removed the registration of {EXAMPLE} from {registration.FACTORY}")
    return done


def main() -> int:
    """Remove the example, and say what was done and what still mentions it."""
    root = Path.cwd()
    try:
        done = remove_example(root)
    except Refused as exc:
        print(f"remove-example: {exc}; nothing removed", file=sys.stderr)
        return 2
    if not done:
        print("the example resource is already removed")
        return 0
    print("\n".join(done))
    mentions = [
        str(page.relative_to(root))
        for page in [root / "README.md", *sorted((root / "docs").glob("*.md"))]
        if page.is_file() and f"/api/{EXAMPLE}" in page.read_text()
    ]
    if mentions:
        print(f"/api/{EXAMPLE} is still the example in {', '.join(mentions)}: yours to rewrite")
    return 0


if __name__ == "__main__":
    sys.exit(main())
