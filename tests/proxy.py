"""Real nginx for tests: render the shipped templates with nginx/render, run, read logs.

The templates and their includes are used as shipped; only the outer nginx.conf (the part
a distribution or the nginx image provides) is written here, with every path inside a
private temp directory so that no root-owned location is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.processes import ROOT

NGINX_DIR = ROOT / "nginx"

# nginx.conf of the test server: what /etc/nginx/nginx.conf provides around conf.d/.
OUTER_CONF = """\
daemon off;
pid {dir}/nginx.pid;
error_log {dir}/error.log info;
{user}
events {{ worker_connections 256; }}
http {{
    types {{ text/plain txt; application/json json; text/css css; }}
    default_type application/octet-stream;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    include conf.d/*.conf;
}}
"""


def find_nginx() -> str | None:
    """Return the nginx binary (Debian installs it in /usr/sbin, off a user's PATH)."""
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


def nginx_unavailable_reason() -> str | None:
    """Say what to install when nginx or envsubst is missing, else None."""
    if find_nginx() is None:
        return "nginx is not installed (Debian/Ubuntu: apt-get install nginx)"
    if shutil.which("envsubst") is None:
        return "envsubst is not installed (Debian/Ubuntu: apt-get install gettext-base)"
    return None


def template_env(upstream_port: int, port: int, **overrides: str) -> dict[str, str]:
    """The template variables for a test server on 127.0.0.1:`port`."""
    return {
        "APP_UPSTREAM": f"127.0.0.1:{upstream_port}",
        "NGINX_PORT": f"127.0.0.1:{port}",
        "SERVER_NAME": "kit.test",
        "STATIC_ROOT": str(ROOT / "app" / "static"),
        "NGINX_RATE_LIMIT": "off",
        "NGINX_RATE": "20r/s",
        "NGINX_BURST": "40",
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
        """Render the template and lay out conf.d/ and kit/ as the deployment does."""
        rendered = render(self.template, self.variables)
        assert rendered.returncode == 0, rendered.stderr
        (self.dir / "conf.d").mkdir(parents=True, exist_ok=True)
        (self.dir / "tmp").mkdir(exist_ok=True)
        (self.dir / "conf.d" / "kit.conf").write_text(rendered.stdout)
        shutil.copytree(NGINX_DIR / "kit", self.dir / "kit", dirs_exist_ok=True)
        # As root, nginx's workers would switch to nobody, who cannot enter pytest's private
        # temp directories; a test server keeps root's rights.
        user = "user root;" if os.geteuid() == 0 else ""
        (self.dir / "nginx.conf").write_text(OUTER_CONF.format(dir=self.dir, user=user))
        return self.nginx("-t")

    def command(self, *args: str) -> list[str]:
        """The nginx command line for this server's configuration, plus `args`."""
        binary = find_nginx()
        assert binary is not None
        return [binary, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), *args]

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
        path = self.dir / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_lines(self) -> list[dict[str, Any]]:
        """Every access log line, parsed as JSON (fails on the first line that is not)."""
        text = self.access_log.read_text() if self.access_log.exists() else ""
        return [json.loads(line) for line in text.splitlines() if line.strip()]
