"""The metrics listener: the port METRICS_BIND adds to gunicorn's, where GET /metrics is
answered with the process's Prometheus metrics and every other request with an error
envelope. nginx proxies only to the app's port, so it never exposes them.

`init_app` installs it with the request metrics, only where a listener serves them:
metrics nobody can read would cost every request their counting (bench/instructions.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from flask import Flask
from prometheus_client import make_wsgi_app

from chassis.observability.metrics import METRICS_PATH, RequestMetrics, current_metrics, watch_pool
from chassis.observability.tracking import new_tracking_id
from chassis.settings import Settings
from chassis.web.envelope import error_answer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class MetricsListener:
    """WSGI middleware answering requests that arrived on the metrics listener's port with
    the metrics (GET /metrics) or an error envelope; every other request goes to the app."""

    def __init__(self, app: WSGIApplication, port: int, tracking_header: str) -> None:
        self.app = app
        self.port = port
        self.tracking_header = tracking_header

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if arrival_port(environ) != self.port:
            return self.app(environ, start_response)
        if environ.get("PATH_INFO") != METRICS_PATH:
            return self.error(start_response, 404, "not found")
        if environ.get("REQUEST_METHOD") != "GET":
            return self.error(start_response, 405, "method not allowed", ("Allow", "GET"))
        # prometheus_client's own: the text format or OpenMetrics as the scraper asks,
        # gzipped when it accepts it.
        exposition: Callable[..., Iterable[bytes]] = make_wsgi_app(current_metrics().registry)
        return exposition(environ, start_response)

    def error(
        self, start_response: StartResponse, code: int, msg: str, *headers: tuple[str, str]
    ) -> Iterable[bytes]:
        """The error envelope for `code`: the listener never reaches Flask."""
        answer = error_answer(
            code,
            msg,
            tracking_header=self.tracking_header,
            tracking_id=new_tracking_id(),
            headers=headers,
        )
        start_response(answer.status, answer.headers)
        return [answer.body]


def arrival_port(environ: WSGIEnvironment) -> int | None:
    """The local port of the connection the request came on (gunicorn's socket), if TCP.

    Not SERVER_PORT: behind a Unix socket gunicorn takes it from the Host header, and
    ProxyFix rewrites it from X-Forwarded-Port."""
    try:
        local = environ["gunicorn.socket"].getsockname()
    except (KeyError, AttributeError, OSError):
        return None
    return int(local[1]) if isinstance(local, tuple) else None


def init_app(app: Flask, settings: Settings) -> None:
    """Measure the app's requests and its request pool, and answer the metrics listener,
    where METRICS_BIND asks for one."""
    port = settings.metrics_port
    if port is None:
        return
    watch_pool(app.extensions["db"].engine)
    # Outermost: the listener answers before anything of the app runs, and everything else
    # is counted.
    app.wsgi_app = MetricsListener(  # type: ignore[method-assign]
        RequestMetrics(app.wsgi_app, app.url_map), port, settings.tracking_id_header
    )
