"""Rename the service everywhere: `make rename name=orders-api` (or `python template/rename.py
orders-api`), from the project root.

The current name is `[tool.template] name` in pyproject.toml. It is a whole word in file and
directory names, code, tests, deploy files, the image, the systemd unit and supervisor
program, the Linux user, the Kubernetes objects, the README and docs/, and it is replaced in
the spelling each place needs:

- `KIT_...` style (environment variables): upper case with underscores, `ORDERS_API_...`;
- next to an underscore (Python and nginx names, `kit_json`): `orders_api_json`;
- anywhere else (paths, units, users, hosts, Kubernetes names): `orders-api`.

The project name in pyproject.toml and uv.lock becomes the new name too. The CHANGELOG keeps
the history as it was written. A longer name lengthens lines and can reorder imports, so the
Python files are then put back in shape with the project's ruff: .venv's, or the version
uv.lock pins, installed into .tools/ (a `copier copy` project has no .venv yet).
Running it twice with the same name changes nothing, which is what `copier update` needs
(copier.yml runs it after each copy).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

# Lower-case words joined by single hyphens: valid as a Kubernetes name, a Linux user, a
# systemd unit, a Docker image and compose project, and (as ORDERS_API) an environment name.
NAME = re.compile(r"[a-z][a-z0-9]*(-[a-z0-9]+)*")
MAX_LENGTH = 40
# Never rewritten: the history, and what is not the project's own (tools, caches, data).
KEPT_FILES = {"CHANGELOG.md"}
SKIPPED_DIRS = {".git", ".venv", ".tools", "__pycache__", ".mypy_cache", ".pytest_cache",
                ".ruff_cache", "data", "node_modules"}  # fmt: skip


def current_name(root: Path) -> tuple[str, str]:
    """The service's short name and the project's name, from pyproject.toml."""
    pyproject = tomllib.loads((root / "pyproject.toml").read_text())
    return pyproject["tool"]["template"]["name"], pyproject["project"]["name"]


def word(name: str) -> re.Pattern[str]:
    """`name` as a whole word in any of its spellings; letters and digits bound a word,
    underscores and hyphens do not."""
    spellings = {name, name.replace("-", "_"), name.replace("-", "_").upper()}
    alternatives = "|".join(sorted(map(re.escape, spellings), key=len, reverse=True))
    return re.compile(rf"(?<![A-Za-z0-9])({alternatives})(?![A-Za-z0-9])")


# The template's own identity, which a service made from it does not keep: the README's
# title and the description /openapi.json and /docs show (pyproject.toml's). Each is
# replaced once, by the service's own; a renamed project holds them no more.
TEMPLATE_IDENTITY = {
    ": a Flask production template\n": ": a Flask service\n",
    '"A Flask service template that is correct under production load: gunicorn, nginx, '
    'PostgreSQL, containers."': '"The {new} service, on a Flask production chassis."',
}


def rewrite(text: str, old: str, new: str, project: str) -> str:
    """`text` with the template's identity, the project name and every spelling of `old`
    replaced by `new`'s."""
    for template_text, service_text in TEMPLATE_IDENTITY.items():
        text = text.replace(template_text, service_text.format(new=new))
    text = text.replace(project, new)

    def spelled(match: re.Match[str]) -> str:
        found, start, end = match.group(1), match.start(), match.end()
        if found.isupper() and found.lower() != found:
            return new.replace("-", "_").upper()
        beside = text[start - 1 : start] + text[end : end + 1]
        return new.replace("-", "_") if "_" in beside or "_" in found else new

    return word(old).sub(spelled, text)


def project_files(root: Path) -> list[Path]:
    """Every file of the project, relative to `root`, tools, caches and data left out."""
    found: list[Path] = []
    for directory, subdirs, files in os.walk(root):
        subdirs[:] = sorted(d for d in subdirs if d not in SKIPPED_DIRS)
        found += [Path(directory, f).relative_to(root) for f in sorted(files)]
    return found


def rename(root: Path, new: str) -> list[str]:
    """Rename the service in the project at `root`; return what changed, one line each."""
    old, project = current_name(root)
    changes: list[str] = []
    if new == old:
        return changes
    for path in project_files(root):
        if path.name in KEPT_FILES:
            continue
        source = root / path
        try:
            text = source.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # binary: an image, a font
            text = None
        if text is not None and "\0" not in text:
            rewritten = rewrite(text, old, new, project)
            if rewritten != text:
                source.write_text(rewritten, encoding="utf-8")
                changes.append(f"rewrote {path}")
        target = Path(rewrite(str(path), old, new, project))
        if target != path:
            (root / target).parent.mkdir(parents=True, exist_ok=True)
            os.replace(source, root / target)
            changes.append(f"moved {path} -> {target}")
            for parent in path.parents:  # drop the directories the move emptied
                if parent != Path(".") and not any((root / parent).iterdir()):
                    (root / parent).rmdir()
    if any(line.endswith(".py") for line in changes):
        changes.append(reformat(root))
    return changes


def reformat(root: Path) -> str:
    """Sort imports and format the Python files with the project's ruff settings."""
    ruff = find_ruff(root)
    if ruff is None:
        return "ruff could not be installed: run `make format` once `make install` works"
    for command in (["check", "--fix", "--select", "I", "--quiet"], ["format", "--quiet"]):
        subprocess.run([ruff, *command, "."], cwd=root, check=True)  # noqa: S603
    return "formatted the Python files (ruff)"


def find_ruff(root: Path) -> str | None:
    """The project's own ruff (another version may format differently): .venv's, else the
    version uv.lock pins, installed into .tools/ with pip, as `copier copy` needs in a new
    project with no .venv yet. Only then one on PATH."""
    if found := shutil.which("ruff", path=str(root / ".venv" / "bin")):
        return found
    target = root / ".tools" / "ruff"
    locked = tomllib.loads((root / "uv.lock").read_text()) if (root / "uv.lock").exists() else {}
    version = next((p["version"] for p in locked.get("package", []) if p["name"] == "ruff"), None)
    if version and not (target / "bin" / "ruff").exists():
        pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "--target", str(target), f"ruff=={version}"], check=False)  # noqa: S603
    return shutil.which("ruff", path=str(target / "bin")) or shutil.which("ruff")


def main(argv: list[str] | None = None) -> int:
    """Check the new name, rename, and say what changed."""
    parser = argparse.ArgumentParser(prog="make rename name=", description=__doc__.split("\n")[0])
    parser.add_argument("name", help="the new name, for example orders-api")
    args = parser.parse_args(argv)
    if not NAME.fullmatch(args.name) or len(args.name) > MAX_LENGTH:
        print(
            f"rename: {args.name!r} is not a name: use lower-case letters and digits, words "
            f"joined by single hyphens, at most {MAX_LENGTH} characters (for example orders-api)",
            file=sys.stderr,
        )
        return 2
    changes = rename(Path.cwd(), args.name)
    print("\n".join(changes) if changes else f"already named {args.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
