"""Throughput benchmark: bounded wrk load on 127.0.0.1, printing req/s, p99, memory, cold
start and each target with "met" or "not met", and drawing them (bench/plot.py).

    make bench        (or: .venv/bin/python bench/run.py [--seconds 5] [--rows nginx ...])

Needs wrk (Debian: apt-get install wrk); for the nginx rows, Debian's nginx run as root, as
the nginx tests run it (harness/proxy.py); for the database rows, the PostgreSQL server
binaries (a throwaway server is started, as in the tests). Every server binds 127.0.0.1;
every load run is bounded by --seconds. Both apps run under gunicorn.conf.py with the
kit's production settings (bench/scenarios.py), JSON access log on. Rows (--rows):

- healthz: the kit's /healthz against a bare Flask `jsonify` app (bench/bare.py), sync and
  gevent, c=50. Targets: kit / bare >= 0.95; each kit worker's memory (PSS, read from
  /proc after its load run) at most a bare worker's + 10 MiB.
- nginx: the kit's /healthz through the shipped template under Debian's stock nginx.conf,
  against the same gunicorn directly, sync and gevent. Target: >= 0.85 of direct.
- database: /test/pg-sleep?s=0.05 (50 ms inside PostgreSQL), sync and gevent, at 50 and 200
  connections. Targets at c=200: gevent >= 90% of min(connections, pool connections) /
  50 ms, and >= 18x sync.
- cold-start: seconds from launching gunicorn with one worker to the first 200 on /healthz,
  the median of --cold-starts launches, kit and bare. Target: the kit's <= 1.0 s.

The /healthz comparisons run in --pairs alternating pairs (default 3) and take the median
ratio; the table shows each side's median run. Each comparison also prints the CPU every
request cost (gunicorn, nginx, PostgreSQL, wrk, from /proc), and the database rows the ideal
once that CPU is counted. Every load run must end with no socket error and no non-2xx/3xx
answer. Targets are printed, never asserted: this machine's numbers vary with its load. The picture goes to
docs/bench.png (--plot).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.instructions import APPS, Counter, machine  # noqa: E402
from bench.load import QUICK, cold_start, measure, running, serve  # noqa: E402
from bench.plot import write_png  # noqa: E402
from bench.progress import Progress  # noqa: E402
from bench.report import (  # noqa: E402
    ColdStart,
    Report,
    Run,
    Target,
    cpu_share_note,
    errors_target,
    median_run,
    pairs_shown,
    ratio,
    show,
)
from harness.postgres import PostgresServer, postgres_unavailable_reason  # noqa: E402
from harness.processes import free_port  # noqa: E402
from harness.proxy import NGINX_DIR, Nginx, nginx_unavailable_reason, template_env  # noqa: E402

ROWS = ("healthz", "nginx", "database", "cold-start")
WORKER_CLASSES = ("sync", "gevent")
WORKERS = 2  # default for --workers
CONNECTIONS_PER_WORKER = 20  # default gevent worker_connections, and so each worker's pool
HEALTHZ_CONNECTIONS = 50
SLEEP_S = 0.05
COLD_STARTS = 5  # default for --cold-starts
# Default for --pairs: single 5 s runs of two servers on this shared machine differ by 10%
# and more, so a /healthz ratio is the median of alternating pairs.
PAIRS = 3
PLOT = ROOT / "docs" / "bench.png"  # default for --plot
# The nginx rows: the shipped plain-HTTP site, and the one proxy hop every deployment behind
# it trusts (set for the direct run too: the same gunicorn is measured both ways).
NGINX_TEMPLATE = NGINX_DIR / "templates" / "kit.conf.template"
ONE_PROXY_HOP = {"PROXY_FIX_X_FOR": "1", "PROXY_FIX_X_PROTO": "1", "PROXY_FIX_X_HOST": "1"}

# The targets, each printed with "met" or "not met".
KIT_OVER_BARE = 0.95  # /healthz req/s, kit / bare
NGINX_OVER_DIRECT = 0.85  # /healthz req/s through nginx / straight to the same gunicorn
GEVENT_SHARE = 0.90  # gevent req/s at c=200 / (min(connections, pool) / 50 ms)
GEVENT_OVER_SYNC = 18.0  # req/s at c=200, database-bound
EXTRA_PSS_MIB = 10.0  # a kit worker's PSS over a bare worker's
COLD_START_S = 1.0  # launch to the first 200, one worker


def healthz_rows(report: Report, workdir: Path, args: argparse.Namespace, began: float) -> None:
    """The kit's /healthz against bare Flask's, each app on a gunicorn of its own, in
    --pairs alternating pairs; then each worker class's median throughput ratio and worker
    memory against their targets. The table shows each app's median run."""
    progress = Progress(len(WORKER_CLASSES) * args.pairs * len(APPS), began)
    for worker_class in WORKER_CLASSES:
        runs: dict[str, list[Run]] = {name: [] for name in APPS}
        for _ in range(args.pairs):
            for name, app in APPS.items():
                label = f"{name} /healthz, {worker_class}, c={HEALTHZ_CONNECTIONS}"
                progress.start(f"healthz, {label}")
                server = serve(workdir, app, worker_class, args)
                try:
                    runs[name].append(
                        measure(
                            server,
                            "healthz",
                            name,
                            label,
                            "/healthz",
                            HEALTHZ_CONNECTIONS,
                            args.seconds,
                            cpu_of={"gunicorn": running(server).pid},
                        )
                    )
                finally:
                    server.stop(QUICK)
        ratios = [ours.rps / bare.rps for bare, ours in zip(runs["bare"], runs["kit"], strict=True)]
        ours, bare = median_run(runs["kit"]), median_run(runs["bare"])
        report.runs += [bare, ours]
        report.unshown += [run for run in runs["bare"] + runs["kit"] if run not in (bare, ours)]
        what = f"/healthz, {worker_class}"
        shown = pairs_shown("kit / bare", ratios)
        report.targets.append(ratio(what, statistics.median(ratios), KIT_OVER_BARE, shown))
        report.notes.append(cpu_share_note(f"{what}, kit / bare", ours, bare))
        extra = max(ours.pss_mib) - max(bare.pss_mib)
        report.targets.append(
            Target(
                f"worker PSS, {worker_class}",
                f"largest kit worker - largest bare worker = {extra:+.1f} MiB",
                f"<= +{EXTRA_PSS_MIB:.0f} MiB",
                extra <= EXTRA_PSS_MIB,
            )
        )


