"""systemd's EnvironmentFile= format, as deploy/supervisor/with-env-file reads it for
supervisor (deploy/supervisor/kit.conf): the same file gives the loader's command the
variables systemd gives a unit, nothing written in a value runs, and a file systemd refuses
stops the loader too, with a message that holds no value.

systemd is the real one: transient units (systemd-run) on the booted host the session shares
(`systemd_host`, tests/deploy/systemd_host.py), so those tests need a Docker engine. The
loader runs here, as supervisor would run it.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.processes import ROOT, base_env
from tests.deploy.systemd_host import PYTHON, Host
from tests.support.engine import docker

LOADER = ROOT / "deploy" / "supervisor" / "with-env-file"

# Prints the environment the command was given, as JSON.
PRINT_ENVIRONMENT = "import json, os; print(json.dumps(dict(os.environ)))"

# What a command written in a value would create in the working directory, had it run.
RAN = "ran-by-a-value"

# Each rule of systemd's EnvironmentFile= syntax, in values a shell would expand or run, and
# the lines it skips. The file ends without a newline.
HOSTILE_LINES = [
    f"# a comment: $HOME `touch {RAN}`",
    "; a comment of the other kind",
    "   # an indented one",
    "",
    "PLAIN=plain",
    "DOLLAR=pa$sw0rdTail",
    "BRACED=${HOME}/x",
    f"SUBSHELL=$(touch {RAN})",
    f"BACKTICKS=`touch {RAN}`",
    "  SPACED  =  inner  spaces  kept \t ",
    "HASH=a # b",
    "SEMICOLON=a;b",
    "EQUALS=a=b=c",
    "UNQUOTED_QUOTES=a 'b' \"c\"",
    f"SINGLE='$HOME `touch {RAN}` \\ \" # all kept'",
    f'DOUBLE="\\" \\$HOME \\` \\\\ \\n \'x\' $(touch {RAN})"',
    "JOINED=\"a\"'b'c",
    "AFTER_QUOTES='a'  # b",
    'ESCAPES=a\\\\b\\ c\\$d\\"e',
    "ESCAPED_SPACE=end\\ ",
    "CONTINUED=first \\",
    "second",
    'DOUBLE_CONTINUED="first \\',
    'second"',
    "SINGLE_LINES='first",
    "second'",
    "EMPTY=",
    'EMPTY_QUOTES=""',
    "UNICODE=pässwörd",
    "TWICE=first",
    "TWICE=second",
    "export EXPORTED=hunter2 in shell syntax",
    "9DIGIT=hunter2 under a name starting with a digit",
    "BAD-NAME=hunter2 under a name with a dash",
    "hunter2 on a line with no equals sign",
    "LAST=no newline at the end",
]
HOSTILE = "\n".join(HOSTILE_LINES)

# The lines of HOSTILE that set nothing, though they are neither blank nor comments.
SKIPPED = [line for line in HOSTILE_LINES if "hunter2" in line]


def added(baseline: dict[str, str], loaded: dict[str, str]) -> dict[str, str]:
    """The variables of `loaded` that the environment without the file did not have."""
    return {key: value for key, value in loaded.items() if key not in baseline}


def set_by_systemd(host: Host, text: str) -> tuple[dict[str, str], bool]:
    """The variables EnvironmentFile= sets from `text` in a transient unit on `host`, and
    whether a command written in it ran."""
    directory = host.run("mktemp", "--directory").strip()

    def environment(*properties: str) -> dict[str, str]:
        run = ["systemd-run", "--wait", "--pipe", "--collect", "--quiet"]
        run += [f"--working-directory={directory}", *properties]
        printed: dict[str, str] = json.loads(host.run(*run, PYTHON, "-c", PRINT_ENVIRONMENT))
        return printed

    try:
        host.run("tee", f"{directory}/kit.env", stdin=text)
        loaded = environment(f"--property=EnvironmentFile={directory}/kit.env")
        return added(environment(), loaded), RAN in host.run("ls", directory).split()
    finally:
        host.run("rm", "-rf", directory)


def run_loader(env_file: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """Run the loader on `env_file` in its directory, with `command` or else one that prints
    the environment it was given."""
    return subprocess.run(
        [str(LOADER), str(env_file), *(command or (sys.executable, "-c", PRINT_ENVIRONMENT))],
        cwd=env_file.parent,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )


def set_by_loader(directory: Path, text: str) -> tuple[dict[str, str], bool]:
    """The variables the loader adds from `text` to its command's environment, and whether a
    command written in it ran."""
    empty, env_file = directory / "empty.env", directory / "kit.env"
    empty.write_text("")
    env_file.write_text(text)
    without, loaded = run_loader(empty), run_loader(env_file)
    assert (without.returncode, loaded.returncode) == (0, 0), without.stderr + loaded.stderr
    return added(json.loads(without.stdout), json.loads(loaded.stdout)), (directory / RAN).exists()


def test_env_file_loader_sets_what_systemd_sets(systemd_host: Host, tmp_path: Path) -> None:
    """From one file of hostile lines the loader gives its command exactly the variables that
    systemd's EnvironmentFile= gives a unit, value for value, and runs nothing in a value."""
    by_systemd = set_by_systemd(systemd_host, HOSTILE)
    by_loader = set_by_loader(tmp_path, HOSTILE)

    assert by_loader == by_systemd
    variables, ran = by_systemd
    assert ran is False
    # The file was read at all: each assignment set its variable, and the skipped lines none.
    names = {line.partition("=")[0].strip() for line in HOSTILE_LINES if "=" in line}
    assert sorted(variables) == sorted(names - {line.partition("=")[0] for line in SKIPPED})
    assert variables["DOLLAR"] == "pa$sw0rdTail"


