"""How `make bench` (bench/run.py) loads and measures a server: gunicorn started with the
benchmark's settings, wrk against it (or through nginx), each worker's memory and the CPU
every process tree spent per request, and the time from launch to the first answer."""

from __future__ import annotations

import argparse
import os
import re
import resource
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from bench.report import Run
from bench.scenarios import KIT_ENV
from harness.processes import Gunicorn, base_env, get
from harness.proxy import Nginx

COLD_START_TIMEOUT_S = 60
# gunicorn's quick shutdown: how a server ends is never measured, and a graceful one waits
# up to a second for each gevent worker's loop to wake.
QUICK = signal.SIGQUIT


def tree_cpu_seconds(root: int) -> float:
    """CPU seconds (user and system) of process `root`, of its live descendants, and of the
    children it has reaped (/proc/<pid>/stat: utime, stime; cutime, cstime for the root)."""
    total, pending = 0, [root]
    while pending:
        pid = pending.pop()
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            continue  # it exited meanwhile; its parent's cutime has it
        # After the command's closing parenthesis: state is field 3, utime field 14.
        utime, stime, cutime, cstime = (int(value) for value in stat[11:15])
        total += utime + stime + (cutime + cstime if pid == root else 0)
        pending += (int(child) for child in children)
    return total / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds() -> float:
    """CPU seconds of this process's reaped children (wrk, once it has exited)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    server: Gunicorn,
    row: str,
    variant: str,
    label: str,
    path: str,
    connections: int,
    seconds: int,
    proxy: Nginx | None = None,
    cpu_of: dict[str, int] | None = None,
) -> Run:
    """Run wrk against `server` (or through `proxy` in front of it, with the Host its site
    answers to), then read the PSS of each of the server's workers. With `cpu_of` (names
    and process ids), also the CPU each process tree and wrk used per request."""
    port = server.port if proxy is None else proxy.port
    # nginx closes a connection for any other Host without an answer (the template's 444).
    host = [] if proxy is None else ["-H", f"Host: {proxy.variables['SERVER_NAME']}"]
    trees = cpu_of or {}
    before = {name: tree_cpu_seconds(pid) for name, pid in trees.items()}
    before["wrk"] = children_cpu_seconds()
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s",
         *host, f"http://127.0.0.1:{port}{path}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout  # fmt: skip
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    if rps == 0:
        raise SystemExit(f"{label}: no answer in {seconds} s\n{out}\n{server.stderr()[-3000:]}")
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)\b", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    p99_ms = float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan")
    # wrk prints each line only when its count is not zero.
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    cpu: dict[str, float] = {}
    if trees:
        after = {name: tree_cpu_seconds(pid) for name, pid in trees.items()}
        after["wrk"] = children_cpu_seconds()
        requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        cpu = {name: (after[name] - before[name]) / max(1, requests) for name in after}
    return Run(
        row,
        variant,
        label,
        rps,
        p99_ms,
        sum(int(n) for n in sockets.groups()) if sockets else 0,
        int(non_2xx.group(1)) if non_2xx else 0,
        worker_pss(server),
        cpu,
    )


def worker_pss(server: Gunicorn) -> tuple[float, ...]:
    """Each worker's proportional set size in MiB: its private pages, plus its share of the
    pages it shares with the master and the other workers (/proc/<pid>/smaps_rollup)."""
    master = running(server).pid
    workers = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    sizes = []
    for pid in workers:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        sizes.append(int(re.search(r"^Pss:\s+(\d+) kB", rollup, re.M).group(1)) / 1024)  # type: ignore[union-attr]
    return tuple(sizes)


def server_for(
    workdir: Path, app: str, worker_class: str, workers: int, args: argparse.Namespace, **env: str
) -> Gunicorn:
    """gunicorn -c gunicorn.conf.py for `app` with the benchmark's settings, not started."""
    values = {
        **KIT_ENV,
        "GUNICORN_WORKER_CLASS": worker_class,
        "WEB_CONCURRENCY": str(workers),
        "GUNICORN_WORKER_CONNECTIONS": str(args.connections_per_worker),
        "LOG_LEVEL": "WARNING",
        "DATABASE_URL": f"sqlite:///{workdir / 'bench.db'}",
        **env,
    }
    run_dir = Path(tempfile.mkdtemp(dir=workdir))
    return Gunicorn(run_dir, base_env(**values), args=[app])


def serve(
    workdir: Path, app: str, worker_class: str, args: argparse.Namespace, **env: str
) -> Gunicorn:
    """Start gunicorn for `app` with --workers workers; return once every one answers."""
    return server_for(workdir, app, worker_class, args.workers, args, **env).start()


def cold_start(workdir: Path, app: str, worker_class: str, args: argparse.Namespace) -> float:
    """Seconds from launching gunicorn with one `worker_class` worker to the first 200 on
    /healthz. Once the master has bound its port the probe waits in the listen backlog, so
    it is answered the moment the worker accepts."""
    server = server_for(workdir, app, worker_class, 1, args)
    started = time.monotonic()
    server.start(wait=False)
    try:
        while time.monotonic() - started < COLD_START_TIMEOUT_S:
            try:
                if get(server.port, "/healthz", timeout=COLD_START_TIMEOUT_S)[0] == 200:
                    return time.monotonic() - started
            except OSError:
                pass  # not bound yet
            if running(server).poll() is not None:
                raise SystemExit(f"gunicorn exited:\n{server.stderr()}")
            time.sleep(0.005)
        raise SystemExit(f"no 200 after {COLD_START_TIMEOUT_S}s:\n{server.stderr()}")
    finally:
        server.stop(QUICK)


def running(server: Gunicorn | Nginx) -> subprocess.Popen[bytes]:
    """The main process of `server`, which has been started."""
    if server.proc is None:
        raise RuntimeError(f"{type(server).__name__} was never started")
    return server.proc
