"""Real nginx for tests and benchmarks: render the shipped templates with nginx/render, run,
read logs.

nginx runs under Debian's stock /etc/nginx/nginx.conf, unmodified, with docs/nginx.md's
single-host steps applied: kit/ copied to /etc/nginx/kit, the template rendered into
/etc/nginx/conf.d/kit.conf, sites-enabled/default removed. A hand-written outer file would
hide exactly the clashes users meet (a directive the stock file already sets).

Each server gets a private copy of /etc/nginx in a mount namespace of its own (`unshare
--mount`): the copy is bind-mounted over /etc/nginx, and private directories over the
stock file's other paths (/run for the pid file, /var/log/nginx, /var/lib/nginx), so the
file keeps its absolute paths and nothing of the host's nginx is touched. That needs root,
as the stock file does (it switches workers to www-data). The official nginx image's outer
file is exercised by the compose tests (tests/deploy/test_compose.py).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from harness import programs, tempdirs
from harness.processes import ROOT

NGINX_DIR = ROOT / "nginx"
STOCK_DIR = Path("/etc/nginx")
STOCK_CONF = STOCK_DIR / "nginx.conf"

# Bind each private directory over the path the stock file names, then run nginx.
NAMESPACE_SCRIPT = """\
mount --bind "$1" /etc/nginx && mount --bind "$2" /run && mount --bind "$3" /var/log/nginx \\
  && mount --bind "$4" /var/lib/nginx && shift 4 && exec "$@"
