"""nginx/ under real nginx in front of real gunicorn: headers, tracking ids, the JSON
envelope for nginx's own errors, static files, limits, compression and the TLS variant.

Every server listens on 127.0.0.1; clients connect to 127.0.0.1 only (some from another
loopback source address, so the address the app sees proves ProxyFix's work).
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest

from harness import programs
from harness.processes import ROOT, Gunicorn, base_env, free_port
from harness.proxy import NGINX_DIR, Nginx, render, template_env
from tests.support.flask_app import migrate

pytestmark = pytest.mark.usefixtures("requires_nginx")

PLAIN = NGINX_DIR / "templates" / "kit.conf.template"
TLS = NGINX_DIR / "tls" / "kit.conf.template"
HOST = "kit.test"
HEX32 = set("0123456789abcdef")
ONE_MIB = 1024 * 1024
T = TypeVar("T")


class Answer:
    """A response with every header kept, repeats included."""

    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.header_list = response.getheaders()
        self.body = response.read()

    def header(self, name: str) -> str | None:
        """The header's only value; fails if it was sent twice."""
        values = [v for k, v in self.header_list if k.lower() == name.lower()]
        assert len(values) <= 1, f"{name} sent {len(values)} times"
        return values[0] if values else None

    def json(self) -> Any:
        """The body, decompressed when gzipped, parsed as JSON."""
        body = gzip.decompress(self.body) if self.header("Content-Encoding") else self.body
        return json.loads(body)


def send(
    port: int,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    body: bytes | None = None,
    source: str = "127.0.0.1",
) -> Answer:
    """Send one request to 127.0.0.1:`port` from `source`, with Host kit.test by default."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(source, 0))
    try:
        conn.request(method, path, body=body, headers={"Host": HOST, **(headers or {})})
        return Answer(conn.getresponse())
    finally:
        conn.close()


def upstream_lines(upstream: Gunicorn, tracking_id: str) -> list[dict[str, Any]]:
    """gunicorn's stdout lines (access log and app logs) carrying `tracking_id`."""
    return [line for line in upstream.json_lines() if line.get("tracking_id") == tracking_id]


def nginx_lines(server: Nginx, tracking_id: str) -> list[dict[str, Any]]:
    """nginx's access log lines carrying `tracking_id`."""
    return [line for line in server.access_lines() if line["tracking_id"] == tracking_id]


def eventually(read: Callable[[], list[T]], count: int = 1, timeout: float = 5) -> list[T]:
    """Poll `read` until it returns `count` items: both servers log after answering."""
    deadline = time.monotonic() + timeout
    while len(found := read()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def header_fields(head: bytes) -> dict[str, list[str]]:
    """A request head's header fields: each lower-case name with its values, in order."""
    fields: dict[str, list[str]] = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        if line:
            name, _, value = line.partition(":")
            fields.setdefault(name.lower(), []).append(value.strip())
    return fields


class RawUpstream:
    """An upstream on a bare socket: it reads each request's head and records it, then sends
    `answer`, or with None closes the connection without an answer, like a worker killed
    mid-request."""

    def __init__(self, answer: bytes | None = None) -> None:
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.heads: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # the listener closed: the test is over
            while True:
                client, _ = self.listener.accept()
                with client:
                    head = b""
                    while b"\r\n\r\n" not in head and (chunk := client.recv(65536)):
                        head += chunk
                    self.heads.append(head)
                    if self.answer is not None:
                        client.sendall(self.answer)

    @property
    def methods(self) -> list[str]:
        """The method of each request received."""
        return [head.split(b" ", 1)[0].decode() for head in self.heads]

    def fields(self, tracking_id: str) -> dict[str, list[str]]:
        """The header fields of the one request that carried `tracking_id`."""
        (found,) = [
            fields
            for fields in map(header_fields, self.heads)
            if fields.get("x-tracking-id") == [tracking_id]
        ]
        return found

    def close(self) -> None:
        self.listener.close()


# What a RawUpstream answers when it answers: the smallest JSON, then it closes.
ANSWER_200 = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
    b"Connection: close\r\n\r\n{}"
)


