"""deploy/systemd/kit.service: systemd accepts it, its directives say what the kit promises,
and the app still serves under its strictest sandboxing directive.

systemd itself is not needed: `systemd-analyze verify` and `security --offline` check a unit
file without a running service manager.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import programs
from harness.processes import ROOT, base_env, free_port, get

UNIT = ROOT / "deploy" / "systemd" / "kit.service"
SYSTEMD_ANALYZE = programs.find("systemd-analyze")

# The highest `systemd-analyze security` exposure (0 = locked down, 10 = unprotected) the
# unit may have; it is 1.7 today. A removed hardening directive pushes it over.
MAX_EXPOSURE = 2.0

PR_SET_MDWE = 65  # prctl: Linux 6.3+; systemd 254+ implements MemoryDenyWriteExecute= with it
PR_MDWE_REFUSE_EXEC_GAIN = 1


@pytest.fixture
def needs_systemd_analyze() -> None:
    """Skip (or fail, under KIT_REQUIRE_SERVICES) unless systemd-analyze is installed."""
    programs.require("systemd-analyze")


def parse_unit(text: str) -> dict[str, list[tuple[str, str]]]:
    """Return each section's (key, value) pairs in order; keys may repeat (Environment=)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], [])
            continue
        key, _, value = line.partition("=")
        current.append((key.strip(), value.strip()))
    return sections


def directive(section: str, key: str) -> list[str]:
    """Every value the unit assigns to `key` in `section`."""
    pairs = parse_unit(UNIT.read_text())[section]
    return [value for name, value in pairs if name == key]


def environment() -> dict[str, str]:
    """The unit's Environment= assignments as a mapping."""
    return dict(line.split("=", 1) for line in directive("Service", "Environment"))


def installed_copy(tmp_path: Path) -> Path:
    """The unit as installed on this machine: /srv/kit is this checkout (its real gunicorn)."""
    env_file = tmp_path / "kit.env"
    env_file.write_text(
        "SECRET_KEY=c43df274ef2cb4533a5926e8882adc8b9d7b2b49921e39cc8c56c978eee8f235\n"
    )
    text = UNIT.read_text().replace("/srv/kit", str(ROOT))
    unit = tmp_path / "kit.service"
    unit.write_text(text.replace("/etc/kit/kit.env", str(env_file)))
    return unit


@pytest.mark.usefixtures("needs_systemd_analyze")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """systemd-analyze verify accepts the unit without an error or a warning about it."""
    unit = installed_copy(tmp_path)
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env=base_env(),
    )
    # Unknown keys and unparsable values are only warnings (exit 0), so read stderr too.
    complaints = [line for line in done.stderr.splitlines() if unit.name in line]
    assert (done.returncode, complaints) == (0, [])


@pytest.mark.usefixtures("needs_systemd_analyze")
def test_unit_sandbox_exposure_is_low(tmp_path: Path) -> None:
    """systemd-analyze security rates the unit's sandbox at most MAX_EXPOSURE."""
    unit = installed_copy(tmp_path)
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        env=base_env(),
    )
    if "--offline" in done.stderr:
        pytest.skip("systemd-analyze security --offline needs systemd 250 or newer")
    match = re.search(r"Overall exposure level for kit\.service: ([\d.]+)", done.stdout)
    assert match is not None, done.stdout + done.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE, done.stdout