def nginx_rows(report: Report, workdir: Path, args: argparse.Namespace, began: float) -> None:
    """The kit's /healthz straight to gunicorn, then through nginx to the same gunicorn, in
    --pairs alternating pairs; the median ratio against its target."""
    reason = nginx_unavailable_reason()
    if reason:
        report.notes.append(f"nginx rows skipped: {reason}")
        return
    progress = Progress(len(WORKER_CLASSES) * args.pairs * 2, began)
    for worker_class in WORKER_CLASSES:
        server = serve(workdir, APPS["kit"], worker_class, args, **ONE_PROXY_HOP)
        label = f"kit /healthz, {worker_class}, c={HEALTHZ_CONNECTIONS}"
        runs: dict[str, list[Run]] = {"direct": [], "nginx": []}
        try:
            for _ in range(args.pairs):
                # nginx is up only for its half of each pair: with it up all along, the
                # first direct run of the gevent server answered nothing in 5 s in each of
                # five runs after the /healthz rows, its workers idle in gevent's hub; the
                # cause is not known.
                progress.start(f"nginx, {label}, direct")
                runs["direct"].append(
                    measure(
                        server,
                        "nginx",
                        "kit",
                        f"{label}, direct",
                        "/healthz",
                        HEALTHZ_CONNECTIONS,
                        args.seconds,
                        cpu_of={"gunicorn": running(server).pid},
                    )
                )
                variables = template_env(server.port, free_port())
                proxy = Nginx(Path(tempfile.mkdtemp(dir=workdir)), NGINX_TEMPLATE, variables)
                progress.start(f"nginx, {label}, through nginx")
                try:
                    runs["nginx"].append(
                        measure(
                            server,
                            "nginx",
                            "nginx",
                            f"{label}, through nginx",
                            "/healthz",
                            HEALTHZ_CONNECTIONS,
                            args.seconds,
                            proxy.start(),
                            cpu_of={"gunicorn": running(server).pid, "nginx": running(proxy).pid},
                        )
                    )
                finally:
                    proxy.stop()
        finally:
            server.stop(QUICK)
        ratios = [
            through.rps / direct.rps
            for direct, through in zip(runs["direct"], runs["nginx"], strict=True)
        ]
        direct, through = median_run(runs["direct"]), median_run(runs["nginx"])
        report.runs += [direct, through]
        report.unshown += [
            run for run in runs["direct"] + runs["nginx"] if run not in (direct, through)
        ]
        what = f"/healthz, {worker_class}"
        shown = pairs_shown("through nginx / direct", ratios)
        report.targets.append(ratio(what, statistics.median(ratios), NGINX_OVER_DIRECT, shown))
        report.notes.append(cpu_share_note(f"{what}, through nginx / direct", through, direct))


