"""Instruction-count benchmark: instructions per request, the kit against bare Flask.

    make bench-instructions    (or: .venv/bin/python bench/instructions.py [--requests 500])

Needs valgrind (Debian: apt-get install valgrind). Wall-clock load tests on a shared machine
vary by 10% and more; callgrind counts the instructions a process executes, which repeat
run to run within a fraction of a percent whatever else the machine does.

Method. Each count is one process under `valgrind --tool=callgrind`, with PYTHONHASHSEED
fixed. In-process rows (bench/scenarios.py `drive`): build the app, send a warm-up, then N
requests by calling the WSGI app directly. The same process with 0 requests after the same
warm-up counts everything else (interpreter start, imports, the app's construction, exit),
so (total with N - total with 0) / N is the cost of one request. Through gunicorn: the
master runs under callgrind with --trace-children=yes; a forked worker writes its own
profile (callgrind.out.<pid>), so only the worker's instructions are read: its boot, the
requests this script sends it over TCP (in batches of connections opened at once, so the
worker accepts each without waiting in select()) and its exit on SIGTERM, again differenced
against the same worker served 0 requests. The JSON access log is on, for the baseline too:
both run under the kit's gunicorn.conf.py. Each SQLite row starts from a copy of a freshly
created database (the kit's migrated by alembic, the baseline's by `create_all`).

The baseline is bench/bare.py. `--counter calls` counts Python and builtin calls per
request instead (a profile hook, no valgrind): a coarser measure, in seconds not minutes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.progress import Progress  # noqa: E402
from bench.scenarios import KIT_ENV, ROWS, Row, available_rows  # noqa: E402
from harness.processes import base_env, free_port  # noqa: E402

APPS = {"bare": "bench.bare:app", "kit": "app.wsgi:app"}
# Targets of issue 14 for kit / bare, by row.
TARGETS = {"healthz": 1.10, "gunicorn-healthz": 1.15}
BATCH = 50  # connections opened at once through gunicorn
BOOT_TIMEOUT_S = 300  # a worker under callgrind loads the app 30-50x slower than natively


@dataclass(frozen=True)
class Counter:
    """How a process is counted: the command prefix, the environment, the files it writes."""

    name: str  # "instructions" (callgrind) or "calls" (a profile hook)

    def command(self, out_dir: Path) -> list[str]:
        """The interpreter to run, under callgrind unless counting calls."""
        if self.name == "calls":
            return [sys.executable]
        return [
            "valgrind",
            "--tool=callgrind",
            "--trace-children=yes",
            f"--callgrind-out-file={out_dir}/callgrind.out.%p",
            sys.executable,
        ]

    def env(self, out_dir: Path) -> dict[str, str]:
        """What the counted process must find in its environment."""
        return {"BENCH_COUNT_CALLS": str(out_dir)} if self.name == "calls" else {}

    def read(self, out_dir: Path, pid: int) -> int:
        """The total counted in process `pid`."""
        prefix = "calls" if self.name == "calls" else "callgrind"
        text = (out_dir / f"{prefix}.out.{pid}").read_text()
        return int(re.findall(r"^(?:totals|summary): (\d+)", text, re.MULTILINE)[-1])


def prepare_database(app: str, path: Path) -> None:
    """Create `app`'s schema in a new SQLite file at `path`, natively (not counted)."""
    env = base_env(DATABASE_URL=f"sqlite:///{path}", **KIT_ENV)
    if app == "kit":
        cmd = [sys.executable, "-m", "alembic", "upgrade", "heads"]
    else:
        cmd = [sys.executable, "-c", "from bench.bare import create_tables; create_tables()"]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=120)


def count_in_process(
    counter: Counter, app: str, row: str, warmup: int, requests: int, work: Path
) -> int:
    """Run bench/scenarios.py `drive` under `counter`; return the process's total."""
    run_dir = Path(tempfile.mkdtemp(dir=work))
    database = run_dir / "app.db"
    shutil.copy(work / f"{app}.db", database)
    env = base_env(PYTHONHASHSEED="0", DATABASE_URL=f"sqlite:///{database}", **KIT_ENV)
    cmd = [*counter.command(run_dir), str(ROOT / "bench" / "scenarios.py"), "drive"]
    proc = subprocess.Popen(
        [*cmd, app, row, str(warmup), str(requests)],
        cwd=ROOT,
        env=env | counter.env(run_dir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, stderr = proc.communicate(timeout=600)
    if proc.returncode != 0:
        raise SystemExit(f"{app} {row}: exit {proc.returncode}\n{stderr[-3000:]}")
    return counter.read(run_dir, proc.pid)


def send_batch(port: int, row: Row, count: int) -> list[int]:
    """Open `count` connections, send one request on each, then read every answer."""
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=120) for _ in range(count)]
    for connection in connections:
        connection.request(row.method, row.path)
    statuses = []
    for connection in connections:
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
        connection.close()
    return statuses


