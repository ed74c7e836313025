"""A corpus of hostile requests, sent as raw bytes to five targets: gunicorn's sync, gthread
and gevent workers directly, and nginx (Debian's stock nginx.conf, the kit's template) in
front of sync and of gevent.

Every request in the table is answered in the JSON envelope with a status below 500, or the
connection is closed without an answer where the table says so (framing the server cannot
trust). Between requests, and while a slow client dribbles, a well-behaved client keeps
getting 200 from /healthz. Afterwards nothing is stored, and every line gunicorn and the app
logged (and nginx's access log) parses as JSON.

The app is the kit's plus tests/apps, on PostgreSQL: rows are counted with a query once
each target is done. The bodies go to the tests' own resource, `/test/records`
(harness/apps/records.py), whose model has the example's rules and whose table is counted:
the corpus passes whatever resources the service has, the example removed included.
The direct servers run with a short GUNICORN_TIMEOUT, which bounds reading a request under
every class (a sync worker is killed at it; gthread and gevent read under the kit's deadline,
chassis/serving/deadline.py), and gevent with a short GUNICORN_KEEPALIVE, which bounds its
wait for a head, so their own slow-client defences act within the test; behind nginx, gunicorn runs as deployed, and nginx's 30 s client timeouts
are left alone: a slow client there is held, others are served, and the test drops it.
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from harness.apps import records
from harness.postgres import PostgresServer
from harness.processes import Gunicorn, base_env, free_port, get
from harness.proxy import NGINX_DIR, Nginx, template_env
from tests.support.flask_app import migrate

# Outcomes besides a status: the server closed the connection without a response, or it
# neither answered nor closed while the client dribbled and then waited.
CLOSED = "closed"
HELD = "held"
Outcome = int | str

# The slow-client limits on the direct targets: a request is read within GUNICORN_TIMEOUT
# of its first byte (a sync worker blocked on a socket is killed at it), and a gevent worker
# gives up on a request head after GUNICORN_KEEPALIVE. Behind nginx gunicorn keeps the
# defaults, as deployed.
DIRECT_TIMEOUT = 3
DIRECT_GEVENT_KEEPALIVE = 2
# How long a slow client dribbles; then how long it waits for the server's verdict, by
# target (with a margin for the master's once-a-second check and a noisy machine).
DRIBBLE_SECONDS = 1.2
SLOW_CLIENT_WAIT = {"sync": DIRECT_TIMEOUT + 3.0, "gthread": DIRECT_TIMEOUT + 1.0,
                    "gevent": DIRECT_TIMEOUT + 1.0}  # fmt: skip
TARGETS = ["sync", "gthread", "gevent", "nginx-sync", "nginx-gevent"]
# A bounded error body: no echo of a huge request can amplify it.
MAX_ERROR_BODY = 16 * 1024
SLEEPY = "harness.apps.sleepy:app"
HOST = b"kit.test"
# The well-behaved client: nginx serves the kit only for its server name.
WELL_BEHAVED = {"Host": HOST.decode()}


# --- The corpus -------------------------------------------------------------------------


def message(request_line: bytes, *fields: bytes, body: bytes = b"") -> bytes:
    """A request with Host and `Connection: close` first, then `fields`, then `body`."""
    head = [request_line, b"Host: " + HOST, b"Connection: close", *fields]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def post_json(body: bytes, *fields: bytes, content_type: bytes = b"application/json") -> bytes:
    """POST `body` to /test/records with its Content-Length and `content_type`."""
    return message(
        b"POST /test/records HTTP/1.1",
        b"Content-Type: " + content_type,
        b"Content-Length: %d" % len(body),
        *fields,
        body=body,
    )


def put_json(name: bytes, body: bytes) -> bytes:
    """PUT `body` to the record called `name` (as it goes in the path) with its length."""
    return message(
        b"PUT /test/records/by-name/" + name + b" HTTP/1.1",
        b"Content-Type: application/json",
        b"Content-Length: %d" % len(body),
        body=body,
    )


def get_with(*fields: bytes, target: bytes = b"/healthz", version: bytes = b"HTTP/1.1") -> bytes:
    """GET `target` (/healthz by default) with `fields`."""
    return message(b"GET " + target + b" " + version, *fields)


def chunked(*fields: bytes, body: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    """POST a JSON `body` already framed by the caller, with `fields` (Transfer-Encoding...)."""
    return message(
        b"POST /test/records " + version, b"Content-Type: application/json", *fields, body=body
    )


# A valid record: stored if its framing were accepted, so a framing case that gets through
# fails twice (its outcome, and the count of stored rows).
RECORD = b'{"name":"hostile"}'
# A record the app refuses (400): for framings nginx accepts and re-frames on its own.
REFUSED = b'{"name":"hostile","quantity":-1}'
TE_CHUNKED = b"Transfer-Encoding: chunked"


def one_chunk(body: bytes) -> bytes:
    """`body` as one chunk and the last chunk, correctly framed."""
    return b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)


@dataclass(frozen=True)
class Case:
    """One hostile request and the outcomes allowed for it, by target.

    `gunicorn` holds for the direct targets unless `sync`, `gthread` or `gevent` says
    otherwise;
    `nginx` for both nginx targets (default: the same as `gunicorn`)."""

    request: bytes | tuple[bytes, ...]
    gunicorn: tuple[Outcome, ...]
    nginx: tuple[Outcome, ...] | None = None
    sync: tuple[Outcome, ...] | None = None
    gthread: tuple[Outcome, ...] | None = None
    gevent: tuple[Outcome, ...] | None = None
    # Shut the write side after sending: the client has nothing more to say.
    half_close: bool = False
    # For a request in parts: seconds between them (a slow client).
    pause: float = 0.0

    def expected(self, target: str) -> tuple[Outcome, ...]:
        """The outcomes allowed on `target`."""
        if target.startswith("nginx"):
            return self.nginx or self.gunicorn
        by_class = {"sync": self.sync, "gthread": self.gthread, "gevent": self.gevent}
        return by_class[target] or self.gunicorn


def case(
    name: str, request: bytes | tuple[bytes, ...], gunicorn: tuple[Outcome, ...], **kwargs: Any
) -> Any:
    """A table row: pytest.param(Case(...), id=name)."""
    return pytest.param(Case(request, gunicorn, **kwargs), id=name)


def slowly(request: bytes, **outcomes: tuple[Outcome, ...]) -> dict[str, Any]:
    """A slow client's `request`: eight parts over DRIBBLE_SECONDS, the last bytes never sent.

    Each direct worker gives up at GUNICORN_TIMEOUT: a sync worker is killed and answers
    408, gthread and gevent answer a body 408 (the head: see the case); nginx holds the
    client for 30 s: the test drops it first. `outcomes` overrides these."""
    step = (len(request) - 4) // 8
    parts = tuple(request[n * step : (n + 1) * step] for n in range(8))
    expected = {"gunicorn": (408,), "nginx": (HELD,), **outcomes}
    return {"request": parts, "pause": DRIBBLE_SECONDS / 8, **expected}


# Refused: 400 in the envelope.
BAD = (400,)
CHUNKED_SLOWLY = chunked(TE_CHUNKED, body=b"".join(b"1\r\n%c\r\n" % c for c in RECORD))

CORPUS = [
    # Every JSON type where an object is expected, and every wrong type for a field.
    case("json-null", post_json(b"null"), BAD),
    case("json-true", post_json(b"true"), BAD),
    case("json-false", post_json(b"false"), BAD),
    case("json-integer", post_json(b"42"), BAD),
    case("json-float", post_json(b"-1.5e3"), BAD),
    case("json-string", post_json(b'"hostile"'), BAD),
    case("json-empty-array", post_json(b"[]"), BAD),
    case("json-array-of-record", post_json(b"[" + RECORD + b"]"), BAD),
    case("json-empty-object", post_json(b"{}"), BAD),
    case("name-null", post_json(b'{"name":null}'), BAD),
    case("name-number", post_json(b'{"name":1}'), BAD),
    case("name-array", post_json(b'{"name":["a"]}'), BAD),
    case("name-object", post_json(b'{"name":{"a":"b"}}'), BAD),
    case("quantity-string", post_json(b'{"name":"q","quantity":"1"}'), BAD),
    case("quantity-boolean", post_json(b'{"name":"q","quantity":true}'), BAD),
    case("quantity-fraction", post_json(b'{"name":"q","quantity":1.5}'), BAD),
    case("empty-body", post_json(b""), BAD),
    case("whitespace-body", post_json(b" \r\n\t "), BAD),
    # Huge numbers, and the non-numbers Python's parser accepts.
    case("quantity-1e400", post_json(b'{"name":"q","quantity":1e400}'), BAD),
    case("quantity-2-to-the-70", post_json(b'{"name":"q","quantity":%d}' % 2**70), BAD),
    case("quantity-5000-digits", post_json(b'{"name":"q","quantity":' + b"9" * 5000 + b"}"), BAD),
    case("quantity-nan", post_json(b'{"name":"q","quantity":NaN}'), BAD),
    case("quantity-minus-infinity", post_json(b'{"name":"q","quantity":-Infinity}'), BAD),
    # What the table's columns cannot hold, in a body or a path: PostgreSQL would refuse it
    # with an error (a 500), so the model refuses it first. nginx refuses a NUL in the path
    # as it reads the request line, before it knows the Host: closed, like a bad method.
    case("name-101-characters", post_json(b'{"name":"%s"}' % (b"n" * 101)), BAD),
    case("quantity-2-to-the-31", post_json(b'{"name":"q","quantity":%d}' % 2**31), BAD),
    case("note-1001-characters", post_json(b'{"name":"n","note":"%s"}' % (b"n" * 1001)), BAD),
    case("note-escaped-nul", post_json(b'{"name":"n","note":"a\\u0000b"}'), BAD),
    case("put-quantity-2-to-the-31", put_json(b"q", b'{"quantity":%d}' % 2**31), BAD),
    case("put-name-101-characters", put_json(b"n" * 101, b'{"quantity":1}'), BAD),
    case("put-name-with-nul", put_json(b"a%00b", b'{"quantity":1}'), BAD, nginx=(CLOSED,)),
    # Duplicate keys: parsers disagree on which one wins (the first, the last, an error).
    case("duplicate-name", post_json(b'{"name":"first","name":"second"}'), BAD),
    case("duplicate-invalid-then-valid", post_json(b'{"name":1,"name":"valid"}'), BAD),
    case("duplicate-note", post_json(b'{"name":"n","note":"a","note":null}'), BAD),
    # 20,000 unknown keys: the answer names ten of them, not all (its size is checked).
    case("20000-unknown-keys", post_json(b'{"name":"k",' + b",".join(b'"k%d":0' % n for n in range(20000)) + b"}"), BAD),
    # Bad UTF-8, overlong encodings, and text no database stores as given.
    case("invalid-utf8", post_json(b'{"name":"\xff\xfe"}'), BAD),
    case("overlong-slash", post_json(b'{"name":"\xc0\xaf"}'), BAD),
    case("overlong-3-byte-slash", post_json(b'{"name":"\xe0\x80\xaf"}'), BAD),
    case("utf8-encoded-surrogate", post_json(b'{"name":"\xed\xa0\x80"}'), BAD),
    case("beyond-u10ffff", post_json(b'{"name":"\xf4\x90\x80\x80"}'), BAD),
    case("truncated-multibyte", post_json(b'{"name":"\xc3"}'), BAD),
    case("escaped-lone-surrogate", post_json(b'{"name":"\\ud800"}'), BAD),
    case("escaped-nul", post_json(b'{"name":"a\\u0000b"}'), BAD),
    case("utf16-body", post_json('{"name":"utf16"}'.encode("utf-16")), BAD),
    case("latin1-charset", post_json(b'{"name":"caf\xe9"}', content_type=b"application/json; charset=iso-8859-1"), BAD),
    case("text-plain", post_json(RECORD, content_type=b"text/plain"), BAD),
    case("form-urlencoded", post_json(b"name=form", content_type=b"application/x-www-form-urlencoded"), BAD),
    # Header injection: bare CR, bare LF (a header line end to nginx), NUL, a name that is
    # no token (nginx: an invalid line), an underscore name (both drop it), forged hosts.
    case("bare-cr-in-header", get_with(b"X-Note: a\rX-Injected: 1"), BAD),
    case("bare-lf-in-header", get_with(b"X-Note: a\nX-Injected: 1"), BAD, nginx=(200,)),
    case("nul-in-header", get_with(b"X-Note: a\x00b"), BAD),
    case("space-before-colon", get_with(b"X-Note : a"), BAD),
    case("header-without-colon", get_with(b"Broken header"), BAD),
    case("empty-header-name", get_with(b": value"), BAD),
    case("underscore-header", get_with(b"X_Tracking_ID: forged"), (200,)),
    case("8-bit-header-value", get_with(b"X-Note: \xff\xfe\xc0\xaf"), (200,)),
    case("duplicate-host", get_with(b"Host: evil.example"), BAD),
    case("host-with-path", message(b"GET /healthz HTTP/1.1").replace(HOST, HOST + b"/../x"), (200,), nginx=(CLOSED,)),
    case("missing-host", b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", (200,), nginx=(CLOSED,)),
    case("absolute-uri-other-host", get_with(target=b"http://evil.example/healthz"), (200,), nginx=(CLOSED,)),
    # Obsolete line folding, on a plain header and on the framing headers.
    case("obs-fold", get_with(b"X-Note: a", b" folded"), BAD),
    case("obs-fold-transfer-encoding", chunked(b"Transfer-Encoding:", b" chunked", body=one_chunk(RECORD)), BAD),
    case("obs-fold-content-length", chunked(b"Content-Length:", b" %d" % len(RECORD), body=RECORD), BAD),
    # 64 KiB of headers: one field, eight fields of 8 KiB, 200 small fields.
    case("one-64kib-header", get_with(b"X-Big: " + b"a" * 65536), (431,), nginx=BAD),
    case("eight-8kib-headers", get_with(*(b"X-Big-%d: " % n + b"a" * 8000 for n in range(8))), (200,), nginx=BAD),
    case("200-headers", get_with(*(b"X-Many-%d: a" % n for n in range(200))), (431,)),
    # The request line over gunicorn's limit (4094 bytes), then over nginx's (8 KiB), and
    # request lines no server should read as one.
    case("request-line-5kib", get_with(target=b"/" + b"a" * 5000), (414,)),
    case("request-line-10kib", get_with(target=b"/" + b"a" * 10000), (414,), nginx=(CLOSED,)),
    case("lowercase-method", get_with().replace(b"GET", b"get", 1), BAD, nginx=(CLOSED,)),
    case("control-in-method", get_with().replace(b"GET", b"G\x01T", 1), BAD, nginx=(CLOSED,)),
    # gunicorn answers "HTTP/1.2 200 OK", echoing the version; nginx answers HTTP/1.1.
    case("http-1.2", get_with(version=b"HTTP/1.2"), (200,)),
    case("http-2.0-in-text", get_with(version=b"HTTP/2.0"), BAD, nginx=(CLOSED,)),
    case("tls-hello-on-plain-port", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64, (CLOSED,), half_close=True),
    # Content-Length with Transfer-Encoding, and each framing header malformed.
    case("content-length-and-chunked", chunked(b"Content-Length: 4", TE_CHUNKED, body=one_chunk(RECORD)), BAD),
    case("chunked-and-content-length", chunked(TE_CHUNKED, b"Content-Length: 4", body=one_chunk(RECORD)), BAD),
    case("chunked-twice", chunked(TE_CHUNKED, TE_CHUNKED, body=one_chunk(RECORD)), BAD),
    case("chunked-listed-twice", chunked(b"Transfer-Encoding: chunked, chunked", body=one_chunk(RECORD)), BAD),
    case("transfer-encoding-unknown", chunked(b"Transfer-Encoding: xchunked", body=one_chunk(RECORD)), BAD),
    case("transfer-encoding-identity", chunked(b"Transfer-Encoding: identity", body=RECORD), BAD),
    case("chunked-in-http-1.0", chunked(TE_CHUNKED, body=one_chunk(RECORD), version=b"HTTP/1.0"), BAD),
    case("content-length-negative", chunked(b"Content-Length: -1", body=RECORD), BAD),
    case("content-length-plus-sign", chunked(b"Content-Length: +%d" % len(RECORD), body=RECORD), BAD),
    case("content-length-list", chunked(b"Content-Length: %d, %d" % (len(RECORD), len(RECORD)), body=RECORD), BAD),
    case("content-length-twice-differing", chunked(b"Content-Length: 1", b"Content-Length: %d" % len(RECORD), body=RECORD), BAD),
    # A Content-Length past 64 bits: gunicorn reads it and refuses it as too large, nginx
    # refuses the number itself.
    case("content-length-huge", chunked(b"Content-Length: " + b"9" * 30, body=RECORD), (413,), nginx=BAD),
    # The body shorter than its Content-Length, then the client done: never acted on.
    case("content-length-truncated", chunked(b"Content-Length: %d" % (len(RECORD) + 10), body=RECORD), BAD, nginx=(CLOSED,), half_close=True),
    # Bad chunked framing (the client done after it where gunicorn would wait for more).
    # nginx takes a bare LF after a chunk size and ignores chunk extensions: it passes the
    # app a body framed anew, which the app refuses.
    case("chunk-size-not-hex", chunked(TE_CHUNKED, body=b"zz\r\n" + RECORD + b"\r\n0\r\n\r\n"), BAD, half_close=True),
    case("chunk-size-overflow", chunked(TE_CHUNKED, body=b"f" * 20 + b"\r\n" + RECORD + b"\r\n0\r\n\r\n"), BAD, half_close=True),
    case("chunk-size-negative", chunked(TE_CHUNKED, body=b"-12\r\n" + RECORD + b"\r\n0\r\n\r\n"), BAD, half_close=True),
    case("chunk-missing-crlf", chunked(TE_CHUNKED, body=b"%x\r\n%sXX0\r\n\r\n" % (len(RECORD), RECORD)), BAD, half_close=True),
    case("chunk-size-bare-lf", chunked(TE_CHUNKED, body=b"%x\n%s\r\n0\r\n\r\n" % (len(REFUSED), REFUSED)), BAD),
    case("chunk-extension-nul", chunked(TE_CHUNKED, body=b"%x;a=\x00\r\n%s\r\n0\r\n\r\n" % (len(REFUSED), REFUSED)), BAD),
    case("chunked-truncated", chunked(TE_CHUNKED, body=b"%x\r\n%s" % (len(RECORD) + 10, RECORD)), BAD, nginx=(CLOSED,), half_close=True),
    # A valid record padded past 1 MiB with whitespace, in chunks: no Content-Length to check.
    case("chunked-over-1mib", chunked(TE_CHUNKED, body=one_chunk(RECORD + b" " * (1024 * 1024))), (413,)),
    # Expect tricks. nginx drops the Expect header it does not know; the app refuses the body.
    case("expect-continue-invalid-body", post_json(b"[]", b"Expect: 100-continue"), BAD),
    case("expect-continue-oversized-unsent", chunked(b"Expect: 100-continue", b"Content-Length: 2000000", body=b""), (413,)),
    case("expect-unknown", post_json(REFUSED, b"Expect: 200-ok"), (417,), nginx=BAD),
    case("expect-continue-on-get", get_with(b"Expect: 100-continue"), (200,)),
    case("expect-continue-in-http-1.0", post_json(b"null", b"Expect: 100-continue").replace(b"HTTP/1.1", b"HTTP/1.0", 1), BAD),
    # Slow clients, a well-behaved one polling meanwhile: a head that never ends, a body or
    # its chunks trickling in. gthread and gevent close on a head past the deadline.
    case("slow-head", **slowly(get_with(b"X-Slow: " + b"s" * 60), gthread=(CLOSED,), gevent=(CLOSED,))),
    case("slow-body", **slowly(post_json(RECORD))),
    case("slow-chunks", **slowly(CHUNKED_SLOWLY)),
]  # fmt: skip


# --- A raw HTTP client ------------------------------------------------------------------


@dataclass
class Answer:
    """One response read off the wire."""

    status: int
    headers: dict[str, str]
    body: bytes


@dataclass
class Exchange:
    """What one connection got back: every response, and whether the server closed it."""

    answers: list[Answer] = field(default_factory=list)
    closed: bool = False

    def outcome(self) -> Outcome:
        """The final status, or CLOSED / HELD when nothing but interim answers came."""
        final = [answer.status for answer in self.answers if answer.status >= 200]
        if final:
            return final[-1]
        return CLOSED if self.closed else HELD


# gunicorn echoes the request's minor version: "HTTP/1.2 200 OK" to an HTTP/1.2 request.
STATUS_LINE = re.compile(rb"HTTP/1\.\d (\d{3})(?: [^\r\n]*)?")


def parse_answers(data: bytes, eof: bool) -> list[Answer]:
    """Every complete response in `data`; with `eof`, anything left over is an error."""
    answers: list[Answer] = []
    while data:
        head, found, rest = data.partition(b"\r\n\r\n")
        if not found:
            assert not eof, f"incomplete or non-HTTP answer: {data[:200]!r}"
            break
        status_line, *lines = head.split(b"\r\n")
        matched = STATUS_LINE.fullmatch(status_line)
        assert matched, f"not an HTTP status line: {status_line[:200]!r}"
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.decode("latin-1").partition(":")
            assert name.lower() not in headers, f"{name} sent twice"
            headers[name.lower()] = value.strip()
        status = int(matched.group(1))
        if status < 200 or status in (204, 304):
            body, data = b"", rest
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if len(rest) < length:
                assert not eof, f"answer shorter than its Content-Length: {data[:200]!r}"
                break
            body, data = rest[:length], rest[length:]
        else:
            assert "transfer-encoding" not in headers, "chunked answers are not expected"
            if not eof:  # the body runs to the end of the connection
                break
            body, data = rest, b""
        answers.append(Answer(status, headers, body))
    return answers


def exchange(port: int, case: Case, wait: float) -> Exchange:
    """Send `case` to 127.0.0.1:`port` and read what comes back for up to `wait` seconds
    after the last byte is sent (0.3 s more once a response is complete)."""
    parts = case.request if isinstance(case.request, tuple) else (case.request,)
    result = Exchange()
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        try:
            for number, part in enumerate(parts):
                if number:
                    time.sleep(case.pause)
                sock.sendall(part)
            if case.half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server refused the rest (and may have answered): read what it sent
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                result.closed = True
                break
            data += chunk
            if any(answer.status >= 200 for answer in parse_answers(data, eof=False)):
                deadline = min(deadline, time.monotonic() + 0.3)
    result.answers = parse_answers(data, eof=result.closed)
    return result


def check_envelope(answer: Answer) -> None:
    """A body is the JSON envelope, carrying the status and the response's tracking id."""
    if not answer.body:
        return
    assert answer.headers.get("content-type") == "application/json", answer
    assert len(answer.body) <= MAX_ERROR_BODY or answer.status < 400, len(answer.body)
    body = json.loads(answer.body)
    assert list(body) == ["code", "msg", "data", "tracking_id"], body
    assert body["code"] == answer.status, body
    assert body["tracking_id"] == answer.headers.get("x-tracking-id"), answer