def database_rows(report: Report, workdir: Path, args: argparse.Namespace, began: float) -> None:
    """50 ms inside PostgreSQL per request, sync against gevent, at 50 and 200 connections."""
    reason = postgres_unavailable_reason()
    if reason:
        report.notes.append(f"database rows skipped: {reason}")
        return
    levels = (50, 200)
    progress = Progress(len(levels) * len(WORKER_CLASSES), began)
    postgres = PostgresServer(workdir / "pg")
    postgres.start()
    try:
        url = postgres.create_database("bench")
        pool = args.workers * args.connections_per_worker
        for connections in levels:
            pair, answered_ms = {}, {}
            for worker_class in WORKER_CLASSES:
                progress.start(f"database, pg_sleep 50 ms, {worker_class}, c={connections}")
                server = serve(
                    workdir, "harness.apps.sleepy:app", worker_class, args, DATABASE_URL=url
                )
                trees = {"gunicorn": running(server).pid, "PostgreSQL": postgres.postmaster()}
                try:
                    pair[worker_class] = measure(
                        server,
                        "database",
                        worker_class,
                        f"pg_sleep 50 ms, {worker_class}, c={connections}",
                        f"/test/pg-sleep?s={SLEEP_S}",
                        connections,
                        args.seconds,
                        cpu_of=trees,
                    )
                    # The access log's request time: from the request read to the answer sent.
                    times = [
                        line["duration_ms"]
                        for line in server.json_lines()
                        if line.get("logger") == "gunicorn.access"
                    ]
                    answered_ms[worker_class] = statistics.mean(times)
                finally:
                    server.stop(QUICK)
            report.runs += pair.values()
            sync, gevent = pair["sync"], pair["gevent"]
            ideal = min(connections, pool) / SLEEP_S
            share = f"gevent / (min({connections}, {pool}) / 50 ms = {ideal:.0f} req/s)"
            over_sync = f"gevent / sync = {gevent.rps / sync.rps:.1f}"
            what = f"pg_sleep 50 ms, c={connections}"
            report.notes.append(cpu_note(gevent, ideal, answered_ms["gevent"], args))
            if connections == 200:
                report.targets.append(ratio(what, gevent.rps / ideal, GEVENT_SHARE, share))
                report.targets.append(
                    Target(
                        what,
                        over_sync,
                        f">= {GEVENT_OVER_SYNC:.0f}",
                        gevent.rps / sync.rps >= GEVENT_OVER_SYNC,
                    )
                )
            else:
                report.notes.append(
                    f"{what}: {share} = {gevent.rps / ideal:.2f}, {over_sync} "
                    f"(sync's ceiling: {args.workers} workers / 50 ms = "
                    f"{args.workers / SLEEP_S:.0f} req/s; the targets are at c=200)"
                )
    finally:
        postgres.stop()


