"""Every environment variable the service reads, declared once: name, type, default, accepted
values and why.

Two declarations, read the same way (pydantic-settings): `Settings`, what the app reads, and
`ServerSettings`, what `gunicorn.conf.py` reads. A field `db_pool_size` is the variable
`DB_POOL_SIZE`; its `description` is the reason, and `.env.example` and the README's table
are written from these fields (`make settings-docs`; a test fails when they disagree).

A process reads its settings once: `current_settings()` reads the environment the first
time and hands out that same object after. A gunicorn worker inherits the master's, and
under gevent sizes the pool for its greenlets (`for_greenlets`) before the app is built;
nothing is passed through `os.environ`. Tests build `Settings(...)` or
`Settings.from_env({...})`, which never read the process environment.

A bad value raises `SettingsError`, whose one-line message names the variable and what it
accepts; the entry points turn it into a clean exit, not a traceback.
"""

from __future__ import annotations

import importlib.util
import os
import re
import textwrap
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, Self, TypeVar, Union, get_args, get_origin

from pydantic import Field, JsonValue, ValidationError, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict
from pydantic_settings.sources import PydanticBaseSettingsSource

AppEnv = Literal["development", "production", "test"]
LogFormat = Literal["json", "text"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
WorkerClass = Literal["sync", "gevent", "gthread"]

# A fixed key, so sessions and signed values survive restarts and agree across workers in
# development; a per-process random key would silently break both. Refused in production.
DEVELOPMENT_SECRET_KEY = "development-only-secret-key-never-use-in-production"  # noqa: S105
PLACEHOLDER_SECRETS = frozenset(
    {
        "changeme",
        "change-me",
        "change_me",
        "dev",
        "development",
        "secret",
        "secret-key",
        "secret_key",
        "password",
        "test",
        "default",
        "insecure",
        DEVELOPMENT_SECRET_KEY,
    }
)
# itsdangerous signs with HMAC-SHA1 by default; 32 random bytes (64 hex digits) is the
# usual floor, and short keys are guessable offline from any signed cookie.
MIN_PRODUCTION_SECRET_LENGTH = 32
GENERATE_SECRET = "python -c 'import secrets; print(secrets.token_hex(32))'"  # noqa: S105

# 1 MiB: enough for JSON APIs, small enough that a worker never buffers a huge body.
# nginx's client_max_body_size (nginx/) must be at least this; a test checks they agree.
DEFAULT_MAX_CONTENT_LENGTH = 1024 * 1024

_T = TypeVar("_T")

# RFC 9110 token characters: what a header name may hold.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# What names a callable to import: `package.module:attribute`.
_IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


class SettingsError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name


def read_or_exit(read: Callable[[], _T]) -> _T:
    """Run `read` (an entry point reading its settings); a bad value exits with one line,
    `configuration error: NAME: ...`, and status 1, not a traceback."""
    try:
        return read()
    except SettingsError as exc:
        raise SystemExit(f"configuration error: {exc}") from None


def setting(
    default: Any, why: str, *, shown: str | None = None, accepts: str | None = None, **rules: Any
) -> Any:
    """Declare one variable: its default, why it is what it is, and its bounds (`ge`...).

    `shown` is the default as the documentation states it, when the value in code (None,
    or one worked out from other settings) would not say it; `accepts` says what a text
    value may be (the type and bounds say it for the rest)."""
    extra: dict[str, JsonValue] = {
        key: value for key, value in (("shown", shown), ("accepts", accepts)) if value
    }
    return Field(default, description=" ".join(why.split()), json_schema_extra=extra, **rules)


class _Declared(BaseSettings):
    """Read from an environment mapping by pydantic-settings' own environment source:
    names case-insensitive, an empty value means the default."""

    model_config = SettingsConfigDict(
        frozen=True,
        case_sensitive=False,
        env_ignore_empty=True,
        # Surrounding space is a copy-paste accident, never meant: " 8 " is 8.
        str_strip_whitespace=True,
        validate_default=True,
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _first_error(exc) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what the caller passes: `from_env` reads the environment it is given, so a
        # test's Settings(...) never picks up the test runner's own variables.
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Read and validate from `environ` (default: `os.environ`)."""
        source = EnvSettingsSource(cls, case_sensitive=False, env_ignore_empty=True)
        # The source reads os.environ when built; it reads `environ` instead, keys lowered
        # as its case-insensitive lookup expects, blank values left out (as empty ones are).
        source.env_vars = {
            name.lower(): value
            for name, value in (os.environ if environ is None else environ).items()
            if value.strip()
        }
        return cls(**source())

    @classmethod
    def variables(cls) -> Iterator[tuple[str, FieldInfo]]:
        """(NAME, declaration) for each variable, in declaration order."""
        for name, field in cls.model_fields.items():
            yield name.upper(), field


def _first_error(exc: ValidationError) -> SettingsError:
    """The first problem, as today's one line: `NAME: must be ... (got ...)`."""
    error = exc.errors(include_url=False)[0]
    name = str(error["loc"][0]).upper() if error["loc"] else "SETTINGS"
    kind, ctx, given = error["type"], error.get("ctx", {}), error.get("input")
    if kind == "value_error":  # our own validators: their message says it all
        return SettingsError(name, str(ctx.get("error", error["msg"])))
    problem = {
        "int_parsing": "must be a whole number",
        "int_from_float": "must be a whole number",
        "float_parsing": "must be a number",
        "finite_number": "must be a finite number",
        "bool_parsing": "must be one of 1, true, yes, on, 0, false, no, off",
        "greater_than_equal": f"must be at least {ctx.get('ge')}",
        "less_than_equal": f"must be at most {ctx.get('le')}",
        "literal_error": "must be one of "
        + str(ctx.get("expected", "")).replace(" or ", ", ").replace("'", ""),
    }.get(kind, error["msg"][:1].lower() + error["msg"][1:])
    return SettingsError(name, f"{problem} (got {given!r})")


def _installed(module: str) -> bool:
    """Whether `module` can be imported (without importing it; its parents are imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def _choice(value: Any, *, upper: bool = False) -> Any:
    """Choices are case-insensitive: `LOG_LEVEL=debug` is DEBUG, `APP_ENV=Test` is test."""
    if isinstance(value, str):
        return value.strip().upper() if upper else value.strip().lower()
    return value


class Settings(_Declared):
    """What the application reads from its environment."""

    app_env: AppEnv = setting(
        "development",
        """Production refuses placeholder secrets and logs JSON unless told otherwise; test
        is for the test suite.""",
    )
    secret_key: str = setting(
        "",
        f"""Signs sessions and tokens. Required in production ({MIN_PRODUCTION_SECRET_LENGTH}+
        characters, not a placeholder); development and test fall back to a fixed
        development key and log a warning. Generate: {GENERATE_SECRET}""",
        shown="a fixed development key, outside production",
        accepts="32+ characters in production",
        repr=False,  # never in a log line or a traceback
    )
    database_url: str = setting(
        "sqlite:///data/app.db",
        """The database. The default is an embedded SQLite file under ./data (created on
        demand); production uses PostgreSQL: postgresql://user:password@host:5432/dbname
        (postgres:// works).""",
        accepts="a postgresql:// or sqlite:/// URL",
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
        /metrics and nothing else on it; never the address nginx proxies to. Unset, no
        metrics listener (compose.yaml and Kubernetes set 0.0.0.0:9100).""",
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
        an OTLP exporter class (README: Tracing).""",
        accepts="console, or module:attribute",
    )

    @field_validator("app_env", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return _choice(value)

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return _choice(value, upper=True)

    @field_validator("secret_key")
    @classmethod
    def _secret_key(cls, value: str, info: ValidationInfo) -> str:
        """Production needs a real secret; elsewhere a missing one is the development key."""
        if info.data.get("app_env") != "production":
            return value if value.strip() else DEVELOPMENT_SECRET_KEY
        if not value.strip():
            raise ValueError(
                f"is required when APP_ENV=production; generate one with `{GENERATE_SECRET}`"
            )
        if value.strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError("is a placeholder value; set a random secret")
        if len(value) < MIN_PRODUCTION_SECRET_LENGTH:
            raise ValueError(
                f"must be at least {MIN_PRODUCTION_SECRET_LENGTH} characters when "
                "APP_ENV=production"
            )
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
        return _choice(value)

    @field_validator("tracking_id_header")
    @classmethod
    def _header_name(cls, value: str) -> str:
        if not _HEADER_NAME.fullmatch(value):
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
    def _tracing_installed(cls, value: bool) -> bool:
        if value and not _installed("opentelemetry.sdk"):
            raise ValueError("needs the tracing extra: uv sync --extra tracing (README: Tracing)")
        return value

    @field_validator("tracing_exporter")
    @classmethod
    def _exporter(cls, value: str) -> str:
        if value != "console" and not _IMPORT_PATH.fullmatch(value):
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


class ServerSettings(_Declared):
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
        keepalive_timeout (60 s), so nginx never reuses a connection gunicorn is closing.""",
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
        return _choice(value)

    @property
    def bind(self) -> str:
        """Where gunicorn listens."""
        return self.gunicorn_bind or f"127.0.0.1:{self.port}"


# Read by other programs, not by the service; listed in the documentation beside the rest.
# Each: (what it accepts, why).
OTHER_VARIABLES = {
    "GUNICORN_CMD_ARGS": (
        "gunicorn flags",
        "Extra gunicorn command-line flags; applied after gunicorn.conf.py, so they win.",
    ),
    "OTEL_SERVICE_NAME": (
        "any text",
        "With TRACING_ENABLED, the service name on every span; OpenTelemetry's SDK reads it "
        "and its other OTEL_ variables (sampler, batching, an OTLP exporter's endpoint).",
    ),
}


def tcp_port(bind: str) -> int | None:
    """The port of a gunicorn bind `HOST:PORT` or `[IPV6]:PORT`; None for anything else
    (`unix:PATH`, `fd://N`, a missing or out-of-range port)."""
    host, _, port = bind.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if not host or (":" in host) != bracketed:
        return None
    return int(port) if port.isdigit() and 0 < int(port) < 65536 else None


def normalise_database_url(raw: str) -> str:
    """Return `raw` with an explicit driver: `postgres://` and `postgresql://` use psycopg2.

    Raises ValueError for anything but a PostgreSQL or SQLite URL, naming only its scheme
    (never the credentials)."""
    scheme, sep, rest = raw.strip().partition("://")
    if not sep:
        raise ValueError("must be a URL such as postgresql://user@host/db")
    if scheme in {"postgres", "postgresql", "postgresql+psycopg2"}:
        return f"postgresql+psycopg2://{rest}"
    if scheme in {"sqlite", "sqlite+pysqlite"}:
        if rest in {"", "/", "/:memory:"}:
            # Every pooled connection would open its own, empty, in-memory database.
            raise ValueError("must name a SQLite file, not :memory:")
        return f"sqlite://{rest}"
    raise ValueError(f"must start with postgresql:// or sqlite:// (got {scheme}://)")


# --- One set of settings per process -------------------------------------------------------

_current: Settings | None = None


def current_settings() -> Settings:
    """This process's settings: read from the environment the first time, then the same."""
    global _current
    if _current is None:
        _current = Settings.from_env()
    return _current


def use_settings(settings: Settings) -> None:
    """Make `settings` this process's (a gevent worker's pool size, before the app loads)."""
    global _current
    _current = settings


# --- The documentation written from the declarations --------------------------------------


def accepted(field: FieldInfo) -> str:
    """The values a field accepts, in words."""
    said = _extra(field, "accepts")
    if said is not None:
        return said
    kind = field.annotation
    if get_origin(kind) in {Union, types.UnionType}:
        kind = next(arg for arg in get_args(kind) if arg is not type(None))
    if get_origin(kind) is Literal:
        return ", ".join(str(arg) for arg in get_args(kind))
    if kind is bool:
        return "true, false"
    bounds = {
        name: getattr(rule, name)
        for rule in field.metadata
        for name in ("ge", "le")
        if getattr(rule, name, None) is not None
    }
    noun = "whole number" if kind is int else "number" if kind is float else "any text"
    if "le" in bounds:
        return f"{noun} from {bounds['ge']} to {bounds['le']}"
    return f"{noun} >= {bounds['ge']}" if "ge" in bounds else noun


def _extra(field: FieldInfo, key: str) -> str | None:
    extra = field.json_schema_extra
    return str(extra[key]) if isinstance(extra, dict) and key in extra else None


def _plain(value: Any) -> str:
    """A default as it is written in an environment file."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def shown_default(field: FieldInfo) -> str:
    """The default as the documentation states it."""
    shown = _extra(field, "shown")
    if shown is not None:
        return shown
    if field.default is PydanticUndefined or field.default is None:
        return ""
    return _plain(field.default)


def env_example() -> str:
    """The settings part of `.env.example`: each variable commented out at its default."""
    lines: list[str] = []
    sections: tuple[tuple[str, type[_Declared]], ...] = (
        ("Application (chassis/settings.py: Settings)", Settings),
        ("gunicorn (gunicorn.conf.py; chassis/settings.py: ServerSettings)", ServerSettings),
    )
    for title, declared in sections:
        lines += ["", f"# --- {title} ".ljust(92, "-")]
        for name, field in declared.variables():
            why = f"{accepted(field)}. {field.description}"
            if _extra(field, "shown") is not None:
                why += f" Default: {shown_default(field)}."
            lines += ["", *textwrap.wrap(why, 90, initial_indent="# ", subsequent_indent="# ")]
            default = "" if field.default is None else _plain(field.default)
            lines.append(f"# {name}={default}")
    for name, (_, why) in OTHER_VARIABLES.items():
        lines += ["", *textwrap.wrap(why, 90, initial_indent="# ", subsequent_indent="# ")]
        lines.append(f"# {name}=")
    return "\n".join(lines) + "\n"


def readme_table() -> str:
    """The README's table of variables."""
    rows = ["| Variable | Default | Accepts | What it does |", "| --- | --- | --- | --- |"]
    for declared in (Settings, ServerSettings):
        for name, field in declared.variables():
            default = shown_default(field)
            if _extra(field, "shown") is None and default:
                default = f"`{default}`"
            why = str(field.description).split(". ")[0].removesuffix(".")
            rows.append(f"| `{name}` | {default} | {accepted(field)} | {why} |")
    for name, (accepts, why) in OTHER_VARIABLES.items():
        rows.append(f"| `{name}` | | {accepts} | {why.split('; ')[0]} |")
    return "\n".join(rows) + "\n"


# `.env.example` keeps its head and its docker compose part; between them it is written here.
ENV_EXAMPLE = ".env.example"
ENV_EXAMPLE_TAIL = "# --- docker compose"
README = "README.md"
README_BEGIN = "<!-- settings: written from chassis/settings.py by `make settings-docs` -->"
README_END = "<!-- /settings -->"


def documented(env_example_text: str, readme_text: str) -> tuple[str, str]:
    """Both files with their settings parts written from the declarations."""
    head, _, rest = env_example_text.partition("\n\n# --- ")
    tail = rest[rest.index(ENV_EXAMPLE_TAIL) :] if ENV_EXAMPLE_TAIL in rest else ""
    env_text = f"{head}\n{env_example()}\n{tail}"
    before, _, rest = readme_text.partition(README_BEGIN)
    _, _, after = rest.partition(README_END)
    readme = f"{before}{README_BEGIN}\n{readme_table()}{README_END}{after}"
    return env_text, readme


def write_docs() -> None:
    """`make settings-docs`, from the project root: rewrite both files."""
    from pathlib import Path

    env_file, readme_file = Path(ENV_EXAMPLE), Path(README)
    env_text, readme = documented(env_file.read_text(), readme_file.read_text())
    env_file.write_text(env_text)
    readme_file.write_text(readme)