@pytest.fixture(scope="module")
def upstream(requires_nginx: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gunicorn]:
    """The test app under gunicorn, trusting one proxy hop as every deployment does."""
    workdir = tmp_path_factory.mktemp("upstream")
    url = f"sqlite:///{workdir / 'app.db'}"
    migrate(url)
    env = base_env(
        LOG_FORMAT="json",
        LOG_LEVEL="INFO",
        DATABASE_URL=url,
        PROXY_FIX_X_FOR="1",
        PROXY_FIX_X_PROTO="1",
        PROXY_FIX_X_HOST="1",
    )
    server = Gunicorn(workdir, env, args=["harness.apps.sleepy:app"]).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(upstream: Gunicorn, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """nginx rendered from the plain template, in front of `upstream`."""
    variables = template_env(upstream.port, free_port())
    server = Nginx(tmp_path_factory.mktemp("nginx"), PLAIN, variables).start()
    yield server
    server.stop()


@pytest.fixture
def start_nginx(tmp_path: Path) -> Iterator[Any]:
    """Start extra nginx servers for one test (other variables); stops them afterwards."""
    servers: list[Nginx] = []

    def start(template: Path, variables: dict[str, str]) -> Nginx:
        server = Nginx(tmp_path / f"nginx{len(servers)}", template, variables).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_render_fails_naming_the_missing_variable() -> None:
    """nginx/render refuses to write a configuration with a variable left unset."""
    variables = template_env(8000, 8080)
    del variables["SERVER_NAME"]
    result = render(PLAIN, {**variables, "NGINX_ACCESS_LOG": "/dev/stdout"})
    assert result.returncode == 2
    assert "SERVER_NAME is not set" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize("template", [pytest.param(PLAIN, id="plain"), pytest.param(TLS, id="tls")])
def test_rendered_template_passes_nginx_t(template: Path, tmp_path: Path) -> None:
    """`nginx -t` accepts each rendered template with the shipped includes."""
    cert, key = self_signed_certificate(tmp_path)
    variables = template_env(
        8000,
        free_port(),
        NGINX_TLS_PORT=f"127.0.0.1:{free_port()}",
        TLS_CERTIFICATE=str(cert),
        TLS_CERTIFICATE_KEY=str(key),
    )
    checked = Nginx(tmp_path / "nginx", template, variables).configure()
    assert checked.returncode == 0, checked.stderr
    assert "test is successful" in checked.stderr


@pytest.mark.parametrize(
    ("headers", "field", "expected"),
    [
        pytest.param({}, "remote_addr", "127.0.0.3", id="client-address"),
        pytest.param(
            {"X-Forwarded-For": "203.0.113.9"}, "remote_addr", "127.0.0.3", id="forged-for"
        ),
        pytest.param(
            {"X-Forwarded-For": "203.0.113.9, 198.51.100.1"},
            "remote_addr",
            "127.0.0.3",
            id="forged-for-chain",
        ),
        pytest.param({"X-Forwarded-Host": "evil.example"}, "host", HOST, id="forged-host"),
        pytest.param({"X-Forwarded-Proto": "https"}, "scheme", "http", id="forged-proto"),
        # gunicorn's own scheme headers, which it believes from nginx's address; beside
        # nginx's X-Forwarded-Proto they made gunicorn refuse the request (400).
        pytest.param({"X-Forwarded-Ssl": "on"}, "scheme", "http", id="forged-ssl"),
        pytest.param({"X-Forwarded-Protocol": "ssl"}, "scheme", "http", id="forged-protocol"),
    ],
)
def test_forged_forwarded_headers_do_not_reach_the_app(
    proxy: Nginx, headers: dict[str, str], field: str, expected: str
) -> None:
    """The app sees the address nginx saw (127.0.0.3 here), never what the client claims."""
    answer = send(proxy.port, "GET", "/test/whoami", headers, source="127.0.0.3")
    assert answer.status == 200
    assert answer.json()["data"][field] == expected


@pytest.fixture(scope="module")
def recorder(
    requires_nginx: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Nginx, RawUpstream]]:
    """nginx from the plain template in front of a RawUpstream answering 200: (nginx, the
    upstream that records every request head)."""
    recording = RawUpstream(answer=ANSWER_200)
    variables = template_env(recording.port, free_port())
    server = Nginx(tmp_path_factory.mktemp("nginx-recorder"), PLAIN, variables).start()
    yield server, recording
    server.stop()
    recording.close()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("Forwarded", "for=203.0.113.9;proto=https;host=evil.example", id="forwarded"),
        pytest.param("X-Forwarded-Port", "8443", id="x-forwarded-port"),
        pytest.param("X-Forwarded-Prefix", "/evil", id="x-forwarded-prefix"),
        pytest.param("X-Forwarded-Ssl", "on", id="x-forwarded-ssl"),
        pytest.param("X-Forwarded-Protocol", "ssl", id="x-forwarded-protocol"),
        pytest.param("X-Real-IP", "203.0.113.9", id="x-real-ip"),
    ],
)
def test_other_forwarded_headers_never_reach_the_upstream(
    recorder: tuple[Nginx, RawUpstream], name: str, value: str
) -> None:
    """A forwarded header nginx does not set is dropped; the upstream still gets the three
    nginx sets, once each, with nginx's values."""
    server, recording = recorder
    tracking_id = f"dropped-{name.lower()}"
    headers = {name: value, "X-Forwarded-For": "203.0.113.9", "X-Tracking-ID": tracking_id}
    assert send(server.port, "GET", "/test/whoami", headers, source="127.0.0.3").status == 200
    fields = recording.fields(tracking_id)
    assert name.lower() not in fields
    forwarded = {
        key: fields.get(key) for key in ("x-forwarded-for", "x-forwarded-proto", "x-forwarded-host")
    }
    assert forwarded == {
        "x-forwarded-for": ["127.0.0.3"],
        "x-forwarded-proto": ["http"],
        "x-forwarded-host": [HOST],
    }


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(None, id="no-id"),
        pytest.param("has space", id="invalid-id"),
        pytest.param("x" * 129, id="too-long"),
    ],
)
def test_nginx_minted_id_is_the_same_in_four_places(
    proxy: Nginx, upstream: Gunicorn, sent: str | None
) -> None:
    """nginx's $request_id is in the response header and body, nginx's access log, the app's
    log line and gunicorn's access log."""
    answer = send(proxy.port, "GET", "/test/log", {"X-Tracking-ID": sent} if sent else {})
    tracking_id = answer.header("X-Tracking-ID")
    assert tracking_id is not None
    assert len(tracking_id) == 32
    assert set(tracking_id) <= HEX32
    assert answer.json()["tracking_id"] == tracking_id
    logged_by_nginx = eventually(lambda: nginx_lines(proxy, tracking_id))
    assert [line["uri"] for line in logged_by_nginx] == ["/test/log"]
    logged = eventually(lambda: upstream_lines(upstream, tracking_id), count=2)
    assert [line.get("message") for line in logged if line.get("logger") == "tests.sleepy"] == [
        "handled"
    ]
    assert [line["path"] for line in logged if "status" in line] == ["/test/log"]


