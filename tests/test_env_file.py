"""One meaning for `.env`: the settings check the make targets run first, gunicorn and the
`flask` command read the same settings, the environment's over the `.env` file's
(chassis/settings/declaring.py says why every entry point reads it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.processes import ROOT, base_env

BIN = Path(sys.executable).parent
ENTRY_POINTS = {
    # What `make migrate`, `make serve` and `make dev` run before anything else.
    "settings check": [sys.executable, "-m", "chassis.settings"],
    "gunicorn": [str(BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "--check-config"],
    "flask": [str(BIN / "flask"), "--app", "app.wsgi", "routes"],
}
REFUSED = "configuration error: LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"


@pytest.mark.parametrize(
    ("environ", "refused"),
    [
        pytest.param({}, True, id="from-the-file"),
        pytest.param({"LOG_LEVEL": "info"}, False, id="the-environment-wins"),
        pytest.param({"FLASK_SKIP_DOTENV": "1"}, False, id="flask-skip-dotenv-turns-it-off"),
    ],
)
def test_every_entry_point_reads_the_env_file_alike(
    tmp_path: Path, environ: dict[str, str], refused: bool
) -> None:
    """With `.env` saying LOG_LEVEL=nonsense in the working directory, every entry point
    refuses it naming LOG_LEVEL, or every one starts: never one of each."""
    (tmp_path / ".env").write_text("LOG_LEVEL=nonsense\n")
    env = base_env(PYTHONPATH=str(ROOT))
    del env["FLASK_SKIP_DOTENV"]
    running = {
        name: subprocess.Popen(
            command,
            cwd=tmp_path,
            env=env | environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, command in ENTRY_POINTS.items()
    }
    outcomes = {name: outcome(process) for name, process in running.items()}
    assert outcomes == {name: (1, True) if refused else (0, False) for name in ENTRY_POINTS}


def outcome(process: subprocess.Popen[str]) -> tuple[int, bool]:
    """The exit status of `process`, and whether its stderr refused LOG_LEVEL."""
    _, stderr = process.communicate(timeout=60)
    return process.returncode, REFUSED in stderr
