"""Every environment variable the service reads, declared once: name, type, default, accepted
values and why.

Two declarations, read the same way (pydantic-settings): `Settings`, what the app reads, and
`ServerSettings`, what `gunicorn.conf.py` reads. A field `db_pool_size` is the variable
`DB_POOL_SIZE`; its `description` is the reason, and `.env.example` and the README's table
are written from these fields (`make settings-docs`, template/settings_docs.py; a test fails
when they disagree). Tests build `Settings(...)` or `Settings.from_env({...})`, which never
read the process environment.

A bad value raises `SettingsError`, whose one-line message names the variable and what it
accepts; the entry points turn it into a clean exit, not a traceback (`read_or_exit`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ValidationInfo, field_validator

from chassis.settings.declaring import Declared, setting
from chassis.settings.parsers import (
    HEADER_NAME,
    IMPORT_PATH,
    choice,
    installed,
    normalise_database_url,
    tcp_port,
)
from chassis.settings.secret_key import (
    DEVELOPMENT_SECRET_KEY,
    GENERATE_SECRET,
    MIN_PRODUCTION_SECRET_LENGTH,
    production_secret_problem,
)

AppEnv = Literal["development", "production", "test"]
LogFormat = Literal["json", "text"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
WorkerClass = Literal["sync", "gevent", "gthread"]

# 1 MiB: enough for JSON APIs, small enough that a worker never buffers a huge body.
# nginx's client_max_body_size (nginx/) must be at least this; a test checks they agree.
DEFAULT_MAX_CONTENT_LENGTH = 1024 * 1024


class Settings(Declared):
    """What the application reads from its environment."""

    app_env: AppEnv = setting(
        "development",
        """Production refuses placeholder secrets and logs JSON unless told otherwise; test
        is for the test suite.""",
    )
    secret_key: str = setting(
        "",
        f"""Signs sessions and tokens. Required in production: {MIN_PRODUCTION_SECRET_LENGTH}+
        characters, not a run or a short unit repeated, neither containing nor close to a
        placeholder (changeme, secret, password, the development key; the rule is in
        chassis/settings/secret_key.py). Development and test fall back to a fixed
        development key and log a warning. Generate: {GENERATE_SECRET}""",
        shown="a fixed development key, outside production",
        accepts="32+ random characters in production",
        repr=False,  # never in a log line or a traceback
    )
    database_url: str = setting(
        "sqlite:///data/app.db",
        """The database. The default is an embedded SQLite file under ./data (created on
        demand); production uses PostgreSQL: postgresql://user:password@host:5432/dbname
        (postgres:// works). SQLite is always a file, sqlite:///PATH (four slashes for an
        absolute path), with no query string: the engine sets its options, and :memory:
        would give each worker a database of its own.""",
        accepts="a postgresql:// URL or sqlite:///PATH",
        repr=False,  # it may hold the database password
    )
    db_pool_size: int = setting(
        5,
        """Pooled connections per worker process; size plus overflow is the most a worker
        opens, so multiply by workers and replicas and keep it under PostgreSQL's
        max_connections. Under gevent, unless set, the pool is the worker's connections
        with no overflow (each greenlet holds at most one).""",
        shown="5 (gevent: GUNICORN_WORKER_CONNECTIONS)",
        ge=1,
    )
    db_max_overflow: int = setting(
        5,
        "Connections a worker may open above the pool size under bursts.",
        shown="5 (gevent: 0)",
        ge=0,
    )
    db_pool_timeout: float = setting(
        5.0,
        """Seconds a request waits for a free pooled connection before answering 503. Short
        and far below gunicorn's timeout, so an exhausted pool never ends in a killed
        worker.""",
        ge=0.1,
        allow_inf_nan=False,
    )
    db_pool_recycle: int = setting(
        1800,
        """Seconds before a pooled connection is replaced, ahead of idle cut-offs in proxies
        (PgBouncer, cloud load balancers) that would break it mid-request.""",
        ge=1,
    )
    db_connect_timeout: int = setting(
        5, "Seconds to wait when connecting to PostgreSQL (libpq's minimum is 2).", ge=1
    )
    db_network_timeout: int = setting(
        5,
        """Seconds PostgreSQL's host may leave what was sent unacknowledged, or keepalive
        probes unanswered, before the connection is declared dead and the request answers
        503. Without it a server that drops packets (a failover, a lost route) holds a
        request until the worker is killed: statement_timeout is the server's own clock and
        never fires.""",
        ge=1,
    )
    db_statement_timeout_ms: int = setting(
        10_000,
        """Milliseconds before PostgreSQL cancels a statement (0 = never); below gunicorn's
        timeout so a runaway query fails cleanly instead of a killed worker. Migrations run
        without it.""",
        ge=0,
    )
    log_level: LogLevel = setting("INFO", "The lowest level logged.")
    log_format: LogFormat = setting(
        None,
        """JSON lines (one object per line) for log shippers; text is for reading in a
        terminal.""",
        shown="text in development, else json",
    )
    tracking_id_header: str = setting(
        "X-Tracking-ID",
        """The request and response header carrying the tracking id. Incoming values are
        reused only if they are 1-128 characters of A-Z a-z 0-9 . _ : - (otherwise a fresh id
        is made).""",
        accepts="an HTTP header name",
    )
    proxy_fix_x_for: int = setting(
        0,
        """How many proxies in front of the app to trust for X-Forwarded-For (werkzeug's
        ProxyFix). 0 trusts nothing, so clients cannot forge their address; set 1 behind
        exactly one proxy that sets it (nginx/ sets For, Proto and Host).""",
        ge=0,
    )
    proxy_fix_x_proto: int = setting(0, "The same, for X-Forwarded-Proto (the scheme).", ge=0)
    proxy_fix_x_host: int = setting(0, "The same, for X-Forwarded-Host.", ge=0)
    proxy_fix_x_port: int = setting(0, "The same, for X-Forwarded-Port.", ge=0)
    proxy_fix_x_prefix: int = setting(0, "The same, for X-Forwarded-Prefix.", ge=0)
    max_content_length: int = setting(
        DEFAULT_MAX_CONTENT_LENGTH,
        """Largest request body in bytes (413 above it). nginx's client_max_body_size must be
        at least this. 1 MiB suits JSON APIs and keeps a worker from buffering huge
        bodies.""",
        ge=1,
    )
    metrics_bind: str | None = setting(
        None,
        """Where Prometheus scrapes /metrics: gunicorn listens here too, and answers
        /metrics and nothing else on it; never the address nginx proxies to. A host name
        binds this machine's own address among those it names. Unset, no metrics listener
        (compose.yaml sets app-metrics:9100, Kubernetes 0.0.0.0:9100).""",
        shown="off",
        accepts="HOST:PORT",
    )
    scheduler_enabled: bool = setting(
        False,
        """Run scheduled jobs in every gunicorn worker; the database makes each scheduled time
        run once. Off so tests and one-off commands never start a scheduler by accident.""",
    )
    scheduler_jobs: str = setting(
        "app.jobs:jobs", "The registry of jobs to run.", accepts="module:attribute"
    )
    scheduler_history_days: int = setting(
        30, "Days of job history the purge job keeps (each job's newest run is kept).", ge=1
    )
    scheduler_db_pool_size: int = setting(
        2,
        """Database connections per process for running jobs, apart from the request pool
        (the scheduler keeps one more for its leases), so slow requests never hold up a job
        or its lease. Jobs running at once beyond it wait for one; SQLite has one.""",
        ge=1,
    )
    tracing_enabled: bool = setting(
        False,
        """Record an OpenTelemetry span per request, continuing the caller's W3C traceparent,
        and write its trace id in every log line. Needs the tracing extra (uv sync --extra
        tracing); off, nothing of OpenTelemetry is imported.""",
    )
    tracing_exporter: str = setting(
        "console",
        """Where each worker's spans go: console writes one JSON line per span on stdout;
        module:attribute names a callable returning an OpenTelemetry SpanExporter, such as
        an OTLP exporter class (docs/tracing.md).""",
        accepts="console, or module:attribute",
    )

    @field_validator("app_env", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return choice(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return choice(value, upper=True)

    @field_validator("secret_key")
    @classmethod
    def _secret_key(cls, value: str, info: ValidationInfo) -> str:
        """Production needs a real secret (secret_key.py says what passes); elsewhere a missing
        one is the development key."""
        if info.data.get("app_env") != "production":
            return value if value.strip() else DEVELOPMENT_SECRET_KEY
        if problem := production_secret_problem(value):
            raise ValueError(problem)
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        return normalise_database_url(value)

    @field_validator("log_format", mode="before")
    @classmethod
    def _log_format(cls, value: Any, info: ValidationInfo) -> Any:
        if value is None:
            return "text" if info.data.get("app_env") == "development" else "json"
        return choice(value)

    @field_validator("tracking_id_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not HEADER_NAME.fullmatch(value):
            raise ValueError("must be a valid HTTP header name")
        return value

    @field_validator("metrics_bind")
    @classmethod
    def _metrics_bind(cls, value: str | None) -> str | None:
        if value is not None and tcp_port(value) is None:
            raise ValueError(f"must be HOST:PORT or [IPV6]:PORT (got {value!r})")
        return value

    @property
    def metrics_port(self) -> int | None:
        """The metrics listener's port (METRICS_BIND), or None when there is none."""
        return tcp_port(self.metrics_bind) if self.metrics_bind else None

    @field_validator("tracing_enabled")
    @classmethod
    def _tracinginstalled(cls, value: bool) -> bool:
        if value and not installed("opentelemetry.sdk"):
            raise ValueError("needs the tracing extra: uv sync --extra tracing (docs/tracing.md)")
        return value

    @field_validator("tracing_exporter")
    @classmethod
    def _exporter(cls, value: str) -> str:
        if value != "console" and not IMPORT_PATH.fullmatch(value):
            raise ValueError(f"must be console or module:attribute (got {value!r})")
        return value

    @property
    def uses_development_secret(self) -> bool:
        """Whether the fixed development key is in use (logged as a warning at boot)."""
        return self.secret_key == DEVELOPMENT_SECRET_KEY

    def for_greenlets(self, connections: int) -> Settings:
        """Under gevent every greenlet may hold one connection: the pool is `connections`,
        with no overflow, each unless its variable (DB_POOL_SIZE, DB_MAX_OVERFLOW) was set."""
        pool = {"db_pool_size": connections, "db_max_overflow": 0}
        unset = {name: value for name, value in pool.items() if name not in self.model_fields_set}
        return self.model_copy(update=unset)