def test_valid_client_id_is_kept_end_to_end(proxy: Nginx, upstream: Gunicorn) -> None:
    """A well-formed client id is forwarded, logged by both servers and echoed once."""
    answer = send(proxy.port, "GET", "/test/log", {"X-Tracking-ID": "client-id:42"})
    assert answer.header("X-Tracking-ID") == "client-id:42"
    assert answer.json()["tracking_id"] == "client-id:42"
    assert eventually(lambda: nginx_lines(proxy, "client-id:42"))
    logged = eventually(lambda: upstream_lines(upstream, "client-id:42"), count=2)
    assert any("status" in line for line in logged)


def test_a_timed_out_request_keeps_the_clients_id_through_nginx(
    start_nginx: Any, tmp_path: Path
) -> None:
    """A request whose worker gunicorn's master kills (GUNICORN_TIMEOUT) comes back through
    nginx as the 500 envelope with the client's tracking id, and nginx's access line and
    gunicorn's carry that id too: not a fresh one no log had."""
    env = base_env(
        LOG_FORMAT="json", DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}", WEB_CONCURRENCY="1",
        GUNICORN_TIMEOUT="2", PROXY_FIX_X_FOR="1", PROXY_FIX_X_PROTO="1", PROXY_FIX_X_HOST="1",
    )  # fmt: skip
    upstream = Gunicorn(tmp_path, env, args=["harness.apps.sleepy:app"]).start()
    try:
        proxy = start_nginx(PLAIN, template_env(upstream.port, free_port()))
        answer = send(proxy.port, "GET", "/test/sleep?s=6", {"X-Tracking-ID": "slow-nginx-1"})
        assert (answer.status, answer.header("X-Tracking-ID")) == (500, "slow-nginx-1")
        assert answer.json()["tracking_id"] == "slow-nginx-1"
        (logged,) = eventually(lambda: nginx_lines(proxy, "slow-nginx-1"))
        assert logged["status"] == 500
        access = eventually(lambda: upstream_lines(upstream, "slow-nginx-1"))
        assert [line["status"] for line in access if "status" in line] == [500]
    finally:
        upstream.stop()


