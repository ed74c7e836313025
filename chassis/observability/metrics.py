"""Prometheus metrics: what the chassis measures, and the listener that answers `/metrics`.

    http_requests_total{route, method, status_class}          counter
    http_request_duration_seconds{route, method, status_class} histogram
    http_requests_in_flight                                    gauge, summed over workers
    db_pool_checked_out                                        gauge, summed over workers
    db_pool_overflow                                           gauge, summed over workers
    db_pool_timeouts_total                                     counter
    scheduler_runs_total{job_name, outcome}                    counter
    scheduler_lag_seconds{job_name}                            histogram
    app_build_info{version, worker_class}                      gauge, always 1

`route` is the URL rule (`/orders/<int:order_id>`), never the path a client sent, and
`unmatched` when no rule matched; `method` is one of HTTP's own or `other`: no label takes a
value a client chooses, so no client can grow the number of series.

Where it answers: on a listener of its own, `METRICS_BIND`, which gunicorn binds beside
`GUNICORN_BIND` (gunicorn.conf.py). A request that arrived there (the connection's own
socket says so, not a header) gets `/metrics` and nothing else; `/metrics` on the app's
port is a 404 like any unknown path. nginx and the Kubernetes Service reach only the app's
port, and the listener can be opened to the monitoring network alone.

Under gunicorn the values live in files shared by the workers (chassis/observability/metric_files.py), so
a scrape sums every worker, and a dead one's counts stay. Metrics are built per process at
first use, never at import: in the gunicorn master, which forks the workers, nothing is
measured.
"""

from __future__ import annotations

import os
import threading
import time
import tomllib
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import Engine, QueuePool, event
from werkzeug.exceptions import HTTPException

from chassis.observability import metric_files
from chassis.observability.tracking import CloseHook
from chassis.settings import PYPROJECT

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from werkzeug.routing import Map

METRICS_PATH = "/metrics"
UNMATCHED = "unmatched"
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Up to gunicorn's default timeout (30 s): a request cannot take longer.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# The scheduler looks for due times every 0.5 s; a lag of minutes is a scheduler in trouble.
LAG_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    """This process's metric families, and the registry a scrape reads."""

    def __init__(self, directory: Path | None) -> None:
        own: CollectorRegistry | None
        if directory is None:
            own = self.registry = CollectorRegistry()
        else:
            # Under gunicorn the values are in files, which a registry of their own reads at
            # each scrape; the families register nowhere (prometheus_client's advice).
            own, self.registry = None, metric_files.collecting_registry(directory)
        route = ("route", "method", "status_class")
        self._request_series: dict[tuple[str, str, str], tuple[Counter, Histogram]] = {}
        self.requests = Counter(
            "http_requests", "Requests answered by the app.", route, registry=own
        )
        self.duration = Histogram(
            "http_request_duration_seconds",
            "Time from the request reaching the app to its response being sent.",
            route,
            buckets=REQUEST_BUCKETS,
            registry=own,
        )
        # Gauges are summed over the workers alive; a dead worker's value leaves with it.
        self.in_flight = Gauge(
            "http_requests_in_flight",
            "Requests being answered.",
            multiprocess_mode="livesum",
            registry=own,
        )
        self.pool_checked_out = Gauge(
            "db_pool_checked_out",
            "Request pool connections in use.",
            multiprocess_mode="livesum",
            registry=own,
        )
        self.pool_overflow = Gauge(
            "db_pool_overflow",
            "Request pool connections in use beyond DB_POOL_SIZE.",
            multiprocess_mode="livesum",
            registry=own,
        )
        self.pool_timeouts = Counter(
            "db_pool_timeouts",
            "Requests that got no pooled connection within DB_POOL_TIMEOUT (answered 503).",
            registry=own,
        )
        # `job_name`, not `job`: Prometheus gives every series the label `job` (the scrape
        # job's), and would rename this one `exported_job`.
        self.scheduler_runs = Counter(
            "scheduler_runs", "Job runs ended, by outcome.", ("job_name", "outcome"), registry=own
        )
        self.scheduler_lag = Histogram(
            "scheduler_lag_seconds",
            "How late a run was claimed after its scheduled time, on the database's clock.",
            ("job_name",),
            buckets=LAG_BUCKETS,
            registry=own,
        )
        self.build_info = Gauge(
            "app_build_info",
            "The service's version and gunicorn worker class; always 1.",
            ("version", "worker_class"),
            multiprocess_mode="livemax",
            registry=own,
        )

    def request_series(self, labels: tuple[str, str, str]) -> tuple[Counter, Histogram]:
        """The request counter's and histogram's series for (route, method, status class).

        Kept once made: `labels()` validates its values and takes a lock on every call. The
        labels are bounded (routes, HTTP's methods, status classes), and so is this."""
        found = self._request_series.get(labels)
        if found is None:
            found = self._request_series[labels] = (
                self.requests.labels(*labels),
                self.duration.labels(*labels),
            )
        return found

    def describe_build(self, worker_class: str) -> None:
        """Set `app_build_info` for this process."""
        self.build_info.labels(version=service_version(), worker_class=worker_class).set(1)

    def run_claimed(self, job: str, lag_seconds: float) -> None:
        """A scheduled time was claimed `lag_seconds` after it came due."""
        self.scheduler_lag.labels(job_name=job).observe(max(0.0, lag_seconds))

    def run_ended(self, job: str, outcome: str) -> None:
        """A run ended: succeeded, failed, lost (its lease) or unrecorded."""
        self.scheduler_runs.labels(job_name=job, outcome=outcome).inc()


