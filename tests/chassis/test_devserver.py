"""`chassis/serving/devserver.py` as `make dev` runs it: werkzeug's reloader and server as real
processes, the envelope and tracking id, reloads after a change, the address it reads from
GUNICORN_BIND (loopback only), and the 500 envelope (never HTML) for an unhandled error or a
module that fails to import.

Every server listens on 127.0.0.1 and every wait is bounded.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from chassis.serving.devserver import LOAD_FAILED, is_loopback, listen_address
from harness.processes import PROBE, ROOT, base_env, free_port, get, wait_until
from tests.support.answers import ENVELOPE_HEADERS, header_names

# A throwaway module under tmp_path (on PYTHONPATH, so the reloader watches it): the kit's
# app with a route that reports VERSION, to see new code served, and one that fails.
PROBE_APP = """\
from app import create_app
from chassis.web.responses import ok

app = create_app()
VERSION = {version!r}


@app.get("/test/version")
def version():
    return ok({{"version": VERSION}})


@app.get("/test/boom")
def boom():
    raise RuntimeError("boom")
"""
PROBE_MODULE = "devserver_probe"


@dataclass
class DevServer:
    """`python -m chassis.serving.devserver [args]` on a free loopback port, in a session of its own
    so that the reloader's process and the serving one are stopped together."""

    tmp_path: Path
    args: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> DevServer:
        """Start the reloader; return once /healthz answers at all (the app may be broken)."""
        env = base_env(
            GUNICORN_BIND=f"127.0.0.1:{self.port}",
            DATABASE_URL=f"sqlite:///{self.tmp_path / 'app.db'}",
            PYTHONPATH=str(self.tmp_path),
        )
        cmd = [sys.executable, "-m", "chassis.serving.devserver", *self.args]
        with (self.tmp_path / "output.log").open("wb") as out:
            self.proc = subprocess.Popen(
                cmd, cwd=ROOT, env=env, stdout=out, stderr=out, start_new_session=True
            )
        self.wait_for(lambda status, _: True)
        return self

    def wait_for(
        self, check: Callable[[int, bytes], bool], path: str = "/healthz", timeout: float = 20
    ) -> None:
        """GET `path` until `check(status, body)` holds; fail with the output after `timeout`."""

        def answered() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"exited {self.proc.returncode}:\n{self.output()}")
            try:
                status, _, body = get(self.port, path, PROBE, timeout=2)
            except (OSError, http.client.HTTPException):
                # Refused while restarting, or cut off mid-answer (IncompleteRead) by the
                # reloader replacing the process that was serving it.
                return False
            return check(status, body)

        wait_until(answered, timeout, self.output)

    def stop(self) -> int:
        """SIGTERM the reloader and return its exit status (it kills the serving process)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(10)

    def output(self) -> str:
        """Everything both processes wrote so far."""
        return (self.tmp_path / "output.log").read_text(errors="replace")


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., DevServer]]:
    """Start a development server with `args`; kill its whole session after the test."""
    servers: list[DevServer] = []

    def start(*args: str) -> DevServer:
        server = DevServer(tmp_path, list(args))
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        if server.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.proc.pid, signal.SIGKILL)
            server.proc.wait()


def write_probe_app(tmp_path: Path, version: str) -> Path:
    """Write the probe module reporting `version` (its length changes with it, so Python
    never reuses bytecode cached within the same second)."""
    path = tmp_path / f"{PROBE_MODULE}.py"
    path.write_text(PROBE_APP.format(version=version))
    return path


def wait_for_version(server: DevServer, version: str, timeout: float = 20) -> None:
    """Wait until the probe app answers 200 with `version`."""

    def check(status: int, body: bytes) -> bool:
        return status == 200 and json.loads(body)["data"]["version"] == version

    server.wait_for(check, "/test/version", timeout)


def test_healthz_answers_the_envelope_with_the_tracking_id(
    serve: Callable[..., DevServer],
) -> None:
    """The app gunicorn.conf.py names answers /healthz in the envelope, echoing the id."""
    server = serve()
    status, headers, body = get(server.port, "/healthz", {"X-Tracking-ID": "dev-1"})
    assert status == 200
    assert headers["X-Tracking-ID"] == "dev-1"
    assert json.loads(body) == {
        "code": 200,
        "msg": "ok",
        "data": {"status": "alive"},
        "tracking_id": "dev-1",
    }


def test_a_path_that_is_not_utf8_is_a_400_as_under_gunicorn(
    serve: Callable[..., DevServer],
) -> None:
    """werkzeug's server decodes a path with errors="replace"; the development server hands
    the app its bytes, so `%FF%FE` and `%C0%AF` are each the 400 envelope, not one name (the
    check runs before routing, so any path shows it), and a path in UTF-8 still routes (a
    404 for no such route, as under gunicorn)."""
    server = serve()
    for name in ("%FF%FE", "%C0%AF"):
        status, _, body = get(server.port, f"/nowhere/{name}")
        assert (status, json.loads(body)["msg"]) == (400, "request path is not valid UTF-8")
    assert get(server.port, "/nowhere/%C3%A9")[0] == 404


def test_an_unhandled_error_answers_the_500_envelope_never_html(
    tmp_path: Path, serve: Callable[..., DevServer]
) -> None:
    """A view that raises gets the 500 envelope; the traceback goes to the log only."""
    write_probe_app(tmp_path, "1")
    server = serve(f"{PROBE_MODULE}:app")
    status, headers, body = get(server.port, "/test/boom", {"X-Tracking-ID": "boom-1"})
    assert (status, headers["Content-Type"]) == (500, "application/json")
    assert json.loads(body) == {
        "code": 500,
        "msg": "internal server error",
        "data": None,
        "tracking_id": "boom-1",
    }
    assert 'raise RuntimeError("boom")' in server.output()
    assert "Debugger" not in server.output()  # werkzeug's "Debugger is active!" and its PIN


def test_saving_a_watched_module_serves_the_new_code(
    tmp_path: Path, serve: Callable[..., DevServer]
) -> None:
    """A change to a module on the path restarts the serving process, which answers with
    the new code on the same port."""
    path = write_probe_app(tmp_path, "1")
    server = serve(f"{PROBE_MODULE}:app")
    wait_for_version(server, "1")
    write_probe_app(tmp_path, "22")
    wait_for_version(server, "22", timeout=10)
    assert f"Detected change in {str(path)!r}, reloading" in server.output()
    assert server.output().count("Restarting with") >= 2  # the first start, then the reload


def test_the_log_has_no_terminal_codes_and_one_development_key_warning(
    tmp_path: Path, serve: Callable[..., DevServer]
) -> None:
    """werkzeug's coloured lines (a 404's request line, its own warning) reach the log as
    plain text, and the development key is warned of once, not again on a reload."""
    write_probe_app(tmp_path, "1")
    server = serve(f"{PROBE_MODULE}:app")
    wait_for_version(server, "1")
    assert get(server.port, "/no-such-route")[0] == 404
    write_probe_app(tmp_path, "22")
    wait_for_version(server, "22", timeout=10)
    output = server.output()
    assert '"GET /no-such-route HTTP/1.1" 404' in output
    assert "\x1b" not in output
    assert "\\x1b" not in output
    assert output.count("SECRET_KEY is not set: using the fixed development key") == 1


def test_changing_an_extra_file_restarts_the_server(
    tmp_path: Path, serve: Callable[..., DevServer]
) -> None:
    """A file given with --extra-file is watched too, though Python never imports it."""
    extra = tmp_path / "extra.toml"
    extra.write_text("one = 1\n")
    server = serve("--extra-file", str(extra))
    server.wait_for(lambda status, _: status == 200)
    extra.write_text("one = 2\n")
    wait_until(lambda: server.output().count("Restarting with") >= 2, 10, server.output)
    assert f"Detected change in {str(extra)!r}, reloading" in server.output()
    server.wait_for(lambda status, _: status == 200)


def test_a_module_that_fails_to_import_answers_500_until_fixed(
    tmp_path: Path, serve: Callable[..., DevServer]
) -> None:
    """A syntax error mid-edit keeps the server up, answering the 500 envelope with the
    reason in the log; saving the fix serves the app again."""
    path = tmp_path / f"{PROBE_MODULE}.py"
    path.write_text("app = (\n")
    server = serve(f"{PROBE_MODULE}:app")
    status, headers, body = get(server.port, "/test/version", {"X-Tracking-ID": "broken-1"})
    assert (status, headers["Content-Type"]) == (500, "application/json")
    # The envelope's own writer: the headers of every app answer (tests/chassis/test_envelope.py).
    assert header_names(headers) == ENVELOPE_HEADERS
    assert json.loads(body) == {
        "code": 500,
        "msg": LOAD_FAILED,
        "data": None,
        "tracking_id": "broken-1",
    }
    assert "SyntaxError" in server.output()
    write_probe_app(tmp_path, "fixed")
    wait_for_version(server, "fixed", timeout=10)


def test_sigterm_stops_both_processes_and_exits_0(serve: Callable[..., DevServer]) -> None:
    """SIGTERM to the reloader also ends the process serving: nothing is left behind."""
    server = serve()
    assert server.stop() == 0
    assert server.proc is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(server.proc.pid, 0)


@pytest.mark.parametrize(
    "bind",
    [
        pytest.param("0.0.0.0:8000", id="any-ipv4"),
        pytest.param("[::]:8000", id="any-ipv6"),
        pytest.param("192.0.2.10:8000", id="an-interface"),
        pytest.param("example.com:8000", id="a-host-name"),
    ],
)
def test_an_address_off_loopback_is_refused_in_one_line(tmp_path: Path, bind: str) -> None:
    """Anything but loopback exits 1 before binding, with one line naming GUNICORN_BIND."""
    host = bind.rpartition(":")[0].strip("[]")
    result = subprocess.run(
        [sys.executable, "-m", "chassis.serving.devserver"],
        cwd=ROOT,
        env=base_env(GUNICORN_BIND=bind, DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}"),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr.splitlines() == [
        "configuration error: GUNICORN_BIND: the development server listens on loopback only: "
        f"127.0.0.1, [::1] or localhost (got {host})"
    ]


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        pytest.param("127.0.0.1", True, id="ipv4"),
        pytest.param("127.3.2.1", True, id="ipv4-range"),
        pytest.param("::1", True, id="ipv6"),
        pytest.param("localhost", True, id="localhost"),
        pytest.param("LocalHost", True, id="localhost-any-case"),
        pytest.param("0.0.0.0", False, id="any-ipv4"),
        pytest.param("::", False, id="any-ipv6"),
        pytest.param("10.0.0.1", False, id="private"),
        pytest.param("localhost.example.com", False, id="a-name-like-localhost"),
    ],
)
def test_only_loopback_hosts_pass(host: str, loopback: bool) -> None:
    """127.0.0.0/8, ::1 and localhost are loopback; any other address or name is not."""
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("bind", "address"),
    [
        pytest.param("127.0.0.1:8000", ("127.0.0.1", 8000), id="ipv4"),
        pytest.param("[::1]:8001", ("::1", 8001), id="ipv6"),
        pytest.param("0.0.0.0:80", ("0.0.0.0", 80), id="any"),
        pytest.param("localhost:65535", ("localhost", 65535), id="name"),
    ],
)
def test_a_tcp_bind_is_split_into_host_and_port(bind: str, address: tuple[str, int]) -> None:
    """HOST:PORT and [IPV6]:PORT, as gunicorn writes them."""
    assert listen_address(bind) == address


@pytest.mark.parametrize(
    "bind",
    [
        pytest.param("unix:/run/kit.sock", id="unix-socket"),
        pytest.param("fd://3", id="file-descriptor"),
        pytest.param("127.0.0.1", id="no-port"),
        pytest.param("::1:8000", id="ipv6-without-brackets"),
        pytest.param(":8000", id="no-host"),
        pytest.param("127.0.0.1:0", id="port-0"),
        pytest.param("127.0.0.1:65536", id="port-too-big"),
    ],
)
def test_any_other_bind_exits_naming_the_variable(bind: str) -> None:
    """What is not a TCP HOST:PORT stops the server with one line naming GUNICORN_BIND."""
    with pytest.raises(SystemExit) as exited:
        listen_address(bind)
    assert str(exited.value) == (
        f"configuration error: GUNICORN_BIND: must be HOST:PORT or [IPV6]:PORT (got {bind!r})"
    )
