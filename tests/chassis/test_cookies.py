"""chassis/web/cookies.py: cookie sessions still work, and requests without a cookie skip the
signing work (the reason the interface exists)."""

from __future__ import annotations

import pytest
from flask import Flask, session
from flask.typing import ResponseReturnValue

from chassis.web.responses import ok


def test_session_round_trips_through_the_signed_cookie(app: Flask) -> None:
    """A value stored in the session comes back on the next request carrying the cookie."""

    @app.get("/count")
    def count() -> ResponseReturnValue:
        session["n"] = session.get("n", 0) + 1
        return ok({"n": session["n"]})

    client = app.test_client()
    assert client.get("/count").json["data"] == {"n": 1}  # type: ignore[index]
    assert client.get("/count").json["data"] == {"n": 2}  # type: ignore[index]


def test_request_without_a_cookie_gets_an_empty_session(app: Flask) -> None:
    """No Cookie header: an empty, new session and no Set-Cookie unless it is modified."""

    @app.get("/peek")
    def peek() -> ResponseReturnValue:
        return ok({"keys": list(session.keys())})

    response = app.test_client().get("/peek")
    assert response.json["data"] == {"keys": []}  # type: ignore[index]
    assert "Set-Cookie" not in response.headers


def test_request_without_a_cookie_builds_no_signing_serializer(
    app: Flask, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No Cookie header, no itsdangerous serializer: Flask's stock interface builds one for
    every request, which is the cost this interface removes."""
    built: list[Flask] = []
    stock = app.session_interface.get_signing_serializer  # type: ignore[attr-defined]

    def counting(flask_app: Flask) -> object:
        built.append(flask_app)
        return stock(flask_app)

    monkeypatch.setattr(app.session_interface, "get_signing_serializer", counting)

    @app.get("/peek")
    def peek() -> ResponseReturnValue:
        return ok({"keys": list(session.keys())})

    client = app.test_client()
    assert client.get("/peek").status_code == 200
    assert built == []
    client.set_cookie("session", "anything")
    assert client.get("/peek").status_code == 200
    assert built == [app]


def test_tampered_cookie_is_ignored(app: Flask) -> None:
    """A cookie with a bad signature yields an empty session, as with Flask's own."""

    @app.get("/peek")
    def peek() -> ResponseReturnValue:
        return ok({"n": session.get("n")})

    client = app.test_client()
    client.set_cookie("session", "eyJuIjo5OX0.forged.signature")
    assert client.get("/peek").json["data"] == {"n": None}  # type: ignore[index]
