"""The tracking id: accepted or replaced, echoed on every response, carried by every log line."""

from __future__ import annotations

import logging
import re
import threading
import uuid

import pytest
from flask import Flask, abort, g
from flask.testing import FlaskClient
from flask.typing import ResponseReturnValue

from chassis.observability.tracking import (
    NO_TRACKING_ID,
    CloseHook,
    call_with_tracking_id,
    current_tracking_id,
    tracking_scope,
)
from chassis.web.responses import ok
from tests.support.flask_app import AppFactory, LogReader

HEADER = "X-Tracking-ID"
UUID_HEX = r"^[0-9a-f]{32}$"


@pytest.mark.parametrize(
    "incoming",
    [
        pytest.param("abc", id="short"),
        pytest.param("a", id="one-char"),
        pytest.param("x" * 128, id="128-chars"),
        pytest.param("Req.42_x:y-z", id="all-allowed-punctuation"),
        pytest.param("3f2a9c1e0b7d4e6f8a5b2c1d0e9f8a7b", id="uuid-hex"),
    ],
)
def test_valid_tracking_id_is_kept(client: FlaskClient, incoming: str) -> None:
    """A well-formed incoming id is echoed in the header and the body."""
    response = client.get("/healthz", headers={HEADER: incoming})
    assert response.headers[HEADER] == incoming
    assert response.json is not None
    assert response.json["tracking_id"] == incoming


@pytest.mark.parametrize(
    "incoming",
    [
        pytest.param(None, id="missing"),
        pytest.param("", id="empty"),
        pytest.param("x" * 129, id="129-chars"),
        pytest.param("has space", id="space"),
        pytest.param("a\r\nSet-Cookie: x=1", id="crlf"),
        pytest.param('a"b', id="quote"),
        pytest.param("caf\u00e9", id="non-ascii"),
        pytest.param("a/b", id="slash"),
        pytest.param("a\x00b", id="nul"),
    ],
)
def test_invalid_tracking_id_is_replaced(
    client: FlaskClient, read_logs: LogReader, incoming: str | None
) -> None:
    """A missing or unsafe id is replaced by a fresh uuid4 hex and never logged raw."""
    # Set through the environ: the test client itself refuses to send CR/LF in a header.
    environ = {} if incoming is None else {"HTTP_X_TRACKING_ID": incoming}
    read_logs()  # drop the start-up lines
    response = client.get("/healthz", environ_overrides=environ)
    tracking_id = response.headers[HEADER]
    assert tracking_id != incoming
    assert response.json is not None
    assert response.json["tracking_id"] == tracking_id
    assert re.match(UUID_HEX, tracking_id)
    assert uuid.UUID(tracking_id).version == 4
    if incoming:
        assert all(incoming not in str(line) for line in read_logs())


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        pytest.param("get", "/healthz", {}, 200, id="success"),
        pytest.param("get", "/missing", {}, 404, id="not-found"),
        pytest.param("post", "/healthz", {}, 405, id="method-not-allowed"),
        pytest.param("post", "/echo", {"data": b"x" * 2048}, 413, id="too-large"),
        pytest.param("get", "/abort", {}, 418, id="abort"),
        pytest.param("get", "/boom", {}, 500, id="unhandled"),
        pytest.param(
            "get", "/before", {"headers": {"X-Fail-Early": "1"}}, 403, id="before-request"
        ),
    ],
)
def test_every_response_carries_the_tracking_id(
    app: Flask, method: str, path: str, kwargs: dict[str, object], status: int
) -> None:
    """The header is on successes, routing errors, limits, abort(), 500s and hook failures."""
    app.config["MAX_CONTENT_LENGTH"] = 1024

    @app.before_request
    def fail_early() -> None:
        from flask import request

        if request.headers.get("X-Fail-Early"):
            abort(403)

    app.add_url_rule("/echo", "echo", lambda: ok(), methods=["POST"])
    app.add_url_rule("/abort", "abort", lambda: abort(418))

    def boom() -> ResponseReturnValue:
        raise ZeroDivisionError

    app.add_url_rule("/boom", "boom", boom)
    app.add_url_rule("/before", "before", lambda: ok())

    headers = {HEADER: "given-id", **kwargs.pop("headers", {})}  # type: ignore[dict-item]
    response = getattr(app.test_client(), method)(path, headers=headers, **kwargs)
    assert response.status_code == status
    assert response.headers[HEADER] == "given-id"
    assert response.json is not None
    assert response.json["tracking_id"] == "given-id"


