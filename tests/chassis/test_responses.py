"""Every body is the one JSON envelope, and the JSON provider encodes values losslessly."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import time
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from flask.typing import ResponseReturnValue

from chassis.web.responses import created, error, ok

HEADER = "X-Tracking-ID"


@pytest.fixture
def envelope_app(app: Flask) -> Flask:
    """The app plus one view per envelope helper."""

    @app.get("/made")
    def made() -> ResponseReturnValue:
        return ok({"n": 1})

    @app.post("/made")
    def make() -> ResponseReturnValue:
        return created({"id": 7})

    @app.get("/refused")
    def refused() -> ResponseReturnValue:
        return error(409, "name is taken")

    @app.get("/unavailable")
    def unavailable() -> ResponseReturnValue:
        return error(503, "database unavailable", headers={"Retry-After": "5"})

    @app.get("/cacheable")
    def cacheable() -> ResponseReturnValue:
        return error(410, "gone for good", headers={"Cache-Control": "max-age=3600"})

    return app


@pytest.mark.parametrize(
    ("method", "path", "status", "msg", "data"),
    [
        pytest.param("get", "/made", 200, "ok", {"n": 1}, id="ok"),
        pytest.param("post", "/made", 201, "created", {"id": 7}, id="created"),
        pytest.param("get", "/refused", 409, "name is taken", None, id="error"),
    ],
)
def test_helpers_answer_with_the_envelope(
    envelope_app: Flask, method: str, path: str, status: int, msg: str, data: Any
) -> None:
    """ok, created and error write exactly code, msg, data and tracking_id, with their status."""
    response = envelope_app.test_client().open(path, method=method)
    assert response.status_code == status
    assert response.headers["Content-Type"] == "application/json"
    assert response.json == {
        "code": status,
        "msg": msg,
        "data": data,
        "tracking_id": response.headers[HEADER],
    }


def test_body_tracking_id_is_the_request_tracking_id(envelope_app: Flask) -> None:
    """The tracking id in the body is the one the client sent and the header echoes."""
    response = envelope_app.test_client().get("/made", headers={HEADER: "req-42"})
    assert response.headers[HEADER] == "req-42"
    assert response.json is not None
    assert response.json["tracking_id"] == "req-42"


def test_datetime_header_is_iso_with_offset_to_the_second(envelope_app: Flask) -> None:
    """X-DateTime is ISO-8601 with a UTC offset and no fractional seconds."""
    value = envelope_app.test_client().get("/made").headers["X-DateTime"]
    sent = dt.datetime.fromisoformat(value)
    assert sent.utcoffset() is not None
    assert "." not in value
    assert sent.microsecond == 0


def test_datetime_header_follows_the_clock(
    envelope_app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The header is formatted once per second, and a new second gets a new value."""
    client = envelope_app.test_client()
    for now in (1_800_000_000.2, 1_800_000_000.9, 1_800_000_001.0):
        monkeypatch.setattr(time, "time", lambda now=now: now)
        sent = dt.datetime.fromisoformat(client.get("/made").headers["X-DateTime"])
        assert sent.timestamp() == int(now)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(2**70, 2**70, id="integer-past-64-bits"),
        pytest.param({1: "a"}, {"1": "a"}, id="integer-key"),
        pytest.param([[[1]]] * 2, [[[1]]] * 2, id="nested"),
        pytest.param(float("nan"), None, id="nan-as-null"),
    ],
)
def test_envelope_body_is_valid_json_for_what_orjson_refuses(
    envelope_app: Flask, value: object, expected: object
) -> None:
    """Values orjson refuses go through the json module; NaN is null, never the invalid
    `NaN` the json module writes."""

    @envelope_app.get("/odd")
    def odd() -> ResponseReturnValue:
        return ok({"value": value})

    body = envelope_app.test_client().get("/odd").get_data()
    assert json.loads(body, parse_constant=pytest.fail)["data"]["value"] == expected
    assert body.endswith(b"}\n")
    assert body.count(b"\n") == 1


@pytest.mark.parametrize(
    "path", [pytest.param("/made", id="ok"), pytest.param("/refused", id="error"),
             pytest.param("/no-such-route", id="routing-404")],
)  # fmt: skip
def test_answers_are_never_stored_by_caches(envelope_app: Flask, path: str) -> None:
    """Every envelope says Cache-Control: no-store: answers are per request, often private."""
    assert envelope_app.test_client().get(path).headers["Cache-Control"] == "no-store"


def test_a_view_may_choose_its_own_caching(envelope_app: Flask) -> None:
    """A Cache-Control passed in the headers replaces the default."""
    assert envelope_app.test_client().get("/cacheable").headers["Cache-Control"] == "max-age=3600"


def test_error_keeps_its_headers(envelope_app: Flask) -> None:
    """Headers passed to error() reach the client (Retry-After on a 503)."""
    response = envelope_app.test_client().get("/unavailable")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=2))),
            "2026-01-02T03:04:05+02:00",
            id="aware-datetime",
        ),
        pytest.param(
            # Naive on purpose: the provider must take it as UTC.
            dt.datetime(2026, 1, 2, 3, 4, 5),  # noqa: DTZ001
            "2026-01-02T03:04:05+00:00",
            id="naive-datetime",
        ),
        pytest.param(dt.date(2026, 1, 2), "2026-01-02", id="date"),
        pytest.param(
            uuid.UUID("12345678-1234-5678-1234-567812345678"),
            "12345678-1234-5678-1234-567812345678",
            id="uuid",
        ),
        pytest.param(
            decimal.Decimal("0.1000000000000000055511151231257827"),
            "0.1000000000000000055511151231257827",
            id="decimal",
        ),
    ],
)
def test_json_provider_encodes_without_loss(
    app: Flask, client: FlaskClient, value: object, expected: str
) -> None:
    """Datetimes keep an offset, dates are ISO, UUIDs and Decimals are exact strings."""

    @app.get("/value")
    def value_view() -> ResponseReturnValue:
        return ok({"value": value})

    response = client.get("/value")
    assert response.json is not None
    assert response.json["data"]["value"] == expected


def test_json_provider_writes_non_ascii_unescaped(app: Flask, client: FlaskClient) -> None:
    """Non-ASCII text such as "café" is sent as UTF-8 bytes, not as a \\u escape."""

    @app.get("/name")
    def name() -> ResponseReturnValue:
        return ok({"name": "café"})

    assert b"caf\xc3\xa9" in client.get("/name").data