def test_access_log_is_json_with_upstream_timing(proxy: Nginx) -> None:
    """nginx's access log line parses as JSON, escapes what the client sent and times the
    upstream."""
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as sock:
        sock.sendall(
            b'GET /test/whoami?q="\\%22 HTTP/1.1\r\nHost: kit.test\r\n'
            b'User-Agent: a"b\\c\xc3\xa9\r\nX-Tracking-ID: log-escaping\r\n'
            b"Connection: close\r\n\r\n"
        )
        assert sock.recv(100).startswith(b"HTTP/1.1 200")
    (line,) = eventually(lambda: nginx_lines(proxy, "log-escaping"))
    assert line["uri"] == '/test/whoami?q="\\%22'
    assert line["user_agent"] == 'a"b\\cé'
    assert line["status"] == 200
    assert line["method"] == "GET"
    assert line["upstream"].startswith("127.0.0.1:")
    assert float(line["upstream_response_time_s"]) >= 0
    assert line["request_time_s"] >= 0


def test_security_headers_and_no_version(proxy: Nginx) -> None:
    """Proxied answers carry the security headers once, no HSTS over HTTP, no version."""
    answer = send(proxy.port, "GET", "/healthz")
    assert answer.status == 200
    assert answer.header("X-Content-Type-Options") == "nosniff"
    assert answer.header("X-Frame-Options") == "DENY"
    assert answer.header("Referrer-Policy") == "strict-origin-when-cross-origin"
    assert answer.header("Strict-Transport-Security") is None
    assert answer.header("Server") == "nginx"


def test_oversized_body_gets_the_413_envelope(proxy: Nginx, upstream: Gunicorn) -> None:
    """A body over 1 MiB is refused by nginx with the envelope; gunicorn never sees it."""
    answer = send(proxy.port, "POST", "/test/records", body=b"x" * (ONE_MIB + 1))
    assert answer.status == 413
    tracking_id = answer.header("X-Tracking-ID")
    assert answer.header("Content-Type") == "application/json"
    assert answer.json() == {
        "code": 413,
        "msg": "request body is over the 1 MiB limit",
        "data": None,
        "tracking_id": tracking_id,
    }
    assert answer.header("Cache-Control") == "no-store"
    (line,) = eventually(lambda: nginx_lines(proxy, str(tracking_id)))
    assert line["upstream"] == ""  # never proxied
    assert upstream_lines(upstream, str(tracking_id)) == []


def test_body_at_the_app_limit_reaches_the_app(proxy: Nginx, upstream: Gunicorn) -> None:
    """nginx's limit is not below the app's: a 1 MiB body is answered by the app."""
    answer = send(
        proxy.port,
        "POST",
        "/test/records",
        {"Content-Type": "application/json"},
        body=b"x" * ONE_MIB,
    )
    assert answer.status == 400  # the app's verdict on the body: not JSON
    assert answer.json()["msg"] == "request body is not valid JSON"
    assert eventually(lambda: upstream_lines(upstream, str(answer.header("X-Tracking-ID"))))


