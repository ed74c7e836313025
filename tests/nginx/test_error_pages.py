"""Every answer nginx makes by itself under the shipped templates, sent for real: the JSON
envelope with its status, each header once and never cached; or, before nginx knows which
site a request is for, a connection closed without an answer. docs/nginx.md lists the
statuses, and says which of them cannot be provoked here.

The servers run under Debian's stock nginx.conf with their gunicorn down: no request in the
table may reach the app, and one that did would get the 502 envelope, not its row's.
"""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.processes import ROOT, free_port
from harness.proxy import Nginx, template_env
from tests.nginx.test_kit_conf import (
    HOST,
    ONE_MIB,
    PLAIN,
    TLS,
    Answer,
    self_signed_certificate,
    send,
)

pytestmark = pytest.mark.usefixtures("requires_nginx")

STATIC = "/static/robots.txt"
# Earlier than any file's last change, so If-Unmodified-Since fails for every file.
LONG_AGO = "Thu, 01 Jan 1970 00:00:01 GMT"
# Over client_body_buffer_size (16k, kit/http.conf): nginx writes it to a temporary file.
SPOOLED_BODY = b"x" * (256 * 1024)
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}


def request(line: str, *fields: str, host: str = HOST, body: bytes = b"") -> bytes:
    """A request as bytes: `line`, Host, `fields`, Connection: close, then `body`."""
    head = "\r\n".join([line, f"Host: {host}", *fields, "Connection: close"])
    return f"{head}\r\n\r\n".encode() + body


def exchange(port: int, data: bytes) -> Answer:
    """Send `data` as it is to 127.0.0.1:`port` and read the answer (ConnectionResetError if
    the connection is closed without one)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
            return Answer(response)
        finally:
            response.close()


def assert_each_header_once(answer: Answer) -> None:
    """No header is sent twice (nginx's own answers once carried the kit's headers twice)."""
    names = [name.lower() for name, _ in answer.header_list]
    assert len(names) == len(set(names)), answer.header_list


class Unanswered:
    """An upstream address where connections never complete, like a host behind a firewall
    that drops packets: a listener that accepts none, its queue of one already taken, so
    the kernel drops every further attempt to connect."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=0)
        self.port = self.listener.getsockname()[1]
        self.queued = socket.create_connection(("127.0.0.1", self.port), timeout=5)

    def close(self) -> None:
        self.queued.close()
        self.listener.close()


@pytest.fixture(scope="module")
def servers(
    requires_nginx: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, int]]:
    """The port of each server the table sends to, by name:
    plain: the plain template; tls-http and tls-https: the TLS template's two ports;
    rate-limited: one request a minute, already spent; no-temp-files: nginx cannot write
    a request body to disk (a full disk); unanswered: gunicorn's address drops connections."""
    started: list[Nginx] = []

    def start(name: str, template: Path, **variables: str) -> Nginx:
        env = template_env(free_port(), free_port(), **variables)
        started.append(Nginx(tmp_path_factory.mktemp(f"nginx-{name}"), template, env).start())
        return started[-1]

    cert, key = self_signed_certificate(tmp_path_factory.mktemp("tls"))
    tls_port = free_port()
    unanswered = Unanswered()
    try:
        tls = start(
            "tls",
            TLS,
            NGINX_TLS_PORT=f"127.0.0.1:{tls_port}",
            TLS_CERTIFICATE=str(cert),
            TLS_CERTIFICATE_KEY=str(key),
        )
        limited = start("limited", PLAIN, NGINX_RATE_LIMIT="on", NGINX_RATE="1r/m", NGINX_BURST="1")
        for _ in range(2):  # the minute's request and the burst's (502s: gunicorn is down)
            send(limited.port, "GET", "/healthz")
        no_temp_files = start("no-temp-files", PLAIN)
        # Debian's nginx spools bodies to /var/lib/nginx/body (its build's
        # client_body_temp_path), which harness/proxy.py mounts from the server's lib/.
        (no_temp_files.dir / "lib" / "body").chmod(0)
        upstream = f"127.0.0.1:{unanswered.port}"
        yield {
            "plain": start("plain", PLAIN).port,
            "tls-http": tls.port,
            "tls-https": tls_port,
            "rate-limited": limited.port,
            "no-temp-files": no_temp_files.port,
            "unanswered": start("unanswered", PLAIN, APP_UPSTREAM=upstream).port,
        }
    finally:
        for server in started:
            server.stop()
        unanswered.close()


