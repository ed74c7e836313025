"""The development server, `make dev`: werkzeug's server with its reloader, on loopback only.

`python -m chassis.serving.devserver [module:app] [--extra-file PATH ...]` serves the app that
`gunicorn.conf.py` names (`app.wsgi:app`) with the same settings, logging and JSON envelope
as `make serve`, on the address `make serve` would use (GUNICORN_BIND, PORT), and restarts
when a watched file changes: every `.py` file under the project (werkzeug's stat reloader
walks each non-system `sys.path` entry) and each `--extra-file`.

Why werkzeug's `run_simple(..., use_reloader=True)` and not `flask run`: the address and the
app come from `gunicorn.conf.py` as for `make serve`, not from `FLASK_RUN_*` variables and
flags that could bind elsewhere; the debugger is off in code rather than by a flag someone
may forget; and the address is checked before anything binds.

The interactive debugger is never installed: it runs code for whoever reaches it, and it
would see nothing anyway, since the app answers every unhandled error with the 500 envelope
(PROPAGATE_EXCEPTIONS is False) and logs the traceback, as in production. werkzeug's server
is not meant for a network either, so an address off loopback is refused with one line.

A module that fails to import (a typo mid-edit) does not stop the server: the traceback is
logged, every request answers the 500 envelope, and saving the fix reloads the app.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import re
import runpy
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote_to_bytes, urlsplit

from werkzeug.serving import WSGIRequestHandler, is_running_from_reloader, run_simple
from werkzeug.utils import import_string

from chassis.observability.log import configure_logging
from chassis.observability.tracking import TrackingIdMiddleware, current_tracking_id
from chassis.settings import (
    Settings,
    current_settings,
    development_secret_said,
    host_port,
    say_development_secret,
)
from chassis.web.envelope import error_answer

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger("chassis.serving.devserver")  # not __main__ under -m

GUNICORN_CONF = "gunicorn.conf.py"
LOAD_FAILED = "the app failed to load; the development server's log has the traceback"


@dataclass(frozen=True, kw_only=True)
class GunicornConf:
    """What `gunicorn.conf.py` resolved that the development server honours."""

    host: str
    port: int
    wsgi_app: str
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


def is_loopback(host: str) -> bool:
    """Whether `host` is `localhost` or a loopback address (127.0.0.0/8, ::1)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # any other name could resolve to any address
        return False


def load_app(spec: str, tracking_header: str) -> WSGIApplication:
    """Import `spec` (module:variable); when that fails, log why and return an app that
    answers the 500 envelope until a fix is saved and the reloader restarts the process."""
    try:
        app: WSGIApplication = import_string(spec)
    except Exception:
        log.exception("cannot load %s; save a fix and the server reloads", spec)
        return TrackingIdMiddleware(load_failed, header=tracking_header)
    return app


def load_failed(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """Answer any request with the 500 envelope: the app could not be imported."""
    # Inside TrackingIdMiddleware (load_app), which adds the tracking id's header.
    answer = error_answer(500, LOAD_FAILED, tracking_header=None, tracking_id=current_tracking_id())
    start_response(answer.status, answer.headers)
    return [answer.body]


# werkzeug colours its own lines for a terminal (ANSI SGR codes); in a log they would be
# escaped into text such as `\x1b[33m`, so they are taken out before the line is written.
_TERMINAL_STYLE = re.compile(r"\x1b\[[0-9;]*m")


class WithoutTerminalStyles(logging.Filter):
    """Remove terminal colour codes from a record's message (werkzeug's request lines and
    its development-server warning)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _TERMINAL_STYLE.sub("", record.getMessage())
        record.args = None
        return True


class PathBytesHandler(WSGIRequestHandler):
    """werkzeug's request handler, with PATH_INFO holding the path's bytes as gunicorn gives
    them (latin-1 text, PEP 3333). werkzeug decodes them as UTF-8 with errors="replace", so
    `%FF%FE` and `%C0%AF` reached the app as the same U+FFFD pair, past the chassis's check
    for a path that is not UTF-8 (chassis/web/errors.py)."""

    def make_environ(self) -> WSGIEnvironment:
        environ = super().make_environ()
        url = urlsplit(self.path)
        # As werkzeug reads it: a path starting with // was parsed as a host.
        path = f"/{url.netloc}{url.path}" if not url.scheme and url.netloc else url.path
        environ["PATH_INFO"] = unquote_to_bytes(path).decode("latin-1")
        return environ


def main(argv: list[str] | None = None) -> None:
    """Serve on loopback, restarting on every change, until Ctrl-C or SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m chassis.serving.devserver")
    parser.add_argument("app", nargs="?", help="module:variable (default: gunicorn.conf.py's)")
    parser.add_argument(
        "--extra-file",
        action="append",
        default=[],
        metavar="PATH",
        help="also restart when this file changes (repeatable)",
    )
    args = parser.parse_args(argv)
    conf = GunicornConf.load()
    if not is_loopback(conf.host):
        raise SystemExit(
            "configuration error: GUNICORN_BIND: the development server listens on loopback "
            f"only: 127.0.0.1, [::1] or localhost (got {conf.host})"
        )
    configure_logging(conf.settings)
    logging.getLogger("werkzeug").addFilter(WithoutTerminalStyles())
    # The first process only holds the socket and restarts the second, which serves. Only
    # the second imports the app, so a module that fails to import never stops the first.
    if is_running_from_reloader():
        development_secret_said()  # by the reloader, once for every restart to come
        app = load_app(args.app or conf.wsgi_app, conf.settings.tracking_id_header)
    else:
        warn_about_scheduler(conf.settings)
        say_development_secret(conf.settings, log.warning)
        app = load_failed  # never called in this process
    run_simple(
        conf.host,
        conf.port,
        app,
        use_reloader=True,
        use_debugger=False,
        # A thread per request, as `flask run`: a slow request does not hold up the others.
        threaded=True,
        extra_files=args.extra_file,
        request_handler=PathBytesHandler,
    )


if __name__ == "__main__":
    main()
