"""gevent's own WSGI server, without gunicorn: `python -m chassis.serving.gevent_server [module:app]`.

For an app that must live in one process (state kept in memory between requests) and still
serve many requests at once. It patches the standard library for gevent before the app is
imported, makes psycopg2 cooperative (psycogreen), and serves the app `gunicorn.conf.py`
names (`app.wsgi:app`) or the `module:app` given. It runs `gunicorn.conf.py` from the
current directory and honours what that resolved, so the same variables mean the same thing
and have the same defaults as under `make serve`: the bind (`GUNICORN_BIND`, `PORT`;
loopback by default), `GUNICORN_WORKER_CONNECTIONS` (concurrent connections, and the
database pool), `GUNICORN_KEEPALIVE` (idle connections are closed after it) and
`GUNICORN_GRACEFUL_TIMEOUT`: on SIGTERM or SIGINT it stops accepting, lets requests in flight
finish for up to that long, closes idle connections at once, and exits 0.

Limits, against gunicorn's gevent workers:

- One process on one core: nothing restarts it if it dies (run it under a process manager).
- No graceful reload: `HUP` is not handled, so deploying means a restart, with a gap.
- No worker timeout and no recycling (`GUNICORN_TIMEOUT`, `GUNICORN_MAX_REQUESTS`): a request
  stuck in C code or a CPU loop stalls every other request, and nothing kills it.
- The access log has the fields of gunicorn's (logger `gevent.access`); requests that pywsgi
  rejects itself (a malformed request line or headers) get its plain-text 400, not the envelope.
- Ignored: `WEB_CONCURRENCY`, `GUNICORN_WORKER_CLASS`, `GUNICORN_THREADS`, `GUNICORN_PRELOAD`,
  `FORWARDED_ALLOW_IPS` (the app's ProxyFix still applies), `GUNICORN_CMD_ARGS`, gunicorn's
  hooks, and `SCHEDULER_ENABLED` (run `flask scheduler run` beside it).

What this module imports runs before the patching, as gunicorn's master imports the chassis
before its gevent workers patch: it starts no thread and opens no socket, and gevent finds
no module holding an ssl class it would miss (it would warn; a test checks that it does not).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import runpy
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gevent
from gevent import monkey, pywsgi
from gevent.event import Event
from gevent.pool import Pool
from werkzeug.utils import import_string

from chassis.observability.log import access_fields, configure_logging
from chassis.observability.tracking import ENVIRON_KEY, NO_TRACKING_ID, new_tracking_id
from chassis.serving.cooperative import patch_psycopg
from chassis.settings import Settings, current_settings, host_port, use_settings
from chassis.web.envelope import error_answer

log = logging.getLogger("chassis.serving.gevent_server")  # not __main__ under -m
access_log = logging.getLogger("gevent.access")

GUNICORN_CONF = "gunicorn.conf.py"
STOPPED_MID_REQUEST = "the server stopped before the request finished"


@dataclass(frozen=True, kw_only=True)
class GunicornConf:
    """What `gunicorn.conf.py` resolved that a server other than gunicorn honours."""

    host: str
    port: int
    wsgi_app: str
    worker_connections: int
    keepalive: int
    graceful_timeout: int
    settings: Settings

    @classmethod
    def load(cls, path: str = GUNICORN_CONF) -> GunicornConf:
        """Run `path` as gunicorn does; a missing file or a bad value exits with one line."""
        if not Path(path).is_file():
            raise SystemExit(f"configuration error: {path}: not found; run from the project root")
        conf = runpy.run_path(path)
        host, port = listen_address(conf["bind"][0])
        return cls(
            host=host,
            port=port,
            wsgi_app=conf["wsgi_app"],
            worker_connections=conf["worker_connections"],
            keepalive=conf["keepalive"],
            graceful_timeout=conf["graceful_timeout"],
            settings=current_settings(),  # read once, by gunicorn.conf.py
        )


def listen_address(bind: str) -> tuple[str, int]:
    """Split a gunicorn bind, `HOST:PORT` or `[IPV6]:PORT`, into host and port.

    Only TCP: gunicorn's `unix:` and `fd://` binds exit with one line naming GUNICORN_BIND.
    """
    parsed = host_port(bind)
    if parsed is None:
        raise SystemExit(
            f"configuration error: GUNICORN_BIND: must be HOST:PORT or [IPV6]:PORT (got {bind!r})"
        )
    return parsed


def warn_about_scheduler(settings: Settings) -> None:
    """Say that SCHEDULER_ENABLED starts nothing here (only gunicorn's hooks start one)."""
    if settings.scheduler_enabled:
        log.warning("SCHEDULER_ENABLED ignored by this server: run `flask scheduler run` beside it")


class Handler(pywsgi.WSGIHandler):  # type: ignore[misc]
    """pywsgi's connection handler with an idle timeout, a count of requests in flight, and
    gunicorn's access log fields."""

    server: Server
    body_bytes = 0  # of the current response

    def read_requestline(self) -> str:
        # A connection that sends nothing (an idle keep-alive, a client that never starts)
        # is closed after GUNICORN_KEEPALIVE seconds instead of holding a pool slot forever.
        # An empty request line closes the connection.
        read = super().read_requestline
        line: str = gevent.with_timeout(self.server.keepalive, read, timeout_value="")
        return line

    def handle_one_response(self) -> None:
        self.body_bytes = 0
        self.server.in_flight += 1
        try:
            super().handle_one_response()
        finally:
            self.server.in_flight -= 1
            if self.server.stopping.is_set():
                # Answer this request, then close: no new one starts on this connection.
                self.close_connection = True

    def write(self, data: bytes) -> None:
        super().write(data)
        self.body_bytes += len(data)  # pywsgi's response_length counts the headers too

    def handle_error(self, kind: type[BaseException], error: BaseException, tb: Any) -> None:
        # pywsgi answers an error that escapes the app, and a request cut off when the stop's
        # time is up, in plain text; the chassis answers in the envelope, as everywhere else.
        cut_off = isinstance(error, gevent.GreenletExit)
        if not cut_off:
            log.error("error serving %r", self.requestline, exc_info=(kind, error, tb))
        self.close_connection = True
        if self.headers_sent:
            return  # part of the answer is out: closing the connection is all that is left
        code, msg = (503, STOPPED_MID_REQUEST) if cut_off else (500, "internal server error")
        answer = error_answer(
            code,
            msg,
            tracking_header=self.server.tracking_header,
            tracking_id=(self.environ or {}).get(ENVIRON_KEY) or new_tracking_id(),
        )
        with contextlib.suppress(OSError):  # the client may be gone
            self.start_response(answer.status, answer.headers)
            self.write(answer.body)

    def log_request(self) -> None:
        # The fields of gunicorn's access log (StructuredLogger.access in chassis/serving/hooks.py);
        # a test checks that both lines carry the same keys.
        environ: dict[str, Any] = self.environ or {}
        duration_ms = round((self.time_finish - self.time_start) * 1000, 3)
        tracking_id = environ.get(ENVIRON_KEY, NO_TRACKING_ID)
        fields = access_fields(environ, self.code, self.body_bytes, duration_ms, tracking_id)
        access_log.info(
            "%s %s %s %sms", fields["method"], fields["path"], self.code, duration_ms, extra=fields
        )


class Server(pywsgi.WSGIServer):  # type: ignore[misc]
    """pywsgi's server with a bounded, graceful stop."""

    handler_class = Handler

    def __init__(self, conf: GunicornConf, app: Any) -> None:
        super().__init__(
            (conf.host, conf.port),
            app,
            spawn=Pool(conf.worker_connections),
            log=None,  # access lines come from Handler.log_request
            error_log=logging.getLogger("gevent.error"),
        )
        self.keepalive = conf.keepalive
        self.tracking_header = conf.settings.tracking_id_header
        self.in_flight = 0
        self.stopping = Event()

    def drain(self, timeout: float) -> int:
        """Stop accepting, give requests in flight up to `timeout` seconds, then close every
        connection; return how many requests were still running."""
        self.stopping.set()
        self.close()
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            gevent.sleep(0.05)
        unfinished: int = self.in_flight
        # What is left waits for a request that must not come (idle keep-alive connections)
        # or ran out of time, as gunicorn's graceful_timeout cuts off its workers.
        self.pool.kill(block=True, timeout=1)
        return unfinished


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT, then stop gracefully; return the exit status."""
    # Before the app and the libraries it opens sockets and threads with are imported.
    monkey.patch_all()

    parser = argparse.ArgumentParser(prog="python -m chassis.serving.gevent_server")
    parser.add_argument("app", nargs="?", help="module:variable (default: gunicorn.conf.py's)")
    args = parser.parse_args(argv)
    conf = GunicornConf.load()
    configure_logging(conf.settings)
    # Access lines at INFO whatever LOG_LEVEL is, as gunicorn's access log (its own logger) is.
    access_log.setLevel(logging.INFO)
    warn_about_scheduler(conf.settings)
    # The same rule as a gunicorn gevent worker's (chassis/serving/hooks.py, prepare_worker).
    use_settings(conf.settings.for_greenlets(conf.worker_connections))
    # psycopg2 waits for PostgreSQL inside C code, blocking every greenlet; a wait callback
    # yields to the gevent hub instead (as in chassis/serving/hooks.py's post_fork).
    patch_psycopg(conf.settings.db_connect_timeout)

    server = Server(conf, import_string(args.app or conf.wsgi_app))
    try:
        server.start()
    except OSError as exc:
        raise SystemExit(f"cannot listen on {conf.host}:{conf.port}: {exc.strerror}") from None
    stop = Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop.set)
    log.info(
        "listening on http://%s:%s (gevent, one process, %s connections)",
        f"[{conf.host}]" if ":" in conf.host else conf.host,
        conf.port,
        conf.worker_connections,
    )
    stop.wait()
    log.info("stopping: requests in flight get up to %ss", conf.graceful_timeout)
    unfinished = server.drain(conf.graceful_timeout)
    if unfinished:
        log.warning(
            "stopped after %ss, cutting off requests still running: %s",
            conf.graceful_timeout,
            unfinished,
        )
    else:
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
