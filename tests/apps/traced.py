"""The test app (harness/apps/sleepy.py) plus endpoints for the tracing tests.

    GET /test/hello/<name>   logs one line and answers: a route with a placeholder
    GET /test/boom           an unhandled exception: the 500 envelope
    GET /test/outgoing       the headers an outgoing call would carry (OpenTelemetry's inject)
    GET /test/background     logs from a plain thread and one given the request's context
    GET /test/process        this worker's pid, OS threads, Python threads, and OpenTelemetry
                             as far as it is loaded

Nothing here imports OpenTelemetry at import time: with tracing off it must stay unloaded.
"""

from __future__ import annotations

import contextvars
import logging
import os
import sys
import threading
import time

from flask import Response

from chassis.web.responses import ok
from harness.apps.sleepy import app

log = logging.getLogger("tests.traced")


@app.get("/test/hello/<name>")
def hello(name: str) -> Response:
    """Log one line and answer, after a pause that lets concurrent requests interleave."""
    time.sleep(0.02)
    log.info("hello %s", name)
    return ok({"name": name})


@app.get("/test/boom")
def boom() -> Response:
    """Fail with an exception whose message must not reach the span."""
    raise RuntimeError("secret-detail-4711")


@app.get("/test/outgoing")
def outgoing() -> Response:
    """Answer with the headers OpenTelemetry's propagator writes for an outgoing call."""
    from opentelemetry import propagate

    headers: dict[str, str] = {}
    propagate.inject(headers)
    return ok({"headers": headers})


@app.get("/test/background")
def background() -> Response:
    """Log from a thread (a greenlet under gevent) started plainly, and from one started
    with a copy of the request's context; wait for both."""

    def work(how: str) -> None:
        log.info("background", extra={"how": how})

    plain = threading.Thread(target=work, args=("plain",))
    copied = threading.Thread(target=contextvars.copy_context().run, args=(work, "copied"))
    for thread in (plain, copied):
        thread.start()
        thread.join()
    return ok()


@app.get("/test/process")
def process() -> Response:
    """Report what runs in this worker, without importing anything to find out."""
    otel_trace = sys.modules.get("opentelemetry.trace")
    provider = otel_trace.get_tracer_provider() if otel_trace is not None else None
    return ok(
        {
            "pid": os.getpid(),
            "os_threads": len(os.listdir("/proc/self/task")),
            "threads": sorted(thread.name for thread in threading.enumerate()),
            "opentelemetry_loaded": sorted(m for m in sys.modules if m.startswith("opentelemetry")),
            "tracer_provider": type(provider).__module__ + "." + type(provider).__name__
            if provider is not None
            else None,
        }
    )
