"""gunicorn integration for the metrics (chassis/observability/metrics.py and
metric_files.py): the listeners gunicorn binds, METRICS_BIND's among them, and the metric
files the master prepares for its workers and folds when one exits. gunicorn.conf.py
assigns these hooks as it does those of chassis/serving/hooks.py.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import shlex
import socket
from typing import Any

from chassis.observability.metric_files import MetricFiles
from chassis.observability.metrics import current_metrics
from chassis.serving.hooks import WORKER_CLASSES, chassis_settings
from chassis.settings import host_port, tcp_port


def listeners(bind: str, metrics_bind: str | None) -> list[str]:
    """gunicorn's `bind`: the app's address, and the metrics listener's when METRICS_BIND is
    set; one port for both would put every request on the metrics listener."""
    if metrics_bind is None:
        return [bind]
    if tcp_port(bind) == tcp_port(metrics_bind):
        raise SystemExit(
            "configuration error: METRICS_BIND: must use another port than GUNICORN_BIND "
            f"(got {metrics_bind!r} beside {bind!r})"
        )
    return [bind, own_address(metrics_bind)]


def own_address(bind: str) -> str:
    """`bind` with a host name replaced by this machine's own address among those the name
    resolves to; an IP address is kept. In compose, a network alias names every replica's
    address on the metrics network (compose.yaml): each replica binds its own, so the
    listener answers on that network alone, not on every network the app joins."""
    host, port = host_port(bind) or ("", 0)  # the settings checked its form
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return bind
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError:
        found = []
    for family, _, _, _, address in sorted(found, key=lambda info: info[4][0]):
        with socket.socket(family) as probe:
            try:
                probe.bind((address[0], 0))
            except OSError:  # another machine's (another replica's) address
                continue
        return f"{address[0]}:{port}" if family == socket.AF_INET else f"[{address[0]}]:{port}"
    raise SystemExit(
        f"configuration error: METRICS_BIND: {host} names no address of this machine (got {bind!r})"
    )


def require_metrics_listener(server: Any, metrics_bind: str | None) -> None:
    """on_starting: stop when METRICS_BIND is set but gunicorn will not listen on its port.

    A `-b`/`--bind` flag, on the command line or in GUNICORN_CMD_ARGS, replaces the whole
    bind list gunicorn.conf.py made, the metrics listener with it: /metrics would then never
    be served, and nothing would say so."""
    metrics_port = tcp_port(metrics_bind) if metrics_bind else None
    bound = list(server.cfg.bind)
    if metrics_port is None or metrics_port in {tcp_port(address) for address in bound}:
        return
    raise SystemExit(
        f"configuration error: METRICS_BIND: {metrics_bind} is not among gunicorn's listeners "
        f"({', '.join(bound)}): {bind_flag()} replaced gunicorn.conf.py's; add "
        f"`-b {metrics_bind}` to it, or set GUNICORN_BIND instead"
    )


def bind_flag() -> str:
    """Where the bind list that replaced gunicorn.conf.py's came from, for a message."""
    with contextlib.suppress(ValueError):  # unbalanced quotes: gunicorn refused them already
        given = shlex.split(os.environ.get("GUNICORN_CMD_ARGS", ""))
        if any(arg.startswith(("-b", "--bind")) for arg in given):
            return "--bind in GUNICORN_CMD_ARGS"
    return "-b/--bind on the command line"


def prepare_metrics(server: Any, configured: str | None) -> None:
    """on_starting, in the master before the first fork: create PROMETHEUS_MULTIPROC_DIR (or
    a private directory) without metric files, for every worker to write to."""
    try:
        server.chassis_metric_files = MetricFiles.prepare(configured)
    except OSError as exc:
        raise SystemExit(
            f"configuration error: PROMETHEUS_MULTIPROC_DIR: cannot use {exc.filename}: "
            f"{exc.strerror}"
        ) from None
    server.log.info("metrics: worker files in %s", server.chassis_metric_files.directory)


def retire_worker_metrics(server: Any, worker: Any) -> None:
    """child_exit, in the master: mark the worker dead and fold its counts into the archives."""
    files: MetricFiles | None = getattr(server, "chassis_metric_files", None)
    if files is None:
        return
    try:
        files.worker_exited(worker.pid)
    except Exception as exc:  # any error here would stop the master itself
        # Never stop the master for this: the files stay, and are still counted once.
        server.log.warning(
            "metrics: could not fold worker %s's files: %s: %s",
            worker.pid,
            type(exc).__name__,
            exc,
        )


def remove_metrics(server: Any) -> None:
    """on_exit: remove the metrics directory if it was made for this server."""
    files: MetricFiles | None = getattr(server, "chassis_metric_files", None)
    if files is not None:
        files.remove()


def worker_class_name(worker: Any) -> str:
    """The GUNICORN_WORKER_CLASS name of `worker`'s class (what `app_build_info` shows)."""
    configured = str(worker.cfg.worker_class_str)
    names = {path: name for name, path in WORKER_CLASSES.items()}
    return configured if configured in WORKER_CLASSES else names.get(configured, configured)


def start_metrics(worker: Any) -> None:
    """post_worker_init: build this worker's metrics and say what it runs (a chassis app)."""
    if chassis_settings(worker.wsgi) is not None:
        current_metrics().describe_build(worker_class_name(worker))
