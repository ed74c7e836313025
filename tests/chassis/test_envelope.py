"""One writer for every answer: the envelope's bytes and headers come from
chassis/web/envelope.py whoever answers, the app or a server outside it, and its error
statuses are listed once."""

from __future__ import annotations

import importlib
import json
import re
import socket
from pathlib import Path

import pytest
from flask import Flask

from chassis.web import envelope
from chassis.web.envelope import ERROR_STATUSES, error_answer
from chassis.web.openapi import COMMON_ANSWERS
from harness.processes import SLEEPY, Gunicorn, base_env, free_port, get
from tests.support.answers import header_names, raw_header_names

# The headers of every error envelope: the body's two, the writer's two, the tracking id.
ENVELOPE_HEADERS = {
    "content-type",
    "content-length",
    "cache-control",
    "x-datetime",
    "x-tracking-id",
}


def test_an_app_answer_has_the_envelopes_headers(app: Flask) -> None:
    """The app's own answers carry exactly the envelope's headers."""
    answer = app.test_client().get("/no-such-route")
    assert answer.status_code == 404
    assert header_names(answer.headers.keys()) == ENVELOPE_HEADERS


def test_the_writer_gives_an_outside_answer_the_apps_headers() -> None:
    """error_answer writes the same header set, and the envelope, for a server's own answer."""
    answer = error_answer(404, "not found", tracking_header="X-Tracking-ID", tracking_id="t-1")
    assert answer.status == "404 Not Found"
    assert header_names(name for name, _ in answer.headers) == ENVELOPE_HEADERS
    assert json.loads(answer.body) == {
        "code": 404,
        "msg": "not found",
        "data": None,
        "tracking_id": "t-1",
    }


def test_gunicorn_and_the_metrics_listener_answer_with_the_apps_headers(tmp_path: Path) -> None:
    """Real gunicorn: an app answer, an error page gunicorn writes itself (a malformed
    request) and the metrics listener's 404 have the same headers."""
    metrics_port = free_port()
    env = base_env(
        WEB_CONCURRENCY="1",
        DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
        METRICS_BIND=f"127.0.0.1:{metrics_port}",
    )
    server = Gunicorn(tmp_path, env, args=[SLEEPY]).start()
    try:
        status, app_headers, _ = get(server.port, "/no-such-route")
        assert status == 404
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n")
            reply = b""
            while chunk := sock.recv(65536):
                reply += chunk
        head = reply.partition(b"\r\n\r\n")[0]
        status, listener_headers, _ = get(metrics_port, "/no-such-route")
        assert status == 404
    finally:
        server.stop()
    assert header_names(app_headers) == ENVELOPE_HEADERS
    assert head.startswith(b"HTTP/1.1 400 ")
    assert raw_header_names(head) == ENVELOPE_HEADERS
    assert header_names(listener_headers) == ENVELOPE_HEADERS


def test_the_error_statuses_are_listed_once() -> None:
    """The module's table of statuses is ERROR_STATUSES, and the API document's common
    answers are taken from it."""
    table = re.findall(r"^    (\d{3}) ", envelope.__doc__ or "", re.MULTILINE)
    assert [int(code) for code in table] == list(ERROR_STATUSES)
    assert all(COMMON_ANSWERS[code] == ERROR_STATUSES[code] for code in COMMON_ANSWERS)


@pytest.mark.parametrize(
    "module",
    [
        pytest.param("chassis.serving.hooks", id="gunicorn"),
        pytest.param("chassis.web.metrics_listener", id="metrics-listener"),
        pytest.param("chassis.serving.devserver", id="devserver"),
    ],
)
def test_no_server_writes_the_envelope_by_hand(module: str) -> None:
    """Every writer outside Flask calls error_answer; none builds the body or its headers."""
    source = Path(importlib.import_module(module).__file__ or "").read_text()
    assert "error_answer(" in source
    assert "envelope_json(" not in source
    assert '"Content-Type", "application/json"' not in source