"""


def find_nginx() -> str | None:
    """Return the nginx binary (Debian installs it in /usr/sbin, off a user's PATH)."""
    return programs.find("nginx")


def stock_conf_changed() -> bool:
    """Whether /etc/nginx/nginx.conf differs from the file Debian's nginx-common shipped."""
    listed = subprocess.run(
        ["dpkg-query", "-W", "-f=${Conffiles}", "nginx-common"],
        capture_output=True,
        text=True,
        timeout=10,
    ).stdout
    shipped = {
        path: md5
        for path, md5, *_ in (line.split() for line in listed.splitlines() if line.strip())
    }
    actual = hashlib.md5(STOCK_CONF.read_bytes(), usedforsecurity=False).hexdigest()
    return shipped.get(str(STOCK_CONF)) != actual


def nginx_unavailable_reason() -> str | None:
    """Say what to install (or how to run) when stock Debian nginx cannot be run, else None."""
    if reason := programs.missing_reason("nginx", "envsubst", "unshare"):
        return reason
    if not STOCK_CONF.exists():
        return f"Debian's nginx is not installed ({STOCK_CONF} is missing): apt-get install nginx"
    if os.geteuid() != 0:
        return (
            "the nginx tests run Debian's stock nginx.conf in a mount namespace: run them as root"
        )
    if stock_conf_changed():
        return f"{STOCK_CONF} is not the file Debian shipped (dpkg --verify nginx-common)"
    return None


def template_env(upstream_port: int, port: int, **overrides: str) -> dict[str, str]:
    """The template variables for a test server on 127.0.0.1:`port`."""
    return {
        "APP_UPSTREAM": f"127.0.0.1:{upstream_port}",
        "NGINX_PORT": f"127.0.0.1:{port}",
        "SERVER_NAME": "kit.test",
        "STATIC_ROOT": str(tempdirs.static_root()),
        "NGINX_RATE_LIMIT": "off",
        "NGINX_RATE": "20r/s",
        "NGINX_BURST": "40",
        "NGINX_CONN_LIMIT": "100",
        **overrides,
    }


def render(template: Path, variables: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run nginx/render on `template`, as a host install does."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **variables}
    return subprocess.run(
        [str(NGINX_DIR / "render"), str(template)],
        env=env,
        capture_output=True,
        text=True,
        timeout=10,
    )


class Nginx:
    """One nginx master serving a rendered template from its own directory."""

    def __init__(self, workdir: Path, template: Path, variables: dict[str, str]) -> None:
        self.dir = workdir
        self.port = int(variables["NGINX_PORT"].rsplit(":", 1)[1])
        self.access_log = workdir / "access.log"
        self.variables = {"NGINX_ACCESS_LOG": str(self.access_log), **variables}
        self.template = template
        self.proc: subprocess.Popen[bytes] | None = None

    def configure(self) -> subprocess.CompletedProcess[str]:
        """Copy the stock /etc/nginx, apply docs/nginx.md's single-host steps, run `nginx -t`."""
        rendered = render(self.template, self.variables)
        assert rendered.returncode == 0, rendered.stderr
        etc = self.dir / "etc"
        shutil.copytree(STOCK_DIR, etc, symlinks=True, dirs_exist_ok=True)
        shutil.copytree(NGINX_DIR / "kit", etc / "kit", dirs_exist_ok=True)
        (etc / "conf.d" / "kit.conf").write_text(rendered.stdout)
        (etc / "sites-enabled" / "default").unlink(missing_ok=True)
        for private in ("run", "log", "lib"):
            (self.dir / private).mkdir(exist_ok=True)
        return self.nginx("-t")

    def command(self, *args: str) -> list[str]:
        """The nginx command line, in a private mount namespace, plus `args`."""
        binary = find_nginx()
        assert binary is not None
        mounts = [str(self.dir / name) for name in ("etc", "run", "log", "lib")]
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            NAMESPACE_SCRIPT,
            "sh",
            *mounts,
            # In the foreground, as the nginx image runs it; the stock file does not say.
            binary,
            "-g",
            "daemon off;",
            *args,
        ]

    def nginx(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run nginx with `args` (such as -t) against this server's configuration."""
        return subprocess.run(self.command(*args), capture_output=True, text=True, timeout=10)

    def start(self) -> Nginx:
        """Configure, start, and wait until the port accepts connections (a request would
        count against the rate limit)."""
        checked = self.configure()
        assert checked.returncode == 0, checked.stderr
        self.proc = subprocess.Popen(
            self.command(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise AssertionError(f"nginx did not start:\n{self.error_log()}")

    def stop(self) -> None:
        """Stop nginx (SIGTERM: fast shutdown) and wait for it."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    def error_log(self) -> str:
        """nginx's error log so far."""
        path = self.dir / "log" / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_lines(self) -> list[dict[str, Any]]:
        """Every access log line, parsed as JSON (fails on the first line that is not)."""
        text = self.access_log.read_text() if self.access_log.exists() else ""
        # Only whole lines: nginx may be writing the last one as it is read.
        complete = text[: text.rfind("\n") + 1]
        return [json.loads(line) for line in complete.splitlines() if line.strip()]


class ConfdNginx(Nginx):
    """One nginx master serving files placed in conf.d as they are, nothing rendered: a server
    block shipped inside a Kubernetes ConfigMap, mounted where an image includes conf.d/*.conf
    inside http {} (the official images and Debian's stock file alike)."""

    def __init__(self, workdir: Path, files: dict[str, str], port: int) -> None:
        # No template and no variables: the parent's configure() is replaced below.
        self.dir = workdir
        self.files = files
        self.port = port
        self.access_log = workdir / "log" / "access.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def configure(self) -> subprocess.CompletedProcess[str]:
        """Copy the stock /etc/nginx, put the files in conf.d, drop the default site (it
        would listen on port 80), run `nginx -t`."""
        etc = self.dir / "etc"
        shutil.copytree(STOCK_DIR, etc, symlinks=True, dirs_exist_ok=True)
        for name, text in self.files.items():
            (etc / "conf.d" / name).write_text(text)
        (etc / "sites-enabled" / "default").unlink(missing_ok=True)
        for private in ("run", "log", "lib"):
            (self.dir / private).mkdir(exist_ok=True)
        return self.nginx("-t")
