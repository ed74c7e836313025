"""chassis/serving/cooperative.py: under gevent, connecting to a server that never answers gives up
after the connect timeout, while other greenlets keep running; queries still work.

Real gevent, real libpq, in a subprocess (monkey patching is for the whole process). The
silent server is a listening socket nobody accepts from: the kernel completes the TCP
handshake, so libpq's startup packet is acknowledged and never answered. A server frozen
mid-failover, or a proxy whose backend is gone, looks the same.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from harness.postgres import PostgresServer
from harness.processes import ROOT, base_env

# Patches, connects with a 2 s deadline while a second greenlet ticks, reports what happened.
CONNECT = """
from gevent import monkey; monkey.patch_all()
import json, sys, time
import gevent, psycopg2
from chassis.serving.cooperative import patch_psycopg

patch_psycopg(connect_timeout=2)
ticks = []
ticker = gevent.spawn(lambda: [ticks.append(gevent.sleep(0.1)) for _ in range(100)])
started = time.monotonic()
try:
    conn = psycopg2.connect(sys.argv[1])
    with conn.cursor() as cursor:
        cursor.execute("SELECT 1")
        outcome = f"connected: {cursor.fetchone()[0]}"
except psycopg2.OperationalError as exc:
    outcome = f"OperationalError: {exc}"
took = time.monotonic() - started
ticker.kill()
print(json.dumps({"outcome": outcome, "took": took, "ticks": len(ticks)}))
"""


def connect(dsn: str) -> dict[str, object]:
    """Run CONNECT against `dsn`; what it printed."""
    result = subprocess.run(
        [sys.executable, "-c", CONNECT, dsn],
        cwd=ROOT,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    reported: dict[str, object] = json.loads(result.stdout)
    return reported


def test_connecting_to_a_silent_server_gives_up_after_the_connect_timeout() -> None:
    """libpq ignores connect_timeout in non-blocking mode; the wait callback's deadline holds,
    and the connecting greenlet never blocked the others (the ticker kept ticking)."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # never accepted: handshakes complete, nothing is ever answered
        port = silent.getsockname()[1]
        reported = connect(f"host=127.0.0.1 port={port} user=postgres connect_timeout=2")
    assert str(reported["outcome"]).startswith("OperationalError: timeout expired")
    assert 1.9 < float(str(reported["took"])) < 4
    assert int(str(reported["ticks"])) >= 15


def test_connections_to_a_live_server_work(postgres: PostgresServer) -> None:
    """The deadline applies to connecting only: a query on the connection runs as before."""
    reported = connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres")
    assert reported["outcome"] == "connected: 1"
