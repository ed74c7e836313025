"""gunicorn configuration: `gunicorn -c gunicorn.conf.py` serves `app.wsgi:app`.

Plain assignments grouped like gunicorn's settings reference
(https://docs.gunicorn.org/en/stable/settings.html). Each variable is declared once, with its
type, default and reason, in chassis/settings/declarations.py (`ServerSettings`); this file
only says what gunicorn does with it. A bad value stops the master with one line naming the
variable. `GUNICORN_CMD_ARGS` and command-line flags still override anything here.
"""

import os
from typing import Any

from chassis.serving import hooks, metrics_hooks
from chassis.settings import ServerSettings, current_settings, read_or_exit

server_settings = read_or_exit(ServerSettings.from_env)
# The app's settings, validated once in the master (one line on a bad value, not a crash
# loop of workers); the workers inherit what was read here.
app_settings = read_or_exit(current_settings)

# --- Server mechanics ------------------------------------------------------------------
wsgi_app = "app.wsgi:app"
# The heartbeat file, on a memory filesystem: a slow disk-backed /tmp stalls heartbeats.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None  # noqa: S108
# gunicorn 25+ opens a control socket under $HOME; the kit is managed with signals.
control_socket_disable = True

# --- Server socket ---------------------------------------------------------------------
# The app's listener, and METRICS_BIND's where only /metrics is answered.
bind = metrics_hooks.listeners(server_settings.bind, app_settings.metrics_bind)

# --- Worker processes ------------------------------------------------------------------
# The class gunicorn forks its workers from.
worker_class_name = server_settings.gunicorn_worker_class
worker_class = hooks.WORKER_CLASSES[worker_class_name]

# Whether the master imports the app before forking; never under gevent (logged when ready).
preload_requested = server_settings.gunicorn_preload
preload_refused = preload_requested and worker_class_name == "gevent"
preload_app = preload_requested and not preload_refused

# How many worker processes the master keeps running.
cpus = hooks.available_cpus()
per_class = {"sync": 2 * cpus + 1, "gthread": cpus + 1, "gevent": cpus}
workers = server_settings.web_concurrency or per_class[worker_class_name]

# Threads per gthread worker. Only there: gunicorn would turn a sync worker with more than
# one thread into its own gthread worker, without the kit's deadline for reading requests.
threads = (server_settings.gunicorn_threads or 4) if worker_class_name == "gthread" else 1

# Greenlets per gevent worker; its database pool takes the same size (hooks.prepare_worker).
worker_connections = server_settings.gunicorn_worker_connections

# Seconds before the master kills a worker busy on one request (sync) or silent (async).
timeout = server_settings.gunicorn_timeout

# Seconds workers get to finish in-flight requests after SIGTERM before they are killed.
graceful_timeout = server_settings.gunicorn_graceful_timeout

# Seconds an idle keep-alive connection is held open (gevent and gthread).
keepalive = server_settings.gunicorn_keepalive

# Requests after which a worker is replaced, plus up to the jitter more.
max_requests = server_settings.gunicorn_max_requests
max_requests_jitter = server_settings.gunicorn_max_requests_jitter

# --- Security --------------------------------------------------------------------------
# Peers whose X-Forwarded-Proto gunicorn itself believes.
forwarded_allow_ips = server_settings.forwarded_allow_ips

# --- Logging ---------------------------------------------------------------------------
# Access log on stdout, error log on stderr, both in the app's LOG_FORMAT.
accesslog = "-"
errorlog = "-"
logger_class = "chassis.serving.hooks.StructuredLogger"

# --- Server hooks ----------------------------------------------------------------------


def on_starting(arbiter: Any) -> None:
    """In the master, once, before the first fork: METRICS_BIND's listener still asked for
    (a -b flag replaces `bind`), and an empty metrics directory."""
    metrics_hooks.require_metrics_listener(arbiter, app_settings.metrics_bind)
    metrics_hooks.prepare_metrics(arbiter, server_settings.prometheus_multiproc_dir)


def when_ready(arbiter: Any) -> None:
    """Log the resolved configuration once, when the server is ready."""
    hooks.log_configuration(arbiter, preload_refused)


# In the master, after a worker exited: fold its metrics into the archive files.
child_exit = metrics_hooks.retire_worker_metrics
# When the master exits: remove a private metrics directory (a configured one is kept).
on_exit = metrics_hooks.remove_metrics
# In each worker, right after fork: JSON error pages; psycogreen under gevent.
post_fork = hooks.prepare_worker


def post_worker_init(worker: Any) -> None:
    """In each worker, once the app is loaded: tracing, the scheduler and the worker's
    metrics as their settings ask, a first look at the database, then report ready."""
    hooks.start_tracing(worker)
    hooks.start_scheduler(worker)
    metrics_hooks.start_metrics(worker)
    hooks.check_database(worker)
    hooks.announce_worker(worker)


# A stopping worker hands its running jobs back.
worker_exit = hooks.stop_scheduler
# Around each request: remembered, so that a timed-out worker can name it.
pre_request = hooks.remember_request
post_request = hooks.forget_request
worker_abort = hooks.log_timed_out_request
