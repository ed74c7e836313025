"""gunicorn integration used by `gunicorn.conf.py`: the CPU count, the logger class (JSON
access and error logs) and the server hooks, the scheduler's included.

Kept out of `gunicorn.conf.py` so that file stays plain assignments, and so this code is
typed, linted and importable by tests. The hooks never assume which app they serve:
`gunicorn -c gunicorn.conf.py other.module:app` serves any WSGI app, and a chassis feature
that needs the app (the job scheduler) starts only when the app was built by the chassis.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from gunicorn import util as gunicorn_util
from gunicorn.glogging import Logger

# The chassis's web layer (Flask, SQLAlchemy, pydantic's schemas, the API document) is
# imported here, in the master, before it forks: every worker shares those pages copy-on-
# write instead of importing a copy of its own after the fork. make bench's PSS row measured
# a kit worker at +42 MiB over a bare Flask worker without it, +3 MiB with it. The service
# (app/) is still imported by each worker, after the fork, unless GUNICORN_PRELOAD.
import chassis.web.app  # noqa: F401
from chassis.observability.log import access_fields, build_formatter, record_filter
from chassis.observability.tracking import NO_TRACKING_ID, current_tracking_id, new_tracking_id
from chassis.scheduler.runner import Scheduler, load_registry
from chassis.settings import (
    Settings,
    current_settings,
    development_secret_said,
    get_settings,
    say_development_secret,
    use_settings,
)
from chassis.web.envelope import error_answer

# What gunicorn.conf.py gives gunicorn for each GUNICORN_WORKER_CLASS.
WORKER_CLASSES = {
    "sync": "sync",
    # gunicorn's gthread worker has no deadline for reading a request (deadline.py).
    "gthread": "chassis.serving.gthread_worker.ThreadWorker",
    # gunicorn's gevent worker has none for a body, and waits out graceful_timeout for idle
    # keep-alive connections.
    "gevent": "chassis.serving.gevent_worker.GeventWorker",
}


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup (container) CPU quota."""
    cpus = len(os.sched_getaffinity(0))
    quota = _cgroup_cpu_quota()
    if quota is not None:
        cpus = min(cpus, max(1, int(quota)))
    return max(1, cpus)


def _cgroup_cpu_quota() -> float | None:
    """The CPU quota in CPUs (quota / period), or None when unlimited or unreadable.

    cgroup v2 writes "max 100000" or "<quota> <period>" in cpu.max; cgroup v1, still the
    hierarchy of many Docker hosts, keeps them apart, with -1 for no limit."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        v1 = Path("/sys/fs/cgroup/cpu")
        quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
        period_us = int((v1 / "cpu.cfs_period_us").read_text())
        return None if quota_us < 0 else quota_us / period_us
    except (OSError, ValueError):
        return None


class StructuredLogger(Logger):  # type: ignore[misc]
    """gunicorn's logger with the app's formats: JSON lines (LOG_FORMAT=json) or text.

    Access lines carry the tracking id read from the response header, so ids the app
    generated appear too, and every field is JSON-escaped whatever the client sent. With
    TRACING_ENABLED they carry the trace id too: gunicorn writes them before it closes the
    response, while the request's span is still the current one.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        settings = current_settings()
        self.tracking_header = settings.tracking_id_header.lower()
        for log in (self.error_log, self.access_log):
            for handler in log.handlers:
                handler.setFormatter(build_formatter(settings.log_format, settings.tracing_enabled))
                handler.addFilter(record_filter(settings))

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: timedelta) -> None:
        status = int(resp.status.split(None, 1)[0]) if resp.status else None
        headers = {name.lower(): value for name, value in resp.headers or ()}
        tracking_id = headers.get(self.tracking_header, "-")
        sent = getattr(resp, "sent", None)
        self.write_access(environ, status, sent, request_time.total_seconds(), tracking_id)

    def write_access(
        self,
        environ: dict[str, Any],
        status: int | None,
        sent: int | None,
        seconds: float,
        tracking_id: str,
    ) -> None:
        """One access line: for each response, and for a request a timeout cut short."""
        if not self.cfg.accesslog:
            return
        fields = access_fields(environ, status, sent, round(seconds * 1000, 3), tracking_id)
        self.access_log.info(
            "%s %s %s %sms",
            fields["method"],
            fields["path"],
            status,
            fields["duration_ms"],
            extra=fields,
        )


