"""`build_app()`: a Flask app with every chassis part installed, in a commented order, ready
for a service's own resources and jobs (app/__init__.py registers them)."""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from types import FunctionType
from typing import Any

from flask import Flask, Response, request
from flask.ctx import _AppCtxGlobals
from flask.typing import ResponseReturnValue
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.routing import Map

from chassis.database import sessions as db
from chassis.observability.log import configure_logging
from chassis.observability.tracking import TrackingIdMiddleware, current_tracking_id
from chassis.scheduler.cli import cli as scheduler_cli
from chassis.settings import Settings, say_development_secret
from chassis.web import apidocs, errors, health, metrics_listener, openapi
from chassis.web.cookies import CookieSessionInterface
from chassis.web.responses import ChassisResponse, JSONProvider

log = logging.getLogger(__name__)


# Private in Flask, checked against Flask 3.1.3: `_AppCtxGlobals` is the class of `flask.g`
# and `Flask.app_ctx_globals_class` its documented hook, but Flask gives the class no public
# name; tests/test_private_internals.py fails, naming it, if that changes.
class TrackingGlobals(_AppCtxGlobals):
    """`flask.g` with `g.tracking_id`, the active tracking id (`current_tracking_id()`).

    Read when asked rather than copied in by a `before_request` hook: a hook costs every
    request about 15 k instructions (bench/instructions.py), and most never read it."""

    @property
    def tracking_id(self) -> str:
        """The active tracking id."""
        return current_tracking_id()


class ExactMap(Map):
    """URL routing that answers what was asked, never a redirect.

    werkzeug's defaults redirect `/api//items` (merge_slashes) and `/x` to `/x/`
    (strict_slashes) with a 308 whose body is HTML and whose Location is built from the Host or
    X-Forwarded-Host header: an open redirect wherever a forwarded host is trusted. Flask
    returns routing redirects as they are, past every error handler. Here a doubled slash is
    a 404 envelope and a trailing slash matches the same route."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("merge_slashes", False)
        kwargs.setdefault("strict_slashes", False)
        super().__init__(*args, **kwargs)


class ChassisFlask(Flask):
    """Flask with exact routing (ExactMap), `g.tracking_id`, the body limit and the path's
    UTF-8 checked before any hook or view, conditional answers in the envelope
    (ChassisResponse) and an OPTIONS answer without a body."""

    url_map_class = ExactMap
    app_ctx_globals_class = TrackingGlobals
    response_class = ChassisResponse

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Plain functions ensure_sync has checked once (never a coroutine function).
        self._sync_functions: set[Callable[..., Any]] = set()

    def preprocess_request(self) -> ResponseReturnValue | None:
        """Refuse a declared body over MAX_CONTENT_LENGTH (413) and a path that is not UTF-8
        (400), then run the request hooks.

        A direct call, not a `before_request` hook: Flask calls each hook through
        `ensure_sync`, whose coroutine check costs every request more than the check does."""
        environ = request.environ  # once: each look through the proxy costs four calls
        errors.reject_oversized_body(self.config["MAX_CONTENT_LENGTH"], environ)
        errors.reject_undecodable_path(environ)
        return super().preprocess_request()

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask's, answered from a set for a function already known not to be a coroutine
        function.

        Flask calls this on every hook and view of every request, and its coroutine check
        (`inspect.iscoroutinefunction`) is most of what a hook costs. The check runs once per
        function (they are the app's registered views, hooks and handlers); anything else
        (async functions, methods, partials) takes Flask's own path each time."""
        if func in self._sync_functions:
            return func
        if type(func) is FunctionType and not inspect.iscoroutinefunction(func):
            self._sync_functions.add(func)
            return func
        return super().ensure_sync(func)

    def make_default_options_response(self) -> Response:
        """204 with `Allow`: Flask's default is a 200 with an empty text/html body."""
        response = super().make_default_options_response()
        response.status_code = 204
        del response.headers["Content-Type"]
        return response


def build_app(import_name: str, settings: Settings) -> Flask:
    """Build a Flask app with every chassis part installed, ready for a service's own."""
    # Logging first, so Flask finds a handler on the root and adds no handler of its own.
    configure_logging(settings)

    app = ChassisFlask(import_name)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        MAX_CONTENT_LENGTH=settings.max_content_length,
        # Unhandled errors become the 500 envelope in every environment (tests included),
        # never a propagated exception or the debugger's HTML page.
        PROPAGATE_EXCEPTIONS=False,
        TESTING=settings.app_env == "test",
    )
    app.extensions["settings"] = settings
    app.json = JSONProvider(app)
    app.session_interface = CookieSessionInterface()

    errors.init_app(app)
    db.init_app(app, settings)
    app.register_blueprint(health.bp)
    # The API document and its page, written from every route when first asked for.
    app.register_blueprint(openapi.bp)
    app.register_blueprint(apidocs.bp)
    # Only the `flask scheduler` commands: schedulers start per gunicorn worker (hooks in
    # gunicorn.conf.py) or in `flask scheduler run`, never while the app is built.
    app.cli.add_command(scheduler_cli)

    # Middleware, innermost first. ProxyFix rewrites the environ for Flask (only when some
    # proxy is trusted: with every count 0 it would change nothing). The tracing span
    # (TRACING_ENABLED) covers both, inside the tracking id so that it can record it. The
    # tracking id wraps everything, so even a failure in ProxyFix or Flask itself answers
    # with the header.
    hops = {
        "x_for": settings.proxy_fix_x_for,
        "x_proto": settings.proxy_fix_x_proto,
        "x_host": settings.proxy_fix_x_host,
        "x_port": settings.proxy_fix_x_port,
        "x_prefix": settings.proxy_fix_x_prefix,
    }
    if any(hops.values()):
        app.wsgi_app = ProxyFix(app.wsgi_app, **hops)  # type: ignore[method-assign]
    if settings.tracing_enabled:
        from chassis.observability import (
            tracing,  # the optional `tracing` extra, imported only when on
        )

        tracing.init_app(app)
    app.wsgi_app = TrackingIdMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, header=settings.tracking_id_header
    )
    # Outside it all, the request metrics (every answer counted, a failure of the tracking
    # id's included) and the metrics listener (METRICS_BIND), answered before anything else.
    metrics_listener.init_app(app, settings)

    say_development_secret(settings, log.warning)
    return app