def test_env_file_loader_names_skipped_lines_but_never_their_text(tmp_path: Path) -> None:
    """The loader reports each line it skips by its number on stderr, with no word of the
    line itself, and still runs the command."""
    env_file = tmp_path / "kit.env"
    env_file.write_text(HOSTILE)

    done = run_loader(env_file)

    assert done.returncode == 0
    numbers = [HOSTILE_LINES.index(line) + 1 for line in SKIPPED]
    assert [int(n) for n in re.findall(r"kit\.env:(\d+): ignored", done.stderr)] == numbers
    printed = [word for word in ("hunter2", "EXPORTED", "DIGIT", "BAD") if word in done.stderr]
    assert printed == []


# Files systemd refuses (None: one that does not exist), each with the loader's reason; the
# secret's pieces must never be printed.
UNUSABLE = {
    "missing": (None, "kit.env: No such file or directory"),
    "not-utf8": (b"SECRET_KEY=s3cr\xffet-tail\n", "kit.env:1: not UTF-8"),
    "nonchar": (b"A=1\nSECRET_KEY=s3cr\xef\xb7\x90et-tail\n", "kit.env:2: not UTF-8"),
    "nul": (b"A=1\nSECRET_KEY=s3cr\0et-tail\n", "kit.env:2: a NUL byte"),
}
SECRET_PIECES = ("s3cr", "et-tail")


@pytest.mark.parametrize(
    ("content", "reason"), [pytest.param(*case, id=name) for name, case in UNUSABLE.items()]
)
def test_env_file_loader_refuses_an_unusable_file_without_printing_it(
    tmp_path: Path, content: bytes | None, reason: str
) -> None:
    """A file that cannot be read, is not UTF-8 or holds a NUL byte stops the loader with
    env(1)'s status 125 before the command runs; the message names the file and the line,
    and holds no part of a value."""
    env_file = tmp_path / "kit.env"
    if content is not None:
        env_file.write_bytes(content)

    done = run_loader(env_file, sys.executable, "-c", "print('ran')")

    assert (done.returncode, done.stdout) == (125, "")
    assert reason in done.stderr
    assert [piece for piece in SECRET_PIECES if piece in done.stderr] == []


def starts_under_systemd(host: Host, content: bytes | None) -> bool:
    """Whether a transient unit on `host` starts with an EnvironmentFile= holding `content`
    (None: a file that does not exist)."""
    directory = host.run("mktemp", "--directory").strip()
    env_file = f"{directory}/kit.env"
    try:
        if content is not None:
            # Through base64: the content need not be text.
            encoded = base64.b64encode(content).decode()
            host.run("sh", "-c", f"base64 --decode > {env_file}", stdin=encoded)
        run = ["systemd-run", "--wait", "--pipe", "--collect", "--quiet"]
        run += [f"--property=EnvironmentFile={env_file}", "/bin/true"]
        return docker("exec", host.name, *run, check=False, timeout=60).returncode == 0
    finally:
        host.run("rm", "-rf", directory)


@pytest.mark.parametrize(
    "content", [pytest.param(content, id=name) for name, (content, _) in UNUSABLE.items()]
)
def test_systemd_refuses_the_files_the_loader_refuses(
    systemd_host: Host, content: bytes | None
) -> None:
    """EnvironmentFile= refuses the same files: a unit that starts with a plain file does not
    start with this one."""
    assert (
        starts_under_systemd(systemd_host, b"A=1\n"),
        starts_under_systemd(systemd_host, content),
    ) == (True, False)
