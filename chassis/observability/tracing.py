"""OpenTelemetry tracing, with TRACING_ENABLED and the `tracing` extra: a server span per
request that continues the caller's W3C trace, carries the tracking id, and whose ids every
log line of the request carries (chassis/observability/log.py).

Use it when a request crosses services and you want to follow it through them. Only
OpenTelemetry's API is imported with this module; the app imports it only when tracing is
on, so with tracing off nothing of OpenTelemetry is loaded or run.

Trust model: a well-formed `traceparent` (https://www.w3.org/TR/trace-context/) from any
client is continued, and its sampled flag is honoured (the SDK's default parent-based
sampler, OTEL_TRACES_SAMPLER); a malformed one starts a new trace. A public client can so
choose its trace id and ask for its request to be recorded: drop the header at the edge if
that matters. Spans record the method, the route template, the path (not the query) and the
status; an unhandled exception adds its type only, since its message may quote user data
(the log line with the same trace id has the traceback).

Processes: the middleware is installed when the app is built, and until this process has a
tracer provider its spans record nothing but still carry the caller's context (so log lines
and outgoing calls keep the caller's trace id). `start_tracing` sets the provider, a batch
span processor and the exporter once per gunicorn worker, after fork and after gevent has
patched threading (the post_worker_init hook), so under gevent the processor's worker is a
greenlet and the master never starts one.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from flask import Flask, got_request_exception, request
from opentelemetry import context, propagate, trace
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id
from werkzeug.utils import ImportStringError, import_string
from werkzeug.wsgi import ClosingIterator

from chassis.observability.tracking import current_tracking_id
from chassis.settings import Settings, SettingsError

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from opentelemetry.sdk.trace.export import SpanExporter

log = logging.getLogger(__name__)

# What log records carry outside any span (startup, the master, jobs): a constant.
NO_TRACE_ID = "-"
# The span attribute holding the tracking id: the name its log field and envelope key have.
TRACKING_ID_ATTRIBUTE = "tracking_id"
# HTTP semantic conventions: other methods are "_OTHER", so a client cannot make up span names.
KNOWN_METHODS = frozenset(
    {"CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"}
)


def current_span_ids() -> tuple[str, str]:
    """Return the active span's trace and span ids in hex, or `NO_TRACE_ID` twice."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return NO_TRACE_ID, NO_TRACE_ID
    return format_trace_id(span_context.trace_id), format_span_id(span_context.span_id)


def known_method(method: str) -> str:
    """Return `method` if it is a standard HTTP method, else "_OTHER"."""
    return method if method in KNOWN_METHODS else "_OTHER"


class EnvironGetter(Getter["WSGIEnvironment"]):
    """Read request headers from a WSGI environ for OpenTelemetry's propagators."""

    def get(self, carrier: WSGIEnvironment, key: str) -> list[str] | None:
        value = carrier.get("HTTP_" + key.upper().replace("-", "_"))
        return [value] if isinstance(value, str) else None

    def keys(self, carrier: WSGIEnvironment) -> list[str]:
        return [k[5:].lower().replace("_", "-") for k in carrier if k.startswith("HTTP_")]


class TracingMiddleware:
    """WSGI middleware that serves each request inside a server span, the current span
    until the server closes the response.

    :param app: the WSGI application to wrap.
    :param tracer: the tracer spans come from (OpenTelemetry's global one records once
        the process has a tracer provider).
    """

    def __init__(self, app: WSGIApplication, tracer: trace.Tracer) -> None:
        self.app = app
        self.tracer = tracer

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        parent = propagate.extract(environ, getter=EnvironGetter())
        method = known_method(environ.get("REQUEST_METHOD", ""))
        path = environ.get("PATH_INFO", "").encode("latin-1", "replace")
        span = self.tracer.start_span(
            "HTTP" if method == "_OTHER" else method,
            parent,
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": method,
                "url.path": path.decode("utf-8", "replace"),
                "url.scheme": environ.get("wsgi.url_scheme", "http"),
                TRACKING_ID_ATTRIBUTE: current_tracking_id(),
            },
        )
        token = context.attach(trace.set_span_in_context(span, parent))

        def start_with_status(
            status: str, headers: list[tuple[str, str]], exc_info: object = None
        ) -> Callable[[bytes], object]:
            code = int(status.split(None, 1)[0])
            span.set_attribute("http.response.status_code", code)
            if code >= 500:  # a 4xx is the client's doing, not the server's failure
                span.set_status(StatusCode.ERROR)
            return start_response(status, headers, exc_info)  # type: ignore[arg-type]

        def finish() -> None:
            span.end()
            context.detach(token)

        try:
            app_iter = self.app(environ, start_with_status)
        except BaseException as exc:
            span.set_status(StatusCode.ERROR, type(exc).__name__)
            finish()
            raise
        # The body may be streamed after this returns: the span ends when the server closes
        # the response, after its access log line (which so carries the trace id).
        return ClosingIterator(app_iter, finish)


def name_span() -> None:
    """Name the request's span for the matched route (a `before_request` hook)."""
    rule = request.url_rule
    if rule is not None:  # None when routing found nothing: the span keeps the method alone
        span = trace.get_current_span()
        span.set_attribute("http.route", rule.rule)
        span.update_name(f"{known_method(request.method)} {rule.rule}")


def record_exception(sender: Flask, exception: BaseException, **_: object) -> None:
    """Mark the request's span failed by an unhandled exception, naming only its type."""
    span = trace.get_current_span()
    span.add_event("exception", {"exception.type": type(exception).__qualname__})
    span.set_status(StatusCode.ERROR, type(exception).__qualname__)


def init_app(app: Flask) -> None:
    """Trace every request `app` serves: wrap its WSGI app, name spans for their routes."""
    app.wsgi_app = TracingMiddleware(app.wsgi_app, trace.get_tracer(__name__))  # type: ignore[method-assign]
    app.before_request(name_span)
    got_request_exception.connect(record_exception, app)


def load_exporter(spec: str) -> SpanExporter:
    """Build the exporter TRACING_EXPORTER names: "console", or a `module:attribute`
    callable returning a SpanExporter."""
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SpanExporter

    if spec == "console":
        # One JSON object per line, as the log lines are; the SDK's default spans lines.
        return ConsoleSpanExporter(out=sys.stdout, formatter=lambda s: s.to_json(None) + "\n")
    try:
        exporter = import_string(spec)()
    except ImportStringError as exc:
        raise SettingsError("TRACING_EXPORTER", f"cannot import {spec}: {exc.exception}") from exc
    if not isinstance(exporter, SpanExporter):
        raise SettingsError("TRACING_EXPORTER", f"{spec} returned {exporter!r}, not a SpanExporter")
    return exporter


def start_tracing(settings: Settings) -> None:
    """Give this process a tracer provider exporting through a batch span processor.

    Call it once per process that serves requests, after fork: the processor starts a
    worker (a thread, or under gevent a greenlet) that a fork would not carry along.
    """
    # The SDK is imported here, in the worker, after gevent's patching, never in the master.
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Resource.create() reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; the processor
    # reads OTEL_BSP_* (batch size, delay), the provider OTEL_TRACES_SAMPLER. At exit (a
    # worker stopping, recycled or aborted exits through sys.exit) the provider exports the
    # spans still queued.
    provider = TracerProvider(resource=Resource.create(), shutdown_on_exit=True)
    provider.add_span_processor(BatchSpanProcessor(load_exporter(settings.tracing_exporter)))
    trace.set_tracer_provider(provider)
    log.info("tracing started: spans exported by %s", settings.tracing_exporter)
