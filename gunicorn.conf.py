"""gunicorn configuration: `gunicorn -c gunicorn.conf.py` serves `app.wsgi:app`.

Plain assignments grouped like gunicorn's settings reference
(https://docs.gunicorn.org/en/stable/settings.html). Each variable is declared once, with its
type, default and reason, in chassis/settings.py (`ServerSettings`); this file says how
gunicorn uses it. A bad value stops the master with one line naming the variable.
`GUNICORN_CMD_ARGS` and command-line flags still override anything here.
"""

import os
from typing import Any

from chassis import gunicorn as server
from chassis.settings import ServerSettings, current_settings, read_or_exit

env = read_or_exit(ServerSettings.from_env)
# Validate the app's settings in the master, once: a bad value fails in one line instead of
# every worker crashing in a loop, and the workers inherit what was read here.
app_settings = read_or_exit(current_settings)

# --- Server mechanics ------------------------------------------------------------------
# The WSGI application to serve (module:variable).
wsgi_app = "app.wsgi:app"

# The heartbeat file on a memory filesystem: on a disk-backed /tmp (common in containers)
# a slow disk can stall the heartbeat and get healthy workers killed.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108

# gunicorn 25+ opens a control socket under $HOME by default; the chassis manages the server
# with signals (as Docker, systemd and Kubernetes do), and a read-only container has no
# writable $HOME, so it stays off.
control_socket_disable = True

# --- Server socket ---------------------------------------------------------------------
# Loopback by default, so a development server is never exposed by accident; the image
# sets GUNICORN_BIND=0.0.0.0:8000. PORT alone changes the port (platforms set it). With
# METRICS_BIND (off by default; compose and Kubernetes set 0.0.0.0:9100) a second listener
# where the app answers /metrics and nothing else, so nginx, which proxies to the first,
# never exposes it (chassis/metrics.py).
bind = server.listeners(env.bind, app_settings.metrics_bind)

# --- Worker processes ------------------------------------------------------------------
# sync: one request per process, the safe default. gevent: many concurrent requests per
# process for I/O-bound work (requires cooperative libraries; psycopg2 is made cooperative
# in post_fork), run by the chassis's subclass of gunicorn's worker, which stops without
# waiting out graceful_timeout for idle keep-alive connections (chassis/gevent_worker.py).
# gthread: a thread pool per process. GUNICORN_WORKER_CLASS.
worker_class_name = env.gunicorn_worker_class
worker_class = server.WORKER_CLASSES[worker_class_name]

# Off by default. Under gevent it is always off: preloading imports the app (and psycopg2,
# ssl, threading) in the master, before gevent patches each worker; the refusal is logged
# when the server is ready. GUNICORN_PRELOAD. Choose the worker class with
# GUNICORN_WORKER_CLASS, not GUNICORN_CMD_ARGS: this file cannot see the latter.
preload_requested = env.gunicorn_preload
preload_refused = preload_requested and worker_class_name == "gevent"
preload_app = preload_requested and not preload_refused

# Processes. Default from the CPUs this process may use (container quota included):
# 2 x CPUs + 1 for sync (gunicorn's advice), CPUs + 1 for gthread, one per CPU for gevent
# (concurrency comes from greenlets). WEB_CONCURRENCY, the name platforms already set.
cpus = server.available_cpus()
per_class = {"sync": 2 * cpus + 1, "gthread": cpus + 1, "gevent": cpus}
workers = env.web_concurrency or per_class[worker_class_name]

# Threads per gthread worker (ignored by sync and gevent). GUNICORN_THREADS.
threads = env.gunicorn_threads or (4 if worker_class_name == "gthread" else 1)

# Concurrent requests per gevent worker. 50, not gunicorn's 1000: each in-flight request may
# hold a database connection. Under gevent each worker's pool defaults to this size with no
# overflow (post_fork, chassis/gunicorn.py), so no greenlet waits for a connection; mind
# PostgreSQL's max_connections: workers x this x replicas. GUNICORN_WORKER_CONNECTIONS.
worker_connections = env.gunicorn_worker_connections

# Seconds a worker may spend on one request (sync) or stay silent (async) before the master
# kills and replaces it. Must exceed DB_STATEMENT_TIMEOUT_MS and DB_POOL_TIMEOUT, so the app
# answers a slow database itself. GUNICORN_TIMEOUT.
timeout = env.gunicorn_timeout

# Seconds in-flight requests get to finish after SIGTERM before workers are killed. Every
# stop timeout around it (Docker, systemd, supervisor, Kubernetes) must be longer; a test
# checks. GUNICORN_GRACEFUL_TIMEOUT.
graceful_timeout = env.gunicorn_graceful_timeout

# Seconds an idle keep-alive connection stays open (gevent and gthread). Longer than nginx's
# upstream keepalive_timeout (60 s, nginx/), so nginx never reuses a connection gunicorn is
# closing. GUNICORN_KEEPALIVE.
keepalive = env.gunicorn_keepalive

# Restart a worker after this many requests, to bound slow memory leaks; 0 (off) by default
# because a leak should be found, not hidden. Jitter staggers restarts so workers never
# recycle together. GUNICORN_MAX_REQUESTS, GUNICORN_MAX_REQUESTS_JITTER.
max_requests = env.gunicorn_max_requests
max_requests_jitter = env.gunicorn_max_requests_jitter

# --- Security --------------------------------------------------------------------------
# Peers whose X-Forwarded-Proto gunicorn itself trusts (the app's ProxyFix decides the rest).
# Loopback only by default: a proxy on the same host. FORWARDED_ALLOW_IPS.
forwarded_allow_ips = env.forwarded_allow_ips

# --- Logging ---------------------------------------------------------------------------
# Access log on stdout and error log on stderr, where containers and journald collect them;
# both in the app's format (LOG_FORMAT): one JSON object per line, or readable text.
accesslog = "-"
errorlog = "-"
logger_class = "chassis.gunicorn.StructuredLogger"

# --- Server hooks ----------------------------------------------------------------------


def on_starting(arbiter: Any) -> None:
    """In the master, once, before the first fork (not again on HUP): create the metrics
    directory (PROMETHEUS_MULTIPROC_DIR, or a private one in /dev/shm) with no metric files
    left from an earlier run."""
    server.prepare_metrics(arbiter, env.prometheus_multiproc_dir)


def when_ready(arbiter: Any) -> None:
    """Log the resolved configuration once, when the server is ready."""
    server.log_configuration(arbiter, preload_refused)


# In the master, after a worker exited (recycled, killed, stopped): drop its live gauges and
# sum its counts into the archive files, so totals stay and files never pile up.
child_exit = server.retire_worker_metrics
# The private metrics directory is removed when the master exits; a configured one is kept.
on_exit = server.remove_metrics


post_fork = server.prepare_worker  # JSON error pages; psycogreen under gevent


def post_worker_init(worker: Any) -> None:
    """In each worker, after fork and after the app is loaded (gevent has patched threads
    into greenlets by now): start tracing when TRACING_ENABLED and the job scheduler when
    SCHEDULER_ENABLED, build the worker's metrics, then report."""
    server.start_tracing(worker)
    server.start_scheduler(worker)
    server.start_metrics(worker)
    server.announce_worker(worker)


# A stopping worker gives running jobs graceful_timeout minus 5 s, then hands their runs back.
worker_exit = server.stop_scheduler
pre_request = server.remember_request
post_request = server.forget_request
worker_abort = server.log_timed_out_request
