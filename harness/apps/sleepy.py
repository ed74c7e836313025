"""A test-only app: the kit's app plus endpoints that wait, log or count, for server
behaviour tests.

The shipped app has no such endpoints; tests serve this one with
`gunicorn -c gunicorn.conf.py harness.apps.sleepy:app`
or `make serve-gevent app=harness.apps.sleepy:app`.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from flask import Response, request
from sqlalchemy import QueuePool, text

from app import create_app
from chassis.database.sessions import get_db, get_session
from chassis.settings import current_settings, get_settings
from chassis.web.responses import ok
from harness.apps import records

app = create_app()
app.register_blueprint(records.bp)
log = logging.getLogger("tests.sleepy")

# What a gevent worker's pool size comes from, when set.
POOL_VARIABLES = ("DB_POOL_SIZE", "DB_MAX_OVERFLOW")

# State kept in the serving process's memory, as an app that must stay in one process keeps
# it: another worker, or a recycled one, would start again from 0.
requests_counted = 0
# Under gevent the patched threading.Lock is gevent's own, so a waiting greenlet yields.
counter_lock = threading.Lock()


@app.get("/test/sleep")
def sleep() -> Response:
    """Wait in Python (cooperative under gevent, which patches time.sleep)."""
    seconds = float(request.args.get("s", "0.5"))
    time.sleep(seconds)
    return ok({"slept": seconds})


@app.get("/test/pg-sleep")
def pg_sleep() -> Response:
    """Wait inside PostgreSQL, holding a pooled connection."""
    seconds = float(request.args.get("s", "0.5"))
    get_session().execute(text("SELECT pg_sleep(:s)"), {"s": seconds})
    return ok({"slept": seconds})


@app.get("/test/counter")
def counter() -> Response:
    """Add one to this process's counter; answer its new value and the process id."""
    global requests_counted
    with counter_lock:
        requests_counted += 1
        value = requests_counted
    return ok({"value": value, "pid": os.getpid()})


@app.get("/test/log")
def log_line() -> Response:
    """Write one application log line and answer."""
    time.sleep(0.01)  # let concurrent requests interleave
    log.info("handled")
    return ok()


@app.get("/test/pool")
def pool() -> Response:
    """Report this worker's connection pool size and overflow, whether the app was built from
    the process's one set of settings, and the pool variables as the environment has them."""
    engine_pool = get_db().engine.pool
    assert isinstance(engine_pool, QueuePool)
    return ok(
        {
            "size": engine_pool.size(),
            "overflow": engine_pool._max_overflow,
            "settings_read_once": get_settings() is current_settings(),
            "environ": {name: os.environ.get(name) for name in POOL_VARIABLES},
        }
    )


@app.get("/test/whoami")
def whoami() -> Response:
    """Report the client address, host, scheme and URL the app sees (after ProxyFix)."""
    return ok(
        {
            "remote_addr": request.remote_addr,
            "host": request.host,
            "scheme": request.scheme,
            "url": request.url,
        }
    )


@app.get("/test/big")
def big() -> Response:
    """Answer with a JSON body of about 8 KiB (worth compressing)."""
    return ok({"rows": [{"n": n, "text": "lorem ipsum dolor sit amet"} for n in range(200)]})