_current: tuple[int, Metrics] | None = None
_creating = threading.Lock()


def current_metrics() -> Metrics:
    """This process's metrics, built at first use (after a fork, built again)."""
    global _current
    found = _current
    if found is not None and found[0] == os.getpid():
        return found[1]
    with _creating:
        if _current is None or _current[0] != os.getpid():
            _current = (os.getpid(), Metrics(_multiprocess_directory()))
        return _current[1]


def _multiprocess_directory() -> Path | None:
    """PROMETHEUS_MULTIPROC_DIR when set, with prometheus_client writing its values there."""
    directory = os.environ.get(metric_files.VARIABLE)
    if not directory:
        return None
    metric_files.write_to_files()
    return Path(directory)


@cache
def service_version() -> str:
    """`[project] version` of pyproject.toml, or "unknown" where there is none."""
    try:
        return str(tomllib.loads(PYPROJECT.read_text())["project"]["version"])
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return "unknown"


# --- Requests ------------------------------------------------------------------------------


def route_of(environ: WSGIEnvironment) -> str:
    """The URL rule the request matched, or `UNMATCHED`.

    Read from the request object werkzeug leaves in the environ ("werkzeug.request"), where
    routing recorded the rule, so no request hook has to copy it out. Flask clears that
    entry when its request context ends, so read it when the response starts."""
    rule = getattr(environ.get("werkzeug.request"), "url_rule", None)
    return rule.rule if rule is not None else UNMATCHED


def matched_again(url_map: Map, environ: WSGIEnvironment) -> str:
    """The URL rule for a request Flask gave up on before it answered (its request object
    is gone from the environ): routed again, as only that rare path needs it."""
    try:
        rule, _ = url_map.bind_to_environ(environ).match(return_rule=True)
    except HTTPException:
        return UNMATCHED
    return str(rule.rule)


class RequestMetrics:
    """WSGI middleware that counts and times each request, and counts those in flight.

    Outermost but for the metrics listener, so every answer is counted, the tracking id's
    and ProxyFix's failures included; the time runs until the server closes the response.
    """

    def __init__(self, app: WSGIApplication, url_map: Map) -> None:
        self.app = app
        self.url_map = url_map

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        metrics = current_metrics()
        started = time.perf_counter()
        metrics.in_flight.inc()
        status, route = 500, UNMATCHED  # unless the app answers

        def start(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            nonlocal status, route
            status, route = int(status_line[:3]), route_of(environ)
            return start_response(status_line, headers, exc_info)

        def finish() -> None:
            method = environ.get("REQUEST_METHOD", "")
            labels = (route, method if method in METHODS else "other", f"{status // 100}xx")
            count, duration = metrics.request_series(labels)
            count.inc()
            duration.observe(time.perf_counter() - started)
            metrics.in_flight.dec()

        try:
            body = self.app(environ, start)
        except BaseException:  # the worker is stopping (a timeout): no answer was started
            route = matched_again(self.url_map, environ)
            finish()
            raise
        return CloseHook(body, finish)


# --- The database pool -----------------------------------------------------------------------


def watch_pool(engine: Engine) -> None:
    """Keep the pool gauges in step with `engine`'s checkouts and checkins."""
    # Counted here rather than read from the pool: during `checkin` the pool still counts
    # the connection being returned.
    size = engine.pool.size() if isinstance(engine.pool, QueuePool) else None
    lock = threading.Lock()
    in_use = 0

    def moved(step: int) -> None:
        nonlocal in_use
        metrics = current_metrics()
        with lock:
            before = in_use
            in_use += step
            metrics.pool_checked_out.inc(step)
            if size is not None:
                metrics.pool_overflow.inc(max(0, in_use - size) - max(0, before - size))

    def checked_out(*_: object) -> None:
        moved(1)

    def checked_in(*_: object) -> None:
        moved(-1)

    event.listen(engine, "checkout", checked_out)
    event.listen(engine, "checkin", checked_in)