class Poller:
    """A well-behaved client asking for /healthz every 0.1 s in a thread, while a slow one
    holds a connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.statuses: list[int | str] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stopped.wait(0.1):
            try:
                self.statuses.append(get(self.port, "/healthz", WELL_BEHAVED, timeout=2)[0])
            except OSError as exc:
                self.statuses.append(type(exc).__name__)

    def __enter__(self) -> Poller:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join(5)


# --- Targets ----------------------------------------------------------------------------


@dataclass
class Target:
    """A port to attack, the gunicorn behind it, and nginx when it fronts it."""

    name: str
    port: int
    gunicorn: Gunicorn
    nginx: Nginx | None = None

    def verdict_wait(self, case: Case) -> float:
        """Seconds to wait for an answer after the last byte: for a slow client, past the
        direct server's own limit; nginx's (30 s) is not waited for."""
        return SLOW_CLIENT_WAIT.get(self.name, 0.5) if case.pause else 5.0


@pytest.fixture(scope="module")
def database(postgres: PostgresServer) -> str:
    """A migrated PostgreSQL database of its own, with the test tables, for every target."""
    url = postgres.create_database("hostile_corpus")
    migrate(url)
    records.create_tables(url)
    return url


@pytest.fixture(scope="module", params=TARGETS)
def target(
    request: pytest.FixtureRequest, database: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Target]:
    """One target at a time: its gunicorn (two workers, JSON logs), and nginx before it."""
    name: str = request.param
    behind_nginx = name.startswith("nginx")
    if behind_nginx:
        request.getfixturevalue("requires_nginx")
    worker_class = name.removeprefix("nginx-")
    env = {"GUNICORN_WORKER_CLASS": worker_class, "WEB_CONCURRENCY": "2"}
    env |= {"LOG_FORMAT": "json", "LOG_LEVEL": "INFO", "DATABASE_URL": database}
    if behind_nginx:
        env |= {"PROXY_FIX_X_FOR": "1", "PROXY_FIX_X_PROTO": "1", "PROXY_FIX_X_HOST": "1"}
    else:
        env["GUNICORN_TIMEOUT"] = str(DIRECT_TIMEOUT)
        if worker_class == "gevent":
            env["GUNICORN_KEEPALIVE"] = str(DIRECT_GEVENT_KEEPALIVE)
    directory = tmp_path_factory.mktemp(name)
    server = Gunicorn(directory, base_env(**env), args=[SLEEPY]).start()
    proxy = None
    try:
        if behind_nginx:
            variables = template_env(server.port, free_port())
            template = NGINX_DIR / "templates" / "kit.conf.template"
            proxy = Nginx(directory / "nginx", template, variables).start()
        yield Target(name, proxy.port if proxy else server.port, server, proxy)
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop()


# --- The tests --------------------------------------------------------------------------


@pytest.mark.parametrize("case", CORPUS)
def test_hostile_request_gets_the_envelope_or_a_closed_connection(
    target: Target, case: Case
) -> None:
    """The answer is the case's (a status below 500 in the envelope, or a close), and a
    well-behaved client is served meanwhile and afterwards."""
    with Poller(target.port) as poller:
        result = exchange(target.port, case, target.verdict_wait(case))
    for answer in result.answers:
        assert answer.status < 500, answer
        assert "x-injected" not in answer.headers, answer
        check_envelope(answer)
    assert result.outcome() in case.expected(target.name), result
    assert set(poller.statuses) <= {200}, poller.statuses
    if case.pause:  # the well-behaved client was served while the slow one was held
        assert len(poller.statuses) >= 3, poller.statuses
    assert get(target.port, "/healthz", WELL_BEHAVED, timeout=5)[0] == 200


def test_nothing_was_stored(target: Target, database: str) -> None:
    """No hostile request stored a row in the table the bodies were sent to."""
    engine = create_engine(database)
    try:
        with engine.connect() as connection:
            stored = connection.scalar(text("SELECT count(*) FROM test_records"))
    finally:
        engine.dispose()
    assert stored == 0


def test_every_log_line_is_json_and_the_app_logged_no_error(target: Target) -> None:
    """gunicorn's and the app's stdout and stderr, and nginx's access log, are JSON lines;
    the app (stdout: its loggers and the access log) logged nothing at ERROR."""
    app_lines = target.gunicorn.json_lines("stdout")
    assert app_lines
    assert [line for line in app_lines if line["level"] == "ERROR"] == []
    assert target.gunicorn.json_lines("stderr")
    if target.nginx is not None:
        assert target.nginx.access_lines()