def use_json_error_pages(tracking_header: str) -> None:
    """Answer requests gunicorn rejects itself (malformed request line or headers, limits)
    with the JSON envelope and a tracking id, instead of its HTML page.

    gunicorn's workers write those answers through `gunicorn.util.write_error`, looked up at
    call time, so replacing it in the worker is enough. gunicorn has no public hook for its
    error pages: this leans on that function's name and signature, checked against gunicorn
    27.0.1 (tests/test_private_internals.py fails, naming it, if an upgrade changes them).
    """

    def write_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
        status_int, reason, mesg = _client_fault(status_int, reason, mesg)
        answer = error_answer(
            status_int,
            mesg or reason.lower(),
            tracking_header=tracking_header,
            # A timed-out request's answer keeps its id (log_timed_out_request).
            tracking_id=ABORTED.get("tracking_id") or new_tracking_id(),
            headers=[("Connection", "close")],
        )
        lines = [f"HTTP/1.1 {answer.status}", *(f"{k}: {v}" for k, v in answer.headers)]
        head = "\r\n".join(lines) + "\r\n\r\n"
        gunicorn_util.write_nonblock(sock, head.encode("latin-1") + answer.body)

    gunicorn_util.write_error = write_error


def _client_fault(status_int: int, reason: str, mesg: str) -> tuple[int, str, str]:
    """The answer for a request gunicorn refuses, with the two 5xx it gives for what is the
    client's doing turned into the 4xx they are: a client's bytes never count as a server
    error (alerts and error budgets count 5xx)."""
    if status_int == 501:
        # Only an unknown Transfer-Encoding gets 501. RFC 9112 section 6.3: a request whose
        # last coding is not chunked MUST get 400; nginx/kit/app.conf maps its 501 the same.
        return 400, "Bad Request", mesg
    exc = sys.exc_info()[1]
    if status_int == 500 and isinstance(exc, SystemExit) and _waiting_for_client(exc):
        # The master killed a sync worker (GUNICORN_TIMEOUT) that sat waiting for a client
        # still sending its request: the client was too slow, nothing failed here.
        return 408, "Request Timeout", "request timeout: the request was sent too slowly"
    return status_int, reason, mesg


def _waiting_for_client(exc: BaseException) -> bool:
    """Whether `exc` interrupted gunicorn reading the request (its head or body) from the
    socket: the frame below the signal handler that raised it is gunicorn's HTTP reader.

    gunicorn's module layout, checked against 27.0.1: every read of a request's bytes is
    in `gunicorn.http.*` (tests/test_private_internals.py fails, naming it, if not)."""
    frames = [frame for frame, _ in traceback.walk_tb(exc.__traceback__)]
    if len(frames) < 2:
        return False
    return str(frames[-2].f_globals.get("__name__", "")).startswith("gunicorn.http.")


# --- Hooks (gunicorn.conf.py assigns them) ---------------------------------------------


def is_gevent(worker: Any) -> bool:
    """Whether `worker` is one of gunicorn's gevent workers (ours or a class of its own)."""
    # The master imported the worker's module to load its class; a sync master never did.
    ggevent = sys.modules.get("gunicorn.workers.ggevent")
    return ggevent is not None and isinstance(worker, ggevent.GeventWorker)


def prepare_worker(server: Any, worker: Any) -> None:
    """post_fork, in each worker: JSON error pages; under gevent, a cooperative psycopg2."""
    settings = current_settings()  # the master's, inherited through fork
    use_json_error_pages(settings.tracking_id_header)
    if is_gevent(worker):
        # Before the app is loaded, which builds its pool from this process's settings.
        use_settings(settings.for_greenlets(server.cfg.worker_connections))
        if server.cfg.preload_app:
            server.log.warning("preload_app with gevent: the app was imported before patching")
        # psycopg2 waits for the server inside C code, blocking every greenlet of the
        # worker; a wait callback yields to the gevent hub instead (chassis/serving/cooperative.py).
        from chassis.serving.cooperative import patch_psycopg

        patch_psycopg(settings.db_connect_timeout)


def announce_worker(worker: Any) -> None:
    """post_worker_init: say the worker has loaded the app and handles signals."""
    worker.log.info("Worker ready (pid: %s)", worker.pid)


def remember_request(worker: Any, req: Any) -> None:
    """pre_request: note what this worker serves and since when, for a timeout."""
    worker.chassis_current_request = (req, time.monotonic())


def forget_request(worker: Any, req: Any) -> None:
    """post_request: the worker is idle again."""
    worker.chassis_current_request = None


# The tracking id of the request this worker is being killed for, once known: the 500
# gunicorn then writes (use_json_error_pages) carries it. The worker exits right after.
ABORTED: dict[str, str] = {}


