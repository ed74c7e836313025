"""Cookie sessions still work; requests without a cookie skip the signing work."""

from __future__ import annotations

from flask import Flask, session

from chassis.responses import ok


def test_session_round_trips_through_the_signed_cookie(app: Flask) -> None:
    """A value stored in the session comes back on the next request carrying the cookie."""

    @app.get("/count")
    def count() -> object:
        session["n"] = session.get("n", 0) + 1
        return ok({"n": session["n"]})

    client = app.test_client()
    assert client.get("/count").json["data"] == {"n": 1}  # type: ignore[index]
    assert client.get("/count").json["data"] == {"n": 2}  # type: ignore[index]


def test_request_without_a_cookie_gets_an_empty_session(app: Flask) -> None:
    """No Cookie header: an empty, new session and no Set-Cookie unless it is modified."""

    @app.get("/peek")
    def peek() -> object:
        return ok({"keys": list(session.keys())})

    response = app.test_client().get("/peek")
    assert response.json["data"] == {"keys": []}  # type: ignore[index]
    assert "Set-Cookie" not in response.headers


def test_tampered_cookie_is_ignored(app: Flask) -> None:
    """A cookie with a bad signature yields an empty session, as with Flask's own."""

    @app.get("/peek")
    def peek() -> object:
        return ok({"n": session.get("n")})

    client = app.test_client()
    client.set_cookie("session", "eyJuIjo5OX0.forged.signature")
    assert client.get("/peek").json["data"] == {"n": None}  # type: ignore[index]