def test_unknown_host_gets_no_response(proxy: Nginx) -> None:
    """A Host nginx does not serve is closed without an answer (444)."""
    with pytest.raises(http.client.RemoteDisconnected):
        send(proxy.port, "GET", "/healthz", {"Host": "other.example"})


def test_static_file_is_served_without_gunicorn(proxy: Nginx, upstream: Gunicorn) -> None:
    """/static/ comes from disk, with a cache lifetime; gunicorn logs no such request."""
    answer = send(proxy.port, "GET", "/static/robots.txt", {"X-Tracking-ID": "static-file"})
    assert answer.status == 200
    assert answer.body == (ROOT / "app" / "static" / "robots.txt").read_bytes()
    assert answer.header("Cache-Control") == "max-age=3600"
    assert answer.header("X-Tracking-ID") == "static-file"
    (line,) = eventually(lambda: nginx_lines(proxy, "static-file"))
    assert line["upstream"] == ""  # never proxied
    assert upstream_lines(upstream, "static-file") == []


def test_json_is_compressed(proxy: Nginx) -> None:
    """A large JSON answer is gzipped for a client that accepts it; a small one is not."""
    big = send(proxy.port, "GET", "/test/big", {"Accept-Encoding": "gzip"})
    assert big.header("Content-Encoding") == "gzip"
    assert len(big.json()["data"]["rows"]) == 200
    small = send(proxy.port, "GET", "/healthz", {"Accept-Encoding": "gzip"})
    assert small.header("Content-Encoding") is None


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_upstream_down_gets_the_502_envelope(start_nginx: Any, method: str) -> None:
    """With gunicorn down, nginx answers 502 in the envelope, with the tracking id."""
    server = start_nginx(PLAIN, template_env(free_port(), free_port()))
    answer = send(server.port, method, "/api/widgets", {"X-Tracking-ID": "no-upstream"})
    assert answer.status == 502
    assert answer.header("Content-Type") == "application/json"
    assert answer.header("X-Tracking-ID") == "no-upstream"
    assert answer.header("X-Content-Type-Options") == "nosniff"
    assert answer.json() == {
        "code": 502,
        "msg": "bad gateway",
        "data": None,
        "tracking_id": "no-upstream",
    }
    (line,) = eventually(lambda: nginx_lines(server, "no-upstream"))
    assert line["status"] == 502


def test_static_files_need_no_upstream(start_nginx: Any) -> None:
    """Static files are served while gunicorn is down."""
    server = start_nginx(PLAIN, template_env(free_port(), free_port()))
    assert send(server.port, "GET", "/static/robots.txt").status == 200


def test_rate_limit_answers_429_envelope(start_nginx: Any, upstream: Gunicorn) -> None:
    """With the optional limit on, requests over rate + burst get the 429 envelope."""
    variables = template_env(
        upstream.port, free_port(), NGINX_RATE_LIMIT="on", NGINX_RATE="1r/m", NGINX_BURST="2"
    )
    server = start_nginx(PLAIN, variables)
    statuses = [send(server.port, "GET", "/healthz").status for _ in range(5)]
    assert statuses == [200, 200, 200, 429, 429]
    limited = send(server.port, "GET", "/healthz", {"X-Tracking-ID": "limited"})
    assert limited.json() == {
        "code": 429,
        "msg": "too many requests",
        "data": None,
        "tracking_id": "limited",
    }


def test_rate_limit_off_limits_nobody(start_nginx: Any, upstream: Gunicorn) -> None:
    """With NGINX_RATE_LIMIT=off the same tiny rate refuses nothing."""
    variables = template_env(
        upstream.port, free_port(), NGINX_RATE_LIMIT="off", NGINX_RATE="1r/m", NGINX_BURST="2"
    )
    server = start_nginx(PLAIN, variables)
    assert {send(server.port, "GET", "/healthz").status for _ in range(10)} == {200}