class ServerSettings(Declared):
    """What `gunicorn.conf.py` reads; the comments there say how each is used."""

    gunicorn_worker_class: WorkerClass = setting(
        "sync",
        """sync is one request per process, the safe default; gevent serves many I/O-bound
        requests per process (psycopg2 made cooperative by psycogreen); gthread uses a
        thread pool. Set it here rather than in GUNICORN_CMD_ARGS, which gunicorn.conf.py
        cannot see.""",
    )
    web_concurrency: int | None = setting(
        None,
        """Worker processes. Unset, from the CPUs this process may use (container quota
        included): 2 x CPUs + 1 for sync, CPUs + 1 for gthread, CPUs for gevent.""",
        shown="from CPUs",
        ge=1,
    )
    gunicorn_threads: int | None = setting(
        None, "Threads per gthread worker.", shown="4 (gthread), else 1", ge=1
    )
    gunicorn_worker_connections: int = setting(
        50,
        """Concurrent requests per gevent worker, and the size of its database pool. Keep
        workers x this x replicas under PostgreSQL's max_connections.""",
        ge=1,
    )
    gunicorn_bind: str | None = setting(
        None,
        """Listen address. Loopback by default so a development server is never exposed;
        containers set 0.0.0.0:8000.""",
        shown="127.0.0.1:$PORT",
        accepts="HOST:PORT, unix:PATH",
    )
    port: int = setting(
        8000,
        """The port on loopback when GUNICORN_BIND is not set (the name platforms use); the
        image's health check probes it.""",
        ge=1,
        le=65535,
    )
    gunicorn_timeout: int = setting(
        30,
        """Seconds a worker may spend on one request before it is killed and replaced; above
        the database timeouts so the app answers a slow database itself.""",
        ge=1,
    )
    gunicorn_graceful_timeout: int = setting(
        30,
        """Seconds in-flight requests get after SIGTERM; every stop timeout around it (Docker,
        systemd, supervisor, Kubernetes) is longer.""",
        ge=1,
    )
    gunicorn_keepalive: int = setting(
        75,
        """Seconds an idle keep-alive connection stays open; above nginx's upstream
        keepalive_timeout (1 s), so nginx never reuses a connection gunicorn is closing.""",
        ge=1,
    )
    gunicorn_max_requests: int = setting(
        0,
        """Recycle a worker after this many requests (0 = never): a leak should be found, not
        hidden.""",
        ge=0,
    )
    gunicorn_max_requests_jitter: int = setting(
        0, "Random extra requests per worker, so workers never recycle together.", ge=0
    )
    gunicorn_preload: bool = setting(
        False,
        """Import the app in the master before forking (sync and gthread; refused under
        gevent, whose patching must come first).""",
    )
    forwarded_allow_ips: str = setting(
        "127.0.0.1,::1",
        """Peers whose X-Forwarded-Proto gunicorn itself trusts: loopback, a proxy on the same
        host.""",
        accepts="comma-separated addresses, or *",
    )
    prometheus_multiproc_dir: str | None = setting(
        None,
        """Where each worker writes its metrics for the others to read (prometheus_client's
        multiprocess mode). gunicorn creates it and deletes the metric files in it at start;
        dead workers' counts are summed into one file per kind, so files never pile up.""",
        shown="a new directory in /dev/shm (else the temp dir), removed at exit",
        accepts="a directory",
    )

    @field_validator("gunicorn_worker_class", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return choice(value)

    @property
    def bind(self) -> str:
        """Where gunicorn listens."""
        return self.gunicorn_bind or f"127.0.0.1:{self.port}"