def test_tracking_id_is_in_g_and_in_log_records(app: Flask, read_logs: LogReader) -> None:
    """Views see the id as flask.g.tracking_id, and their log records carry it."""

    @app.get("/work")
    def work() -> ResponseReturnValue:
        logging.getLogger("app.work").info("working")
        return ok({"g": g.tracking_id, "ctx": current_tracking_id()})

    read_logs()
    response = app.test_client().get("/work", headers={HEADER: "req-1"})
    assert response.json is not None
    assert response.json["data"] == {"g": "req-1", "ctx": "req-1"}
    assert [line["tracking_id"] for line in read_logs() if line["message"] == "working"] == [
        "req-1"
    ]


def test_tracking_id_does_not_leak_between_requests(client: FlaskClient) -> None:
    """After a request ends, code outside any request sees the placeholder again."""
    client.get("/healthz", headers={HEADER: "first"}, buffered=True)
    assert current_tracking_id() == NO_TRACKING_ID
    second = client.get("/healthz", buffered=True)
    assert second.headers[HEADER] != "first"
    assert current_tracking_id() == NO_TRACKING_ID


@pytest.mark.parametrize("name", [HEADER, HEADER.lower()])
def test_app_set_header_is_replaced_not_duplicated(app: Flask, name: str) -> None:
    """A view cannot send a second, different tracking id header, in any letter case."""
    app.add_url_rule("/own", "own", lambda: ("", 204, {name: "from-view"}))
    response = app.test_client().get("/own", headers={HEADER: "real"})
    assert response.headers.getlist(HEADER) == ["real"]


def test_close_hook_runs_its_callback_even_when_closing_the_body_fails() -> None:
    """The server gets the body's own chunks; closing always runs the callback (which
    resets the tracking id), even after the body's own close() raised."""
    calls: list[str] = []

    class Body(list[bytes]):
        def close(self) -> None:
            calls.append("body")
            raise OSError("client went away")

    hooked = CloseHook(Body([b"a", b"b"]), lambda: calls.append("callback"))
    assert list(hooked) == [b"a", b"b"]
    with pytest.raises(OSError, match="client went away"):
        hooked.close()
    assert calls == ["body", "callback"]


def test_tracking_scope_sets_and_restores_the_id() -> None:
    """Inside the scope records carry the id; outside, the placeholder."""
    with tracking_scope("job-7") as active:
        assert active == "job-7"
        assert current_tracking_id() == "job-7"
    assert current_tracking_id() == NO_TRACKING_ID


def test_tracking_scope_replaces_an_unsafe_id() -> None:
    """Ids given to the scope are validated like incoming headers."""
    with tracking_scope("bad id\n") as active:
        assert active != "bad id\n"
        assert len(active) == 32


def test_call_with_tracking_id_carries_the_id_into_a_thread() -> None:
    """A thread started through the helper logs under the id it was given."""
    seen: list[str] = []
    thread = threading.Thread(
        target=call_with_tracking_id, args=("thread-1", lambda: seen.append(current_tracking_id()))
    )
    thread.start()
    thread.join()
    assert seen == ["thread-1"]
    assert current_tracking_id() == NO_TRACKING_ID


def test_threads_do_not_see_each_others_ids() -> None:
    """Concurrent scopes in different threads keep their own ids."""
    barrier = threading.Barrier(8)
    results: dict[str, str] = {}

    def work(name: str) -> None:
        with tracking_scope(name):
            barrier.wait()
            results[name] = current_tracking_id()

    threads = [threading.Thread(target=work, args=(f"t{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {f"t{i}": f"t{i}" for i in range(8)}


def test_custom_header_name_is_used(make_app: AppFactory) -> None:
    """TRACKING_ID_HEADER renames the header read and written."""
    app = make_app(tracking_id_header="X-Request-ID")
    response = app.test_client().get("/healthz", headers={"X-Request-ID": "abc-1"})
    assert response.headers["X-Request-ID"] == "abc-1"
    assert HEADER not in response.headers
