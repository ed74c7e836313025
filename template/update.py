"""Take the template's changes: `make update` runs `copier update --trust` in a project made
with `copier copy`, then says in one line whether anything conflicted.

copier merges each file three ways and exits 0 even when a merge left conflict markers (or,
with `--conflict rej`, .rej files): hundreds of lines of output, and nothing says
"conflict". This reads the project afterwards instead: files git lists as unmerged, files
holding a conflict marker line, and .rej files. Any of them: one line naming them, exit 1.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

# A conflict's first marker, at the start of a line: seven '<' and a space.
MARKER = re.compile(rb"^<{7} ", re.MULTILINE)


def git(*args: str) -> list[str]:
    """Run git in the project; its output's lines."""
    done = subprocess.run(["git", *args], capture_output=True, text=True, check=True)  # noqa: S603, S607
    return [line for line in done.stdout.splitlines() if line]


def conflicts(root: Path) -> list[str]:
    """The project's files left conflicted by a merge, sorted."""
    found = set(git("diff", "--name-only", "--diff-filter=U"))
    for name in git("ls-files", "--cached", "--others", "--exclude-standard"):
        path = root / name
        if name.endswith(".rej") or (path.is_file() and MARKER.search(path.read_bytes())):
            found.add(name)
    return sorted(found)


def main(argv: list[str]) -> int:
    """Run copier update with `argv`, then report what conflicted."""
    if git("status", "--porcelain"):
        print("update: commit or stash your changes first: copier merges into a clean tree")
        return 2
    updated = subprocess.run([sys.executable, "-m", "copier", "update", "--trust", *argv])  # noqa: S603
    if updated.returncode != 0:
        return updated.returncode
    left = conflicts(Path.cwd())
    if left:
        print(f"update: {len(left)} conflicted, resolve and commit: {' '.join(left)}")
        return 1
    print("update: merged with no conflict; review `git diff`, run `make check`, commit")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
