"""Throughput benchmark: bounded wrk load on 127.0.0.1, printing req/s, p99 and ratios.

    make bench        (or: .venv/bin/python bench/run.py [--seconds 5])

Needs wrk (Debian: apt-get install wrk) and, for the database rows, the PostgreSQL server
binaries (a throwaway server is started, as in the tests). Every server binds 127.0.0.1;
every run is bounded by --seconds. Rows:

- the kit's /healthz against a bare Flask `jsonify` app (bench/bare.py) under the same
  gunicorn.conf.py, access log on, sync and gevent. Target: the kit keeps >= 90%.
- /test/pg-sleep?s=0.05 (50 ms inside PostgreSQL) under sync and gevent at 50 and 200
  connections. Target: gevent >= 90% of min(connections, pool connections) / 50 ms.

This machine's numbers vary with its load; the ratios are what to compare.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.postgres import PostgresServer, postgres_unavailable_reason  # noqa: E402
from tests.processes import Gunicorn, base_env  # noqa: E402

WORKERS = 2  # default for --workers
CONNECTIONS_PER_WORKER = 20  # default gevent worker_connections, and so each worker's pool
SLEEP_S = 0.05


@dataclass
class Result:
    """One wrk run."""

    label: str
    rps: float
    p99_ms: float
    errors: int


def wrk(port: int, path: str, connections: int, seconds: int, label: str) -> Result:
    """Run wrk against 127.0.0.1:`port``path` and parse req/s, p99 and errors."""
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "--timeout",
            "10s",
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    errors = sum(int(n) for n in re.findall(r"(?:Non-2xx or 3xx responses|errors: \w+) (\d+)", out))
    errors += sum(int(n) for n in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return Result(label, rps, p99_ms, errors)


def serve(
    workdir: Path, app: str, worker_class: str, args: argparse.Namespace, **env: str
) -> Gunicorn:
    """Start gunicorn -c gunicorn.conf.py for `app` with the benchmark's settings."""
    values = {
        "GUNICORN_WORKER_CLASS": worker_class,
        "WEB_CONCURRENCY": str(args.workers),
        "GUNICORN_WORKER_CONNECTIONS": str(args.connections_per_worker),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
        **env,
    }
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    return Gunicorn(run_dir, base_env(**values), args=[app]).start()


def table(results: list[Result]) -> None:
    """Print the results as a Markdown table."""
    print("| run | req/s | p99 ms | errors |\n| --- | ---: | ---: | ---: |")
    for r in results:
        print(f"| {r.label} | {r.rps:.0f} | {r.p99_ms:.1f} | {r.errors} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument(
        "--rows", choices=("all", "healthz", "database"), default="all", help="which rows to run"
    )
    parser.add_argument("--workers", type=int, default=WORKERS, help="gunicorn workers")
    parser.add_argument(
        "--connections-per-worker",
        type=int,
        default=CONNECTIONS_PER_WORKER,
        help="gevent worker_connections, and so each worker's pool size",
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="kit-bench-"))
    results: list[Result] = []
    ratios: list[str] = []

    for worker_class in ("sync", "gevent") if args.rows != "database" else ():
        pair = []
        for name, app in (("bare", "bench.bare:app"), ("kit", "app.wsgi:app")):
            server = serve(workdir, app, worker_class, args)
            try:
                pair.append(
                    wrk(
                        server.port,
                        "/healthz",
                        50,
                        args.seconds,
                        f"{name} /healthz {worker_class} c=50",
                    )
                )
            finally:
                server.stop()
        results += pair
        ratio = pair[1].rps / pair[0].rps
        ratios.append(f"kit/bare {worker_class}: {ratio:.0%} (target >= 90%)")

    reason = postgres_unavailable_reason() if args.rows != "healthz" else "not asked for"
    if reason:
        print(f"database rows skipped: {reason}")
    else:
        postgres = PostgresServer(workdir / "pg")
        postgres.start()
        try:
            url = postgres.create_database("bench")
            pool = args.workers * args.connections_per_worker
            for connections in (50, 200):
                for worker_class in ("sync", "gevent"):
                    server = serve(
                        workdir, "tests.apps.sleepy:app", worker_class, args, DATABASE_URL=url
                    )
                    try:
                        result = wrk(
                            server.port,
                            f"/test/pg-sleep?s={SLEEP_S}",
                            connections,
                            args.seconds,
                            f"pg_sleep 50ms {worker_class} c={connections}",
                        )
                    finally:
                        server.stop()
                    results.append(result)
                    if worker_class == "gevent":
                        ideal = min(connections, pool) / SLEEP_S
                        ratios.append(
                            f"gevent c={connections}: {result.rps / ideal:.0%} of "
                            f"min({connections}, {pool}) / 50 ms = {ideal:.0f} req/s "
                            "(target >= 90%)"
                        )
                    else:
                        ratios.append(
                            f"sync c={connections}: {result.rps:.0f} req/s "
                            f"(ceiling {args.workers} workers / 50 ms = "
                            f"{args.workers / SLEEP_S:.0f})"
                        )
        finally:
            postgres.stop()

    table(results)
    print()
    for line in ratios:
        print(f"- {line}")


if __name__ == "__main__":
    main()