def test_connection_limit_answers_429_per_client_address(
    start_nginx: Any, upstream: Gunicorn
) -> None:
    """With NGINX_CONN_LIMIT=2, a third request in progress from one address gets the 429
    envelope while another address is still served."""
    server = start_nginx(PLAIN, template_env(upstream.port, free_port(), NGINX_CONN_LIMIT="2"))
    with ThreadPoolExecutor(2) as pool:
        slow = [pool.submit(send, server.port, "GET", "/test/sleep?s=1") for _ in range(2)]
        time.sleep(0.4)  # both are in progress at gunicorn
        third = send(server.port, "GET", "/healthz", {"X-Tracking-ID": "over"})
        elsewhere = send(server.port, "GET", "/healthz", source="127.0.0.2")
        assert [request.result().status for request in slow] == [200, 200]
    assert (third.status, third.json()["msg"], third.json()["tracking_id"]) == (
        429,
        "too many requests",
        "over",
    )
    assert elsewhere.status == 200


@pytest.mark.parametrize(
    ("method", "resent"),
    [
        pytest.param("GET", True, id="get"),
        pytest.param("PUT", True, id="put"),
        pytest.param("DELETE", True, id="delete"),
        pytest.param("POST", False, id="post"),
        pytest.param("PATCH", False, id="patch"),
    ],
)
def test_only_idempotent_methods_are_resent_to_another_upstream(
    start_nginx: Any, upstream: Gunicorn, method: str, resent: bool
) -> None:
    """What docs/nginx.md says of retries: with two upstream servers (a name that resolves to
    two addresses, or compose's --scale), a request whose server received it and vanished is
    sent again to the other for GET, PUT and DELETE (idempotent in HTTP), never for POST
    or PATCH, which get the 502 envelope."""
    vanishing = RawUpstream()
    try:
        # The template's `server ${APP_UPSTREAM};` line, made two.
        two = f"127.0.0.1:{vanishing.port}; server 127.0.0.1:{upstream.port}"
        server = start_nginx(PLAIN, template_env(upstream.port, free_port(), APP_UPSTREAM=two))
        answers = []
        # Round robin (per nginx worker) reaches the vanishing server within a few requests.
        for attempt in range(6):
            tracking_id = f"retry-{method}-{attempt}"
            answer = send(server.port, method, "/healthz", {"X-Tracking-ID": tracking_id})
            answers.append((tracking_id, answer.status))
            if vanishing.methods:
                break
    finally:
        vanishing.close()
    assert vanishing.methods == [method]
    tracking_id, status = answers[-1]
    # gunicorn writes its access line after the response is sent, so wait for a line that
    # should come; a request never resent answers 502 only after the app could have logged.
    logged = eventually(lambda: upstream_lines(upstream, tracking_id), timeout=5 if resent else 0.5)
    reached_the_app = bool(logged)
    if resent:
        assert (status, reached_the_app) == (200 if method == "GET" else 405, True)
    else:
        assert (status, reached_the_app) == (502, False)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway certificate and key for kit.test, made with openssl."""
    (openssl,) = programs.require("openssl")
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", f"/CN={HOST}", "-addext", f"subjectAltName=DNS:{HOST}"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


def s_client(port: int, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    """Run `openssl s_client` against 127.0.0.1:`port` for kit.test with `args`, writing
    `stdin` to the connection."""
    (openssl,) = programs.require("openssl")
    return subprocess.run(
        [openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername", HOST, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def tls_get(port: int, path: str, cert: Path, server_name: str = HOST) -> Answer:
    """GET over TLS from 127.0.0.1:`port`, sending `server_name` as SNI and Host."""
    context = ssl.create_default_context(cafile=str(cert))
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    conn = http.client.HTTPConnection(server_name, port, timeout=10)
    try:
        conn.sock = context.wrap_socket(raw, server_hostname=server_name)
        conn.request("GET", path, headers={"Host": server_name})
        return Answer(conn.getresponse())
    finally:
        conn.close()
        raw.close()


@pytest.fixture
def tls_proxy(start_nginx: Any, upstream: Gunicorn, tmp_path: Path) -> tuple[Nginx, int, Path]:
    """nginx from the TLS template: (server, its HTTPS port, the certificate to trust)."""
    cert, key = self_signed_certificate(tmp_path / "tls")
    tls_port = free_port()
    variables = template_env(
        upstream.port,
        free_port(),
        NGINX_TLS_PORT=f"127.0.0.1:{tls_port}",
        TLS_CERTIFICATE=str(cert),
        TLS_CERTIFICATE_KEY=str(key),
    )
    return start_nginx(TLS, variables), tls_port, cert


def test_tls_variant_forwards_https_and_sends_hsts(tls_proxy: tuple[Nginx, int, Path]) -> None:
    """Over TLS the app sees https (X-Forwarded-Proto) and answers carry HSTS."""
    _, tls_port, cert = tls_proxy
    answer = tls_get(tls_port, "/test/whoami", cert)
    assert answer.status == 200
    assert answer.json()["data"]["scheme"] == "https"
    assert answer.json()["data"]["url"] == f"https://{HOST}/test/whoami"
    assert answer.header("Strict-Transport-Security") == "max-age=63072000; includeSubDomains"


def test_tls_variant_redirects_plain_http(tls_proxy: tuple[Nginx, int, Path]) -> None:
    """Plain HTTP for the site is redirected to HTTPS."""
    server, _, _ = tls_proxy
    answer = send(server.port, "GET", "/api/widgets?page=2")
    assert answer.status == 301
    assert answer.header("Location") == f"https://{HOST}/api/widgets?page=2"


def test_tls_variant_refuses_unknown_server_names(tls_proxy: tuple[Nginx, int, Path]) -> None:
    """An unknown SNI name gets no certificate: the handshake is refused."""
    _, tls_port, cert = tls_proxy
    with pytest.raises(ssl.SSLError):
        tls_get(tls_port, "/healthz", cert, server_name="other.example")


@pytest.mark.parametrize(
    ("cipher", "accepted"),
    [
        pytest.param("AES128-SHA", False, id="rsa-key-exchange-cbc-sha"),
        pytest.param("AES256-GCM-SHA384", False, id="rsa-key-exchange-gcm"),
        pytest.param("ECDHE-RSA-AES128-SHA", False, id="ecdhe-cbc-sha"),
        pytest.param("ECDHE-RSA-AES128-GCM-SHA256", True, id="ecdhe-gcm"),
        pytest.param("ECDHE-RSA-CHACHA20-POLY1305", True, id="ecdhe-chacha20"),
    ],
)
def test_tls_variant_offers_only_the_intermediate_profiles_tls12_suites(
    tls_proxy: tuple[Nginx, int, Path], cipher: str, accepted: bool
) -> None:
    """`openssl s_client` offering one TLS 1.2 suite (at security level 0, so the client
    itself refuses nothing): forward-secret AEAD suites connect, RSA key exchange and
    CBC-SHA do not."""
    _, tls_port, _ = tls_proxy
    done = s_client(tls_port, "-tls1_2", "-cipher", f"{cipher}:@SECLEVEL=0")
    assert (done.returncode == 0) == accepted, done.stdout + done.stderr
    if accepted:
        assert f"Cipher is {cipher}" in done.stdout


@pytest.mark.parametrize(
    ("version", "saved"),
    [
        # TLS 1.2 saves the handshake's own session, offered again by its id.
        pytest.param("-tls1_2", True, id="tls1.2"),
        # TLS 1.3 saves a session only from a ticket: without one there is nothing to offer.
        pytest.param("-tls1_3", False, id="tls1.3"),
    ],
)
def test_tls_variant_issues_no_session_tickets(
    tls_proxy: tuple[Nginx, int, Path], tmp_path: Path, version: str, saved: bool
) -> None:
    """`openssl s_client` saves its session (-sess_out), then offers it again (-sess_in): no
    ticket ever arrives, and nothing is resumed, by ticket or otherwise."""
    _, tls_port, _ = tls_proxy
    session = tmp_path / "session.pem"
    # A request read to the end of its answer: TLS 1.3 tickets come after the handshake.
    request = f"GET /healthz HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
    first = s_client(tls_port, version, "-ign_eof", "-sess_out", str(session), stdin=request)
    assert "HTTP/1.1 200 OK" in first.stdout, first.stderr
    assert "TLS session ticket" not in first.stdout
    assert session.exists() == saved
    second = s_client(tls_port, version, "-ign_eof", "-sess_in", str(session), stdin=request)
    assert "Reused," not in second.stdout
    assert ("New," in second.stdout) == saved, second.stderr