@pytest.mark.parametrize(
    ("server", "sent", "status", "msg"),
    [
        pytest.param("plain", request("GET /healthz HTTP/1.1", "Broken header"), 400, "bad request", id="400-malformed-header"),
        # nginx's 494, sent as 400.
        pytest.param("plain", request("GET /healthz HTTP/1.1", "X-Big: " + "a" * 10000), 400, "bad request", id="400-header-over-8-kib"),
        # nginx's 501, sent as 400 (kit/app.conf).
        pytest.param("plain", request("POST /api/widgets HTTP/1.1", "Transfer-Encoding: gzip"), 400, "bad request", id="400-unknown-transfer-encoding"),
        # nginx's 497, sent as 400.
        pytest.param("tls-https", request("GET /healthz HTTP/1.1"), 400, "bad request", id="400-plain-http-to-the-https-port"),
        pytest.param("tls-http", request("GET /healthz HTTP/1.1", "Broken header"), 400, "bad request", id="400-malformed-header-on-the-redirecting-port"),
        pytest.param("plain", request("GET /static/ HTTP/1.1"), 403, "forbidden", id="403-static-directory"),
        pytest.param("plain", request("GET /static/nope.html HTTP/1.1"), 404, "not found", id="404-missing-static-file"),
        pytest.param("plain", request("TRACE /healthz HTTP/1.1"), 405, "method not allowed", id="405-trace"),
        pytest.param("tls-http", request("TRACE /healthz HTTP/1.1"), 405, "method not allowed", id="405-trace-on-the-redirecting-port"),
        pytest.param("plain", request(f"POST {STATIC} HTTP/1.1", "Content-Length: 0"), 405, "method not allowed", id="405-post-to-a-static-file"),
        pytest.param("plain", request(f"GET {STATIC} HTTP/1.1", 'If-Match: "nope"'), 412, "precondition failed", id="412-if-match"),
        pytest.param("plain", request(f"GET {STATIC} HTTP/1.1", f"If-Unmodified-Since: {LONG_AGO}"), 412, "precondition failed", id="412-if-unmodified-since"),
        pytest.param("plain", request("POST /api/widgets HTTP/1.1", f"Content-Length: {ONE_MIB + 1}"), 413, "request body is over the 1 MiB limit", id="413-body-over-1-mib"),
        pytest.param("rate-limited", request("GET /healthz HTTP/1.1"), 429, "too many requests", id="429-rate-limited"),
        pytest.param("no-temp-files", request("POST /api/widgets HTTP/1.1", f"Content-Length: {len(SPOOLED_BODY)}", body=SPOOLED_BODY), 500, "internal server error", id="500-body-not-written-to-disk"),
        pytest.param("plain", request("GET /healthz HTTP/1.1"), 502, "bad gateway", id="502-upstream-down"),
        # proxy_connect_timeout (5 s, kit/http.conf) runs out.
        pytest.param("unanswered", request("GET /healthz HTTP/1.1"), 504, "gateway timeout", id="504-upstream-unreachable"),
    ],
)  # fmt: skip
def test_nginx_error_is_the_envelope_with_each_header_once(
    servers: dict[str, int], server: str, sent: bytes, status: int, msg: str
) -> None:
    """nginx's own error is the JSON envelope with its status, the security headers and
    X-Tracking-ID once each (as every header), and Cache-Control: no-store."""
    answer = exchange(servers[server], sent)
    assert_each_header_once(answer)
    tracking_id = answer.header("X-Tracking-ID")
    assert tracking_id
    assert (answer.status, answer.header("Content-Type")) == (status, "application/json")
    assert answer.json() == {"code": status, "msg": msg, "data": None, "tracking_id": tracking_id}
    assert {name: answer.header(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
    assert answer.header("Cache-Control") == "no-store"


@pytest.mark.parametrize(
    ("server", "sent"),
    [
        pytest.param("tls-https", request("GET /healthz HTTP/1.1", host="other.example"), id="497-for-another-host"),
        pytest.param("plain", request("GET /" + "a" * 10000 + " HTTP/1.1"), id="414-request-line-over-8-kib"),
        pytest.param("plain", request("GET /healthz HTTP/2.0"), id="505-http-version"),
    ],
)  # fmt: skip
def test_error_for_no_known_site_closes_the_connection(
    servers: dict[str, int], server: str, sent: bytes
) -> None:
    """An error nginx finds before it has read the Host, or for a Host it does not serve, is
    the default server's: closed without an answer (444), never nginx's HTML page."""
    # A close with the request unread is a reset; http.client's RemoteDisconnected is one too.
    with pytest.raises(ConnectionResetError):
        exchange(servers[server], sent)


@pytest.mark.parametrize(
    "byte_range",
    [pytest.param("bytes=9999-", id="past-the-end"), pytest.param("bytes=0-3", id="first-bytes")],
)
def test_range_gets_the_whole_static_file(servers: dict[str, int], byte_range: str) -> None:
    """nginx makes no byte ranges, so never a 416 carrying the file's headers twice: a Range
    gets the whole file, with 200, its cache lifetime and each header once."""
    answer = exchange(servers["plain"], request(f"GET {STATIC} HTTP/1.1", f"Range: {byte_range}"))
    assert_each_header_once(answer)
    assert answer.status == 200
    assert answer.body == (ROOT / "app" / "static" / "robots.txt").read_bytes()
    assert answer.header("Cache-Control") == "max-age=3600"
    assert answer.header("Content-Range") is None
    assert {name: answer.header(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
