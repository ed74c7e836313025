"""psycopg2 under gevent: psycogreen's wait callback, with a deadline on connecting.

Install it after gevent's monkey patching and before the first connection: gunicorn's
post_fork does, for its gevent workers (chassis/serving/hooks.py).

psycopg2 waits for PostgreSQL inside C code, which would block every greenlet of the process;
psycogreen's wait callback makes libpq non-blocking and yields to the gevent hub instead. But
libpq ignores `connect_timeout` in non-blocking mode ("it is the application's responsibility
to decide whether an excessive amount of time has elapsed", libpq's PQconnectPoll docs), so a
server that drops packets would hold a connecting greenlet for the kernel's SYN retries (over
two minutes). The deadline here puts DB_CONNECT_TIMEOUT back. Queries need none: the
keepalive and tcp_user_timeout parameters (chassis/database/sessions.py) fail a silent socket in the kernel.
"""

from __future__ import annotations

from typing import Any

import gevent
import psycopg2
from psycogreen.gevent import gevent_wait_callback
from psycopg2 import extensions


def patch_psycopg(connect_timeout: float) -> None:
    """Make psycopg2 cooperative, giving up a connection attempt after `connect_timeout` s."""

    def wait(conn: Any, timeout: float | None = None) -> None:
        if conn.status != extensions.STATUS_SETUP:  # connected: a query, or its result
            gevent_wait_callback(conn, timeout)
            return
        # Raised inside the wait, the error fails the connect as libpq's own timeout would:
        # psycopg2 closes the half-open connection, SQLAlchemy sees an OperationalError.
        expired = psycopg2.OperationalError("timeout expired (DB_CONNECT_TIMEOUT)")
        with gevent.Timeout(connect_timeout, expired):
            gevent_wait_callback(conn, timeout)

    extensions.set_wait_callback(wait)
