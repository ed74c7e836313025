"""Flask's signed-cookie sessions, at no cost to requests that send no cookie.

Flask opens the session on every request, building an itsdangerous serializer and parsing
cookies even for API calls that never send one: about a tenth of the chassis's per-request time
in `bench/run.py`. This interface answers those requests with an empty session at once and
behaves exactly like Flask's for every request that carries a cookie.
"""

from __future__ import annotations

from flask import Flask, Request, Response
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin


class CookieSessionInterface(SecureCookieSessionInterface):
    """`SecureCookieSessionInterface` that skips the work when no cookie was sent."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if "HTTP_COOKIE" not in request.environ:
            return self.session_class()
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Flask's, skipped for a session nobody read or wrote that holds nothing: Flask
        would read seven cookie settings to then do nothing with them."""
        if session or session.modified or session.accessed:
            super().save_session(app, session, response)