def count_gunicorn(
    counter: Counter, app: str, row: str, warmup: int, requests: int, work: Path
) -> int:
    """Serve `app` with gunicorn.conf.py and one worker under `counter`; send the
    warm-up and `requests`; return the worker's total."""
    run_dir = Path(tempfile.mkdtemp(dir=work))
    port = free_port()
    env = base_env(
        PYTHONHASHSEED="0",
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKER_CLASS=ROWS[row].worker_class,
        WEB_CONCURRENCY="1",
        # The master must not take a worker that boots or answers slowly for a hung one.
        GUNICORN_TIMEOUT="3600",
        DATABASE_URL=f"sqlite:///{run_dir / 'app.db'}",
        **KIT_ENV,
    )
    if ROWS[row].metrics:
        env["METRICS_BIND"] = f"127.0.0.1:{free_port()}"
    cmd = [*counter.command(run_dir), str(ROOT / "bench" / "scenarios.py"), "serve"]
    with (run_dir / "stdout.log").open("wb") as out, (run_dir / "stderr.log").open("wb") as err:
        proc = subprocess.Popen(
            [*cmd, "-c", "gunicorn.conf.py", APPS[app]],
            cwd=ROOT,
            env=env | counter.env(run_dir),
            stdout=out,
            stderr=err,
        )
    try:
        worker = wait_for_worker(proc, run_dir / "stderr.log")
        statuses: list[int] = []
        for total in (warmup, requests):
            for start in range(0, total, BATCH):
                statuses += send_batch(port, ROWS[row], min(BATCH, total - start))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    wrong = sorted({s for s in statuses if s != ROWS[row].status})
    if wrong:
        raise SystemExit(f"{app} {row}: expected {ROWS[row].status}, got {wrong}")
    logged = (run_dir / "stdout.log").read_text().splitlines()
    lines = sum(json.loads(line).get("path") == ROWS[row].path for line in logged)
    if lines != warmup + requests:
        raise SystemExit(f"{app} {row}: {lines} access log lines for {warmup + requests}")
    return counter.read(run_dir, worker)


def wait_for_worker(proc: subprocess.Popen[bytes], log: Path) -> int:
    """Wait until the worker has loaded the app (never probing it, which would add
    requests); return its pid."""
    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited {proc.returncode}:\n{log.read_text()[-3000:]}")
        ready = re.search(r"Worker ready \(pid: (\d+)\)", log.read_text(errors="replace"))
        if ready:
            return int(ready.group(1))
        time.sleep(0.2)
    raise SystemExit(f"no worker ready after {BOOT_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")


def per_request(
    counter: Counter,
    rows: list[str],
    warmup: int,
    requests: int,
    jobs: int,
    work: Path,
    progress: Progress,
) -> dict[tuple[str, str], float]:
    """(total with `requests` - total with none) / `requests`, one request's cost, for each
    row and app; `jobs` processes counted at a time (a count does not depend on it), each
    said by `progress` as it starts."""

    def count(row: str, app: str, n: int) -> int:
        progress.start(f"{row}, {app}, {n} requests")
        process = count_gunicorn if ROWS[row].through_gunicorn else count_in_process
        return process(counter, app, row, warmup, n, work)

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        totals = {
            (row, app, n): pool.submit(count, row, app, n)
            for row in rows
            for app in APPS
            for n in (requests, 0)
        }
        return {
            (row, app): (totals[row, app, requests].result() - totals[row, app, 0].result())
            / requests
            for row in rows
            for app in APPS
        }


def machine(counter: Counter) -> str:
    """The CPU, its count and the software that did the counting."""
    cpuinfo = Path("/proc/cpuinfo")
    text = cpuinfo.read_text() if cpuinfo.exists() else ""
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    cpu = model.group(1).strip() if model else platform.machine()
    described = f"{cpu} x {os.cpu_count()}, Python {platform.python_version()}"
    if counter.name == "calls":
        return described
    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout
    return f"{described}, {valgrind.strip()}"


def main() -> None:
    """Count every row for both apps, then print the table, the targets and the command."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500, help="N, the requests counted")
    parser.add_argument("--warmup", type=int, default=50, help="requests before the N")
    parser.add_argument(
        "--rows",
        nargs="+",
        choices=available_rows(),
        default=available_rows(),
        help="which rows to run (default: all; the example's while app/items/ exists)",
    )
    parser.add_argument(
        "--counter",
        choices=("instructions", "calls"),
        default="instructions",
        help="callgrind's instructions, or Python calls (no valgrind, much faster)",
    )
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="processes counted at a time"
    )
    args = parser.parse_args()
    if args.counter == "instructions" and shutil.which("valgrind") is None:
        raise SystemExit("valgrind not found: apt-get install valgrind (Debian, Ubuntu)")
    counter = Counter(args.counter)
    # Two counted processes per row and app: with the N requests, and with none.
    progress = Progress(len(args.rows) * len(APPS) * 2)
    work = Path(tempfile.mkdtemp(prefix="kit-bench-instructions-"))
    try:
        for app in APPS:
            prepare_database(app, work / f"{app}.db")
        costs = per_request(
            counter, args.rows, args.warmup, args.requests, args.jobs, work, progress
        )
        table = [(row, costs[row, "bare"], costs[row, "kit"]) for row in args.rows]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    scale, suffix = (1000, " k") if counter.name == "instructions" else (1, "")
    print(
        f"{counter.name.capitalize()} per request, kit against bare Flask (bench/bare.py): "
        f"N = {args.requests} after {args.warmup} warm-up requests, differenced against 0."
    )
    print(f"{dt.datetime.now(dt.UTC).date()}; {machine(counter)}\n")
    print("| request | bare Flask | kit | kit / bare |\n| --- | ---: | ---: | ---: |")
    for row, bare, ours in table:
        label = ROWS[row].label
        print(
            f"| {label} | {bare / scale:.1f}{suffix} | {ours / scale:.1f}{suffix} | {ours / bare:.2f} |"
        )
    print()
    for row, bare, ours in table:
        if row in TARGETS:
            verdict = "met" if ours / bare <= TARGETS[row] else "not met"
            print(
                f"- {ROWS[row].label}: kit / bare = {ours / bare:.2f} "
                f"(target <= {TARGETS[row]:.2f}): {verdict}"
            )
    executable = Path(sys.executable)
    shown = executable.relative_to(ROOT) if executable.is_relative_to(ROOT) else "python"
    print(f"\ncommand: {shlex.join([str(shown), 'bench/instructions.py', *sys.argv[1:]])}")


if __name__ == "__main__":
    main()
