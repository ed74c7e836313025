"""Every error is the JSON envelope with its own status, headers and tracking id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, abort, request
from flask.testing import FlaskClient
from flask.typing import ResponseReturnValue

from chassis.web.responses import ok
from harness.apps import records
from harness.processes import Gunicorn, serve_test_app
from harness.processes import request as send
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


# Percent-decoded paths that are not UTF-8, as a server passes them to the app (PEP 3333:
# the bytes as latin-1 text). Flask's test client would decode `%FF` with errors="replace"
# itself, so these tests give PATH_INFO directly (`raw_path`); the real server's test
# sends them percent-encoded.
NOT_UTF8 = [
    pytest.param(b"\xff\xfe", id="ff-fe"),
    pytest.param(b"\xc0\xaf", id="overlong-slash"),
    pytest.param(b"\x80", id="lone-continuation"),
    pytest.param(b"\xe6\x97", id="truncated"),
    pytest.param(b"\xed\xa0\x80", id="surrogate"),
]
NOT_UTF8_MSG = "request path is not valid UTF-8"


def raw_path(path: bytes) -> dict[str, str]:
    """The environ entry of a request for `path`, as a server passes its bytes."""
    return {"PATH_INFO": path.decode("latin-1")}


@pytest.mark.parametrize("name", NOT_UTF8)
@pytest.mark.parametrize(
    ("method", "prefix"),
    [
        pytest.param("PUT", b"/test/records/by-name/", id="put-record"),
        pytest.param("OPTIONS", b"/test/records/by-name/", id="options-record"),
        pytest.param("GET", b"/static/", id="static"),
        pytest.param("GET", b"/healthz/", id="no-such-route"),
    ],
)
def test_a_path_that_is_not_utf8_is_a_400_before_any_hook(
    app: Flask, method: str, prefix: bytes, name: bytes
) -> None:
    """Any route, or none, answers the 400 envelope before a request hook (or the view
    after them) runs: werkzeug would have passed the bytes on replaced by U+FFFD."""
    hooks_run: list[str] = []
    app.before_request(lambda: hooks_run.append(request.path))
    response = app.test_client().open(
        "/", method=method, json={"quantity": 1}, environ_overrides=raw_path(prefix + name)
    )
    assert response.status_code == 400
    assert response.json == {
        "code": 400,
        "msg": NOT_UTF8_MSG,
        "data": None,
        "tracking_id": response.headers[HEADER],
    }
    assert hooks_run == []


def put_record(client: FlaskClient, name: bytes) -> tuple[int, Any]:
    """PUT quantity 1 to the record named by `name`'s bytes; return the status and `msg`."""
    path = raw_path(b"/test/records/by-name/" + name)
    response = client.put("/", json={"quantity": 1}, environ_overrides=path)
    return response.status_code, (response.json or {}).get("msg")


def stored_names(client: FlaskClient) -> list[str]:
    """The names of the stored records, oldest first."""
    data = (client.get("/test/records").json or {})["data"]
    return [record["name"] for record in data["records"]]


def test_paths_differing_only_in_invalid_bytes_store_nothing(db_client: FlaskClient) -> None:
    """`%FF%FE` and `%C0%AF`, both two U+FFFD once werkzeug has replaced them, are each a 400,
    and no record is written: they never name one record."""
    assert put_record(db_client, b"\xff\xfe") == (400, NOT_UTF8_MSG)
    assert put_record(db_client, b"\xc0\xaf") == (400, NOT_UTF8_MSG)
    assert stored_names(db_client) == []


def test_a_utf8_path_outside_ascii_reaches_the_view(db_client: FlaskClient) -> None:
    """Names in UTF-8 outside ASCII are stored as sent, U+FFFD itself included."""
    names = ["é", "日本", "\ufffd"]
    for name in names:
        assert put_record(db_client, name.encode()) == (201, "created")
    assert stored_names(db_client) == names


def test_paths_that_are_not_utf8_are_refused_by_a_real_server(
    tmp_path: Path, started: list[Gunicorn]
) -> None:
    """Through gunicorn, which passes the path's bytes on as PEP 3333 says: two names that
    are not UTF-8 are each the 400 envelope and store nothing; a UTF-8 name is stored."""
    records.create_tables(f"sqlite:///{tmp_path / 'app.db'}")
    server = serve_test_app(tmp_path, "sync", WEB_CONCURRENCY="1")
    started.append(server)
    # Percent-encoded: gunicorn refuses bytes outside ASCII in the request line itself.
    for name in ("%FF%FE", "%C0%AF"):
        path = f"/test/records/by-name/{name}"
        status, headers, body = send(server.port, "PUT", path, b'{"quantity": 1}')
        assert (status, headers["Content-Type"]) == (400, "application/json")
        assert json.loads(body) == {
            "code": 400,
            "msg": NOT_UTF8_MSG,
            "data": None,
            "tracking_id": headers["X-Tracking-ID"],
        }
    status, _, _ = send(server.port, "PUT", "/test/records/by-name/%C3%A9", b'{"quantity": 1}')
    assert status == 201
    _, _, body = send(server.port, "GET", "/test/records")
    assert [record["name"] for record in json.loads(body)["data"]["records"]] == ["é"]