@pytest.mark.parametrize(
    ("section", "key", "expected"),
    [
        pytest.param("Service", "Type", ["notify"], id="gunicorn-notifies-readiness"),
        pytest.param("Service", "NotifyAccess", ["main"], id="only-the-master-notifies"),
        pytest.param("Service", "WorkingDirectory", ["/srv/kit"], id="runs-in-the-checkout"),
        pytest.param(
            "Service",
            "ExecStart",
            ["/srv/kit/.venv/bin/gunicorn -c gunicorn.conf.py"],
            id="the-image-command",
        ),
        pytest.param("Service", "EnvironmentFile", ["/etc/kit/kit.env"], id="secrets-file"),
        pytest.param("Service", "ExecReload", ["/bin/kill -s HUP $MAINPID"], id="reload-is-hup"),
        pytest.param("Service", "KillSignal", ["SIGTERM"], id="stop-signal-is-term"),
        pytest.param("Service", "KillMode", ["mixed"], id="term-to-the-master-only"),
        pytest.param("Service", "TimeoutStopSec", ["45"], id="stop-timeout-45s"),
        pytest.param("Service", "Restart", ["on-failure"], id="restart-after-crash-only"),
        pytest.param("Service", "ExecStartPre", [], id="migrations-are-a-separate-step"),
        pytest.param("Service", "MemoryDenyWriteExecute", ["yes"], id="no-writable-code"),
        pytest.param("Service", "ProtectSystem", ["strict"], id="read-only-file-system"),
        pytest.param("Service", "CapabilityBoundingSet", [""], id="no-capabilities"),
    ],
)
def test_unit_directive(section: str, key: str, expected: list[str]) -> None:
    """The unit sets each directive the kit's deployment notes rely on."""
    assert directive(section, key) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("APP_ENV", "production", id="production"),
        pytest.param("LOG_FORMAT", "json", id="json-logs"),
        pytest.param("GUNICORN_BIND", "127.0.0.1:8000", id="loopback-for-nginx"),
        pytest.param("PROXY_FIX_X_FOR", "1", id="x-for-one-hop"),
        pytest.param("PROXY_FIX_X_PROTO", "1", id="x-proto-one-hop"),
        pytest.param("PROXY_FIX_X_HOST", "1", id="x-host-one-hop"),
    ],
)
def test_unit_environment(name: str, expected: str) -> None:
    """The unit's Environment= lines configure production behind one proxy on this host."""
    assert environment()[name] == expected


def test_unit_leaves_untrusted_forwarded_headers_alone() -> None:
    """Only the headers nginx sets are trusted: no PROXY_FIX_X_PORT or PROXY_FIX_X_PREFIX."""
    assert {"PROXY_FIX_X_PORT", "PROXY_FIX_X_PREFIX"} & environment().keys() == set()


def test_unit_runs_as_unprivileged_user() -> None:
    """The service runs as its own user, never root."""
    assert directive("Service", "User") == ["kit"]


def mdwe_available() -> bool:
    """Whether this kernel can refuse writable-executable memory (PR_SET_MDWE, Linux 6.3+)."""
    call = f"ctypes.CDLL(None).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0)"
    probe = f"import ctypes, sys; sys.exit({call} != 0)"
    return subprocess.run([sys.executable, "-c", probe], timeout=30).returncode == 0


# Turns on MemoryDenyWriteExecute as systemd 254+ does, then becomes gunicorn serving the
# kit's app with the tests' resource (harness/apps/records.py); the setting is inherited by
# every worker.
MDWE_LAUNCHER = f"""
import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0):
    raise SystemExit("prctl(PR_SET_MDWE) failed: " + os.strerror(ctypes.get_errno()))
gunicorn = ["-m", "gunicorn", "-c", "gunicorn.conf.py", "harness.apps.sleepy:app"]
os.execv(sys.executable, [sys.executable, *gunicorn])
"""


@pytest.mark.parametrize("worker_class", ["sync", "gthread", "gevent"])
def test_app_serves_under_memory_deny_write_execute(
    worker_class: str, database_url: str, tmp_path: Path
) -> None:
    """With writable-executable memory refused, every worker class boots and queries the
    database (greenlet, psycopg2 and SQLite need none), so MemoryDenyWriteExecute=yes is safe."""
    if not mdwe_available():
        pytest.skip("needs Linux 6.3+ (PR_SET_MDWE) to apply MemoryDenyWriteExecute")
    port = free_port()
    env = base_env(
        APP_ENV="production",
        SECRET_KEY="db0230cf737d73ec2933e8182ba608cbd4b1e8cff35bc175b7f88253c73fc015",
        DATABASE_URL=database_url,
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKER_CLASS=worker_class,
        WEB_CONCURRENCY="1",
    )
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", MDWE_LAUNCHER], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    try:
        deadline = time.monotonic() + 20
        while "Worker ready" not in log.read_text(errors="replace"):
            assert proc.poll() is None, log.read_text(errors="replace")
            assert time.monotonic() < deadline, log.read_text(errors="replace")
            time.sleep(0.1)
        statuses = [get(port, path)[0] for path in ("/healthz", "/readyz", "/test/records")]
        assert statuses == [200, 200, 200], log.read_text(errors="replace")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
