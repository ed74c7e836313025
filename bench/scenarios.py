"""The requests bench/instructions.py counts, and the process each count is taken in.

    python bench/scenarios.py drive kit|bare <row> <warm-up> <requests>
    python bench/scenarios.py serve [gunicorn arguments]

`drive` builds the app in this process, as a gunicorn worker would, sends `<warm-up>`
requests and then `<requests>` more, calling the WSGI app directly: a copied environ, the
body read and the response closed, as a server does. Every answer's status is checked, and
any other status fails the run, so a count never measures an error path. `serve` is
gunicorn itself (`gunicorn` with these arguments), for the rows through a real worker.

Either runs under the counter bench/instructions.py chose: callgrind, or with
BENCH_COUNT_CALLS set, a profile hook counting Python and builtin calls that writes
`calls.out.<pid>` into that directory when the process exits (a gunicorn worker too: it
inherits the hook and exits through the interpreter).
"""

from __future__ import annotations

import atexit
import io
import json
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment

ROOT = Path(__file__).resolve().parent.parent
# The kit's own settings for the measured app: a deployed service, JSON logs.
KIT_ENV = {
    "APP_ENV": "production",
    "SECRET_KEY": "7e7a4fb9563e445a20f4aa43d25b8192ac95e60a0cf28a3e52460cab4cf90d89",
    "LOG_FORMAT": "json",
}


@dataclass(frozen=True)
class Row:
    """One kind of request: what is sent, the status it must get, and where it runs."""

    label: str
    method: str
    path: str
    status: int
    # Request i's JSON body (each POST creates a new item), or None for no body.
    body: Callable[[int], bytes] | None = None
    # Whether an item must exist before the warm-up (created by one POST, in both runs).
    needs_item: bool = False
    through_gunicorn: bool = False
    # The gunicorn worker class, through gunicorn.
    worker_class: str = "sync"
    # Whether the metrics listener is on (METRICS_BIND, as compose.yaml and Kubernetes set
    # it), so that the kit counts every request in its metric files; through gunicorn only.
    metrics: bool = False
    # Whether it requests the example resource, which a service may have deleted.
    example: bool = False


def available_rows() -> list[str]:
    """The rows this checkout can run: the example's only while app/items/ exists."""
    example = (ROOT / "app" / "items").is_dir()
    return [name for name, row in ROWS.items() if example or not row.example]


def new_item(i: int) -> bytes:
    """A unique item for request `i`."""
    return json.dumps({"name": f"bench-{i}", "quantity": i % 10}).encode()


ROWS = {
    "healthz": Row("GET /healthz, in-process", "GET", "/healthz", 200),
    "get-item": Row(
        "GET /api/items/<id>, in-process, SQLite",
        "GET",
        "/api/items/1",
        200,
        needs_item=True,
        example=True,
    ),
    "post-item": Row(
        "POST /api/items, in-process, SQLite", "POST", "/api/items", 201, new_item, example=True
    ),
    "gunicorn-healthz": Row(
        "GET /healthz, 1 gunicorn sync worker, JSON access log",
        "GET",
        "/healthz",
        200,
        through_gunicorn=True,
    ),
    "gunicorn-gevent-healthz": Row(
        "GET /healthz, 1 gunicorn gevent worker, JSON access log",
        "GET",
        "/healthz",
        200,
        through_gunicorn=True,
        worker_class="gevent",
    ),
    "gunicorn-healthz-metrics": Row(
        "GET /healthz, 1 gunicorn sync worker, JSON access log, metrics on (METRICS_BIND)",
        "GET",
        "/healthz",
        200,
        through_gunicorn=True,
        metrics=True,
    ),
}


def load_app(name: str) -> WSGIApplication:
    """Build the kit (`app.wsgi`'s factory, settings from the environment) or the baseline."""
    if name == "kit":
        from app import create_app

        return create_app()
    from bench import bare

    return bare.app


def environ_for(row: Row, host: str = "localhost") -> WSGIEnvironment:
    """The environ a server would give the app for `row`, without a body."""
    return {
        "REQUEST_METHOD": row.method,
        "SCRIPT_NAME": "",
        "PATH_INFO": row.path,
        "QUERY_STRING": "",
        "SERVER_NAME": host,
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": "40000",
        "HTTP_HOST": f"{host}:8000",
        "HTTP_USER_AGENT": "bench",
        "HTTP_ACCEPT": "*/*",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }


def drive(app: WSGIApplication, row: Row, first: int, count: int) -> list[str]:
    """Send `count` requests of `row` (numbered from `first`); return the wrong statuses."""
    template = environ_for(row)
    statuses: list[str] = []
    wrong: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        statuses.append(status)

    expected = f"{row.status} "
    for i in range(first, first + count):
        environ = dict(template)
        if row.body is not None:
            body = row.body(i)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_TYPE"] = "application/json"
            environ["CONTENT_LENGTH"] = str(len(body))
        answer = app(environ, start_response)
        try:
            for _ in answer:
                pass
        finally:
            close = getattr(answer, "close", None)
            if close is not None:
                close()
        if not statuses[-1].startswith(expected):
            wrong.append(statuses[-1])
    return wrong


def count_calls(directory: str) -> None:
    """Count every Python and builtin call from now on; write the total at exit."""
    calls = [0]

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call" or event == "c_call":
            calls[0] += 1

    def write() -> None:
        sys.setprofile(None)
        Path(directory, f"calls.out.{os.getpid()}").write_text(f"totals: {calls[0]}\n")

    atexit.register(write)
    sys.setprofile(profile)


def main(argv: Iterable[str]) -> None:
    """Run `drive` or `serve` (see the module's docstring)."""
    command, *args = argv
    sys.path.insert(0, str(ROOT))
    if os.environ.get("BENCH_COUNT_CALLS"):
        count_calls(os.environ["BENCH_COUNT_CALLS"])
    if command == "serve":
        from gunicorn.app.wsgiapp import run

        sys.argv = ["gunicorn", *args]
        run()
        return
    name, row_name, warmup, requests = args
    row = ROWS[row_name]
    app = load_app(name)
    wrong = (
        drive(app, Row("", "POST", "/api/items", 201, new_item), -1, 1) if row.needs_item else []
    )
    wrong += drive(app, row, 0, int(warmup))
    wrong += drive(app, row, int(warmup), int(requests))
    if wrong:
        raise SystemExit(f"{name} {row.label}: expected {row.status}, got {sorted(set(wrong))}")


if __name__ == "__main__":
    main(sys.argv[1:])
