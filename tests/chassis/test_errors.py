"""Every error is the JSON envelope with its own status, headers and tracking id."""

from __future__ import annotations

import pytest
from flask import Flask, abort, request
from flask.testing import FlaskClient
from flask.typing import ResponseReturnValue

from chassis.web.responses import ok
from tests.support.flask_app import LogReader

HEADER = "X-Tracking-ID"


@pytest.fixture
def error_app(app: Flask) -> Flask:
    """The app plus views that fail in each way an error can arise."""
    app.config["MAX_CONTENT_LENGTH"] = 64

    @app.post("/echo")
    def echo() -> ResponseReturnValue:
        return ok(request.get_json())

    @app.post("/ignore-body")
    def ignore_body() -> ResponseReturnValue:
        return ok()

    @app.get("/boom")
    def boom() -> ResponseReturnValue:
        raise RuntimeError('secret "detail"\nsecond line')

    @app.get("/teapot")
    def teapot() -> ResponseReturnValue:
        abort(409, "item 'x' already exists")

    return app


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "msg"),
    [
        pytest.param("get", "/nowhere", {}, 404, "not found", id="404"),
        pytest.param("delete", "/healthz", {}, 405, "method not allowed", id="405"),
        pytest.param(
            "post",
            "/echo",
            {"json": {"k": "v" * 100}},
            413,
            "request body is over the 64-byte limit",
            id="413-read",
        ),
        pytest.param(
            "post",
            "/ignore-body",
            {"data": b"x" * 100},
            413,
            "request body is over the 64-byte limit",
            id="413-unread",
        ),
        pytest.param(
            "post",
            "/echo",
            {"data": b"{not json", "content_type": "application/json"},
            400,
            "request body is not valid JSON",
            id="malformed-json",
        ),
        pytest.param(
            "post",
            "/echo",
            {"data": b"{}", "content_type": "text/plain"},
            400,
            "request body must be JSON (Content-Type: application/json)",
            id="not-json",
        ),
        pytest.param("get", "/teapot", {}, 409, "item 'x' already exists", id="abort-message"),
        pytest.param("get", "/boom", {}, 500, "internal server error", id="500"),
    ],
)
def test_error_is_an_envelope_with_status_and_tracking_id(
    error_app: Flask,
    read_logs: LogReader,
    method: str,
    path: str,
    kwargs: dict[str, object],
    status: int,
    msg: str,
) -> None:
    """Status, envelope and header agree, and every log line is JSON with the same id."""
    read_logs()
    client = error_app.test_client()
    response = getattr(client, method)(path, headers={HEADER: "err-1"}, **kwargs)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.json == {"code": status, "msg": msg, "data": None, "tracking_id": "err-1"}
    assert response.headers[HEADER] == "err-1"
    assert {line["tracking_id"] for line in read_logs()} <= {"err-1"}


def test_405_keeps_the_allow_header(client: FlaskClient) -> None:
    """Method Not Allowed lists the methods that are."""
    response = client.delete("/healthz")
    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}


def test_500_logs_the_traceback_but_never_returns_it(
    error_app: Flask, read_logs: LogReader
) -> None:
    """The traceback is in one JSON log line with the tracking id; the body has none of it."""
    read_logs()
    response = error_app.test_client().get("/boom", headers={HEADER: "boom-1"})
    body = response.get_data(as_text=True)
    assert "Traceback" not in body
    assert "secret" not in body
    (line,) = [line for line in read_logs() if line["level"] == "ERROR"]
    assert line["tracking_id"] == "boom-1"
    assert 'RuntimeError: secret "detail"\nsecond line' in line["exception"]


def test_no_error_is_html(error_app: Flask) -> None:
    """No error path answers with an HTML page."""
    client = error_app.test_client()
    for response in (client.get("/nowhere"), client.put("/healthz"), client.get("/boom")):
        assert response.mimetype == "application/json"
        assert b"<" not in response.data


def test_abort_with_a_response_is_passed_through(app: Flask) -> None:
    """abort(response) keeps the response the view built, plus the tracking id."""

    @app.get("/custom")
    def custom() -> ResponseReturnValue:
        abort(app.response_class("plain", status=418, mimetype="text/plain"))

    response = app.test_client().get("/custom", headers={HEADER: "c-1"})
    assert response.status_code == 418
    assert response.data == b"plain"
    assert response.headers[HEADER] == "c-1"