def cpu_note(run: Run, ideal: float, answered_ms: float, args: argparse.Namespace) -> str:
    """Where a gevent database run's time went, and the ideal once CPU time is counted.

    min(connections, pool) / latency assumes a request costs no CPU. Measured here: the CPU
    each request cost gunicorn, the PostgreSQL backends and wrk, against what the cores
    could give, and the access log's mean request time against the 50 ms in PostgreSQL. A
    worker runs one greenlet at a time: when the queries of its N greenlets end together,
    the last answer waits for the CPU of the N - 1 others, (N - 1) / 2 of them on average,
    so the ideal including CPU is workers x N / (50 ms + t + (N - 1) / 2 x t), t being the
    worker's CPU per request."""
    cores = len(os.sched_getaffinity(0))
    per_request = sum(run.cpu_per_request.values())
    ceiling = cores / per_request
    spent = " + ".join(f"{ms * 1000:.2f} ms {name}" for name, ms in run.cpu_per_request.items())
    t = run.cpu_per_request["gunicorn"]
    greenlets = args.connections_per_worker
    queued = args.workers * greenlets / (SLEEP_S + t + (greenlets - 1) / 2 * t)
    return (
        f"{run.label}: CPU per request {spent} = {per_request * 1000:.2f} ms "
        f"(cores busy {run.rps * per_request / cores:.0%}, each worker "
        f"{run.rps * t / args.workers:.0%}; {cores} cores / {per_request * 1000:.2f} ms = "
        f"{ceiling:.0f} req/s). Mean request time {answered_ms:.1f} ms for 50 ms in "
        f"PostgreSQL. With {greenlets} greenlets per worker whose queries end together, "
        f"the ideal including CPU is {args.workers} x {greenlets} / (50 + {t * 1000:.2f} + "
        f"{(greenlets - 1) / 2:.1f} x {t * 1000:.2f} ms) = {min(ideal, ceiling, queued):.0f} "
        f"req/s; gevent reached {run.rps / min(ideal, ceiling, queued):.2f} of it"
    )


def cold_start_rows(report: Report, workdir: Path, args: argparse.Namespace, began: float) -> None:
    """Launch each app --cold-starts times per worker class, alternating kit and bare so
    that a busy moment of the machine falls on both; the kit's median against its target."""
    progress = Progress(len(WORKER_CLASSES) * args.cold_starts * len(APPS), began)
    for worker_class in WORKER_CLASSES:
        seconds: dict[str, list[float]] = {name: [] for name in APPS}
        for _ in range(args.cold_starts):
            for name, app in APPS.items():
                progress.start(f"cold-start, {name}, {worker_class}")
                seconds[name].append(cold_start(workdir, app, worker_class, args))
        starts = {name: ColdStart(name, worker_class, tuple(seconds[name])) for name in APPS}
        report.cold_starts += starts.values()
        ours = starts["kit"]
        report.targets.append(
            Target(
                f"cold start, kit, {worker_class}",
                f"median of {len(ours.seconds)} = {ours.median:.2f} s",
                f"<= {COLD_START_S:.1f} s",
                ours.median <= COLD_START_S,
            )
        )


# Each row's runner: what it adds to the report, its working directory, the arguments, and
# when the benchmark began (its progress lines count the time from there).
RUNNERS: dict[str, Callable[[Report, Path, argparse.Namespace, float], None]] = {
    "healthz": healthz_rows,
    "nginx": nginx_rows,
    "database": database_rows,
    "cold-start": cold_start_rows,
}


def main() -> None:
    """Run the rows asked for, then print the tables and verdicts and draw the plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk run")
    parser.add_argument(
        "--rows", nargs="+", choices=ROWS, default=list(ROWS), help="which rows (default: all)"
    )
    parser.add_argument("--workers", type=int, default=WORKERS, help="gunicorn workers")
    parser.add_argument(
        "--connections-per-worker",
        type=int,
        default=CONNECTIONS_PER_WORKER,
        help="gevent worker_connections, and so each worker's pool size",
    )
    parser.add_argument(
        "--cold-starts", type=int, default=COLD_STARTS, help="launches per app and worker class"
    )
    parser.add_argument(
        "--pairs",
        type=int,
        default=PAIRS,
        help="alternating runs of each /healthz comparison; the ratio is their median",
    )
    parser.add_argument("--plot", type=Path, default=PLOT, help="where to write the PNG")
    args = parser.parse_args()
    began = time.monotonic()
    if shutil.which("wrk") is None and set(args.rows) - {"cold-start"}:
        raise SystemExit("wrk not found: apt-get install wrk (Debian, Ubuntu)")
    report = Report(str(dt.datetime.now(dt.UTC).date()), machine(Counter("calls")))
    workdir = Path(tempfile.mkdtemp(prefix="kit-bench-"))
    # PostgreSQL runs as postgres under root, and must enter the folder (not list it).
    workdir.chmod(0o711)
    try:
        for row in ROWS:
            if row in args.rows:
                RUNNERS[row](report, workdir, args, began)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if report.runs:
        report.targets.append(errors_target(report.runs + report.unshown))
    plot = args.plot.absolute()
    write_png(report, plot)
    show(report, plot)


if __name__ == "__main__":
    main()