def log_timed_out_request(worker: Any) -> None:
    """worker_abort, in the worker the master kills after GUNICORN_TIMEOUT: name the request,
    write its access line (gunicorn writes none for a request that never finished) and have
    the 500 gunicorn sends next carry the same tracking id, the client's when valid.

    The signal handler runs inside the interrupted request, so its id is the current one."""
    tracking_id = current_tracking_id()
    current = getattr(worker, "chassis_current_request", None)
    if current is None:
        worker.log.error("worker timed out after %ss while serving no request", worker.cfg.timeout)
        return
    req, started = current
    worker.log.error(
        "worker timed out after %ss while serving %s %s",
        worker.cfg.timeout,
        req.method,
        req.path,
        extra={"tracking_id": tracking_id},
    )
    if tracking_id == NO_TRACKING_ID:  # not a request the chassis saw: gunicorn's own id
        return
    ABORTED["tracking_id"] = tracking_id
    if isinstance(worker.log, StructuredLogger):
        peer = req.peer_addr[0] if isinstance(req.peer_addr, tuple) else req.peer_addr
        environ = {"REMOTE_ADDR": peer, "REQUEST_METHOD": req.method, "PATH_INFO": req.path,
                   "QUERY_STRING": req.query}  # fmt: skip
        worker.log.write_access(environ, 500, None, time.monotonic() - started, tracking_id)


def log_configuration(server: Any, preload_refused: bool) -> None:
    """when_ready: log the resolved configuration once."""
    cfg = server.cfg
    if preload_refused:
        server.log.warning(
            "GUNICORN_PRELOAD ignored: preloading imports the app in the master before "
            "gevent patches the worker, which breaks monkey patching"
        )
    keys = (
        "worker_class_str",
        "workers",
        "threads",
        "worker_connections",
        "bind",
        "timeout",
        "graceful_timeout",
        "keepalive",
        "max_requests",
        "max_requests_jitter",
        "preload_app",
        "forwarded_allow_ips",
    )
    resolved = {key.removesuffix("_str"): getattr(cfg, key) for key in keys}
    server.log.info("ready: %s", " ".join(f"{k}={v}" for k, v in resolved.items()))
    # Before the first fork: the workers inherit that it was said, and say it no more.
    say_development_secret(current_settings(), server.log.warning)
    development_secret_said()


# A stopping worker gives running jobs graceful_timeout minus this, then hands them back.
SHUTDOWN_MARGIN_SECONDS = 5.0


def chassis_settings(app: object) -> Settings | None:
    """The settings `app` was built from, or None when the chassis did not build it."""
    if not isinstance(app, Flask) or "settings" not in app.extensions:
        return None
    return get_settings(app)


def start_tracing(worker: Any) -> None:
    """post_worker_init: give this worker a tracer provider when TRACING_ENABLED.

    After fork, so the master never runs a span processor, and after the app is loaded,
    which under gevent is after threading was patched: the processor's worker is then a
    greenlet, serving exports between requests, not a thread the patching never saw."""
    settings = chassis_settings(worker.wsgi)
    if settings is None:
        if current_settings().tracing_enabled:
            worker.log.warning("TRACING_ENABLED ignored: %r is not a chassis app", worker.wsgi)
        return
    if settings.tracing_enabled:
        from chassis.observability import tracing  # the optional extra, imported only when enabled

        tracing.start_tracing(settings)


def start_scheduler(worker: Any) -> None:
    """post_worker_init: start this worker's job scheduler when SCHEDULER_ENABLED, if the
    app was built by the chassis (any other WSGI app is served without one)."""
    app = worker.wsgi
    settings = chassis_settings(app)
    if settings is None:
        if current_settings().scheduler_enabled:
            worker.log.warning("SCHEDULER_ENABLED ignored: %r is not a chassis app", app)
        return
    if settings.scheduler_enabled:
        scheduler = Scheduler(app, load_registry(settings))
        app.extensions["scheduler"] = scheduler
        scheduler.start()


def check_database(worker: Any) -> None:
    """post_worker_init, in the master's first worker: connect once, in the background, so
    that a database that cannot be reached is said at start, in one line naming DATABASE_URL's
    host (the readiness check's warning), not first by a request's. The worker serves on: the
    database may come up later (compose, Kubernetes), and /readyz answers 503 until it does."""
    app = worker.wsgi
    if worker.age == 1 and chassis_settings(app) is not None:
        app.extensions["db"].is_ready(timeout=0)


def stop_scheduler(server: Any, worker: Any) -> None:
    """gunicorn worker_exit (in the worker): let running jobs finish inside the graceful
    timeout."""
    app = getattr(worker, "wsgi", None)
    scheduler = app.extensions.get("scheduler") if isinstance(app, Flask) else None
    if scheduler is not None:
        scheduler.stop(wait=max(0.0, worker.cfg.graceful_timeout - SHUTDOWN_MARGIN_SECONDS))
