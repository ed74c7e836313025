"""A real PostgreSQL server for tests and benchmarks: a throwaway cluster to stop, start, restart.

Reconnect tests must own the server outright, so this never touches a cluster the user runs:
it runs initdb into a temporary directory and serves on a free 127.0.0.1 port with trust auth.
"""

from __future__ import annotations

import os
import pwd
import re
import subprocess
from pathlib import Path

from harness import programs
from harness.processes import base_env, free_port

# PostgreSQL refuses to run as root; under root the server runs as this system user instead.
SYSTEM_USER = "postgres"
BINARIES = ("initdb", "pg_ctl", "psql")
MIN_VERSION = 13  # for DROP DATABASE ... WITH (FORCE)
TIMEOUT = 60
PG_CTL_WAIT = "50"  # under TIMEOUT, so pg_ctl reports its own timeout before we kill it
INSTALL_HINT = (
    f"install PostgreSQL 13+ ({programs.program('initdb').install_hint}) or set PG_BINDIR"
)
# Durability is worthless in a throwaway cluster; turning it off makes every write fast.
SETTINGS = """
listen_addresses = '127.0.0.1'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
"""


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    """Run `cmd` with a minimal environment and return stdout; raise RuntimeError on failure."""
    try:
        done = subprocess.run(
            cmd, check=True, capture_output=True, timeout=TIMEOUT, env=base_env(), cwd=cwd
        )
    except subprocess.CalledProcessError as exc:
        stderr = exc.stderr.decode(errors="replace")
        raise RuntimeError(f"{' '.join(cmd)} exited {exc.returncode}:\n{stderr}") from exc
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise RuntimeError(f"{' '.join(cmd)} failed: {exc}") from exc
    return done.stdout.decode(errors="replace")


def find_bindir() -> Path | None:
    """Return the directory of the PostgreSQL server binaries, or None if none is found."""
    candidates: list[Path] = []
    if env := os.environ.get("PG_BINDIR"):
        candidates.append(Path(env))
    elif initdb := programs.find("initdb"):
        # A link on PATH (/usr/local/bin/initdb) stands for the directory it points into.
        candidates.append(Path(initdb).resolve().parent)
    # A client-only package has pg_config and psql but no initdb: look past such a bindir.
    usable = (d for d in candidates if all(os.access(d / b, os.X_OK) for b in BINARIES))
    return next(usable, None)


def postgres_unavailable_reason() -> str | None:
    """Return None when a throwaway server can run here, else what to install or set."""
    bindir = find_bindir()
    if bindir is None:
        where = f" in PG_BINDIR={os.environ['PG_BINDIR']}" if os.environ.get("PG_BINDIR") else ""
        return f"PostgreSQL server binaries not found{where}: {INSTALL_HINT}"
    if os.geteuid() == 0 and SYSTEM_USER not in {user.pw_name for user in pwd.getpwall()}:
        return f"running as root needs a '{SYSTEM_USER}' system user to run PostgreSQL as"
    if os.geteuid() == 0 and (missing := programs.missing_reason("runuser")):
        return f"running as root, PostgreSQL is started as postgres with runuser: {missing}"
    version = _run([str(bindir / "initdb"), "--version"]).strip()
    match = re.search(r"\(PostgreSQL\) (\d+)", version)
    if match is None or int(match.group(1)) < MIN_VERSION:
        return f"{version} in {bindir} is too old: {INSTALL_HINT}"
    return None


class PostgresServer:
    """A throwaway PostgreSQL cluster in `base_dir`, on a free 127.0.0.1 port.

    Under root the server runs as postgres, which must be able to enter every folder above
    `base_dir`: harness.tempdirs.for_other_users makes such a folder."""

    def __init__(self, base_dir: Path) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError(f"PostgreSQL server binaries not found: {INSTALL_HINT}")
        self.bindir = bindir
        self.base_dir = base_dir.absolute()
        self.data_dir = self.base_dir / "data"
        self.log_path = self.base_dir / "server.log"
        self._port = free_port()

    @property
    def port(self) -> int:
        """The TCP port the server listens on, the same across restarts."""
        return self._port

    def url(self, database: str = "postgres") -> str:
        """Return the SQLAlchemy URL of `database` on this server."""
        return f"postgresql+psycopg2://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        """Create the cluster on first use, then start it and wait until it accepts connections."""
        if self._running():
            return
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        try:
            self._ctl("pg_ctl", "start", "-w", "-t", PG_CTL_WAIT, "-l", str(self.log_path))
        except RuntimeError as exc:
            log = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
            tail = "\n".join(log.splitlines()[-30:])
            raise RuntimeError(f"{exc}\n--- {self.log_path} ---\n{tail}") from exc

    def stop(self, mode: str = "fast") -> None:
        """Stop the server with pg_ctl's shutdown `mode` (smart, fast or immediate), if running."""
        if self._running():
            self._ctl("pg_ctl", "stop", "-m", mode, "-w", "-t", PG_CTL_WAIT)

    def postmaster(self) -> int:
        """The process id of the running server (the first line of postmaster.pid)."""
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def restart(self) -> None:
        """Stop the server, then start it again on the same port."""
        self.stop()
        self.start()

    def create_database(self, name: str) -> str:
        """Create database `name` and return its URL."""
        self._psql("CREATE DATABASE {}", name)
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name` if it exists, disconnecting any session still using it."""
        self._psql("DROP DATABASE IF EXISTS {} WITH (FORCE)", name)

    def _initdb(self) -> None:
        """Create the cluster: superuser postgres, trust auth, settings tuned for tests."""
        self.base_dir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            user = pwd.getpwnam(SYSTEM_USER)
            for path in [self.base_dir, *self.base_dir.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)
        self._ctl("initdb", "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "-N")
        socket_dir = str(self.base_dir).replace("'", "''")
        extra = f"port = {self.port}\nunix_socket_directories = '{socket_dir}'\n"
        # Appending keeps the file's owner, which matters when root writes for postgres.
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"\n# Added by harness/postgres.py{SETTINGS}{extra}")

    def _running(self) -> bool:
        """Tell whether the postmaster is up; pg_ctl status exits 3 when it is not."""
        try:
            self._ctl("pg_ctl", "status")
        except RuntimeError:
            return False
        return True

    def _ctl(self, binary: str, *args: str) -> None:
        """Run a server binary on this cluster, as the system user when we are root."""
        cmd = [str(self.bindir / binary), "-D", str(self.data_dir), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", SYSTEM_USER, "--", *cmd]
        _run(cmd, cwd=self.base_dir)

    def _psql(self, template: str, name: str) -> None:
        """Run one statement naming database `name` (quoted) as the superuser over TCP."""
        sql = template.format('"' + name.replace('"', '""') + '"')
        where = ["-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", "postgres"]
        _run([str(self.bindir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", *where, "-c", sql])
