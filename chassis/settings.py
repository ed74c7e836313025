"""Typed, frozen settings read from the environment once and validated at boot.

Every variable is listed in `.env.example` with its default and why. A bad value raises
`SettingsError`, whose one-line message names the variable and what it accepts; the
entry points (`app/wsgi.py`, `gunicorn.conf.py`) turn it into a clean exit, not a traceback.

Tests build `Settings(...)` directly (or `Settings.from_env({...})`) instead of mutating
`os.environ`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, TypeVar

AppEnv = Literal["development", "production", "test"]
LogFormat = Literal["json", "text"]
LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

APP_ENVS: tuple[AppEnv, ...] = ("development", "production", "test")
LOG_FORMATS: tuple[LogFormat, ...] = ("json", "text")
LOG_LEVELS: tuple[LogLevel, ...] = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

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

# 1 MiB: enough for JSON APIs, small enough that a worker never buffers a huge body.
# nginx's client_max_body_size (nginx/) must be at least this; a test checks they agree.
DEFAULT_MAX_CONTENT_LENGTH = 1024 * 1024

# The embedded default: a SQLite file under ./data (created on demand, ignored by git).
DEFAULT_DATABASE_URL = "sqlite:///data/app.db"

# RFC 9110 token characters: what a header name may hold.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_Choice = TypeVar("_Choice", bound=str)


class SettingsError(ValueError):
    """A configuration value is missing or invalid; the message names the variable."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name}: {problem}")
        self.name = name


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the application reads from its environment."""

    app_env: AppEnv = "development"
    secret_key: str = DEVELOPMENT_SECRET_KEY
    database_url: str = DEFAULT_DATABASE_URL
    # Pool sizing: connections per worker process. Under gevent, gunicorn.conf.py raises the
    # pool to match worker connections (each greenlet holds at most one connection).
    db_pool_size: int = 5
    db_max_overflow: int = 5
    # Seconds a request waits for a pooled connection before it gets a 503: short, and well
    # under gunicorn's timeout, so an exhausted pool never turns into a WORKER TIMEOUT.
    db_pool_timeout: float = 5.0
    # Seconds after which a pooled connection is replaced, ahead of server or proxy idle
    # cut-offs (PgBouncer, cloud load balancers) that would otherwise break it mid-request.
    db_pool_recycle: int = 1800
    # PostgreSQL: seconds to wait for a connection (libpq treats values below 2 as 2).
    db_connect_timeout: int = 5
    # PostgreSQL: milliseconds before the server cancels a statement; below gunicorn's timeout
    # so a runaway query ends as a clean error instead of a killed worker. 0 disables it.
    db_statement_timeout_ms: int = 10_000
    log_level: LogLevel = "INFO"
    log_format: LogFormat = "text"
    tracking_id_header: str = "X-Tracking-ID"
    proxy_fix_x_for: int = 0
    proxy_fix_x_proto: int = 0
    proxy_fix_x_host: int = 0
    proxy_fix_x_port: int = 0
    proxy_fix_x_prefix: int = 0
    max_content_length: int = DEFAULT_MAX_CONTENT_LENGTH
    # Scheduled jobs (chassis/scheduler/): off unless asked for, so tests and one-off commands
    # never start a scheduler by accident.
    scheduler_enabled: bool = False
    scheduler_jobs: str = "app.jobs:jobs"
    scheduler_history_days: int = 30

    def __post_init__(self) -> None:
        _check_secret_key(self.app_env, self.secret_key)
        object.__setattr__(self, "database_url", normalise_database_url(self.database_url))
        if not _HEADER_NAME.fullmatch(self.tracking_id_header):
            raise SettingsError("TRACKING_ID_HEADER", "must be a valid HTTP header name")

    @property
    def uses_development_secret(self) -> bool:
        """Whether the fixed development key is in use (logged as a warning at boot)."""
        return self.secret_key == DEVELOPMENT_SECRET_KEY

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read and validate settings from `environ` (default: `os.environ`)."""
        env = os.environ if environ is None else environ
        app_env = env_choice(env, "APP_ENV", APP_ENVS, "development")
        secret_key = env.get("SECRET_KEY", "")
        if not secret_key.strip():
            if app_env == "production":
                raise SettingsError(
                    "SECRET_KEY",
                    "is required when APP_ENV=production; generate one with "
                    "`python -c 'import secrets; print(secrets.token_hex(32))'`",
                )
            secret_key = DEVELOPMENT_SECRET_KEY
        default_format: LogFormat = "text" if app_env == "development" else "json"
        return cls(
            app_env=app_env,
            secret_key=secret_key,
            database_url=env.get("DATABASE_URL") or DEFAULT_DATABASE_URL,
            db_pool_size=env_int(env, "DB_POOL_SIZE", 5, minimum=1),
            db_max_overflow=env_int(env, "DB_MAX_OVERFLOW", 5, minimum=0),
            db_pool_timeout=env_float(env, "DB_POOL_TIMEOUT", 5.0, minimum=0.1),
            db_pool_recycle=env_int(env, "DB_POOL_RECYCLE", 1800, minimum=1),
            db_connect_timeout=env_int(env, "DB_CONNECT_TIMEOUT", 5, minimum=1),
            db_statement_timeout_ms=env_int(env, "DB_STATEMENT_TIMEOUT_MS", 10_000, minimum=0),
            log_level=env_choice(env, "LOG_LEVEL", LOG_LEVELS, "INFO", upper=True),
            log_format=env_choice(env, "LOG_FORMAT", LOG_FORMATS, default_format),
            tracking_id_header=env.get("TRACKING_ID_HEADER", "X-Tracking-ID"),
            proxy_fix_x_for=env_int(env, "PROXY_FIX_X_FOR", 0, minimum=0),
            proxy_fix_x_proto=env_int(env, "PROXY_FIX_X_PROTO", 0, minimum=0),
            proxy_fix_x_host=env_int(env, "PROXY_FIX_X_HOST", 0, minimum=0),
            proxy_fix_x_port=env_int(env, "PROXY_FIX_X_PORT", 0, minimum=0),
            proxy_fix_x_prefix=env_int(env, "PROXY_FIX_X_PREFIX", 0, minimum=0),
            max_content_length=env_int(
                env, "MAX_CONTENT_LENGTH", DEFAULT_MAX_CONTENT_LENGTH, minimum=1
            ),
            scheduler_enabled=env_bool(env, "SCHEDULER_ENABLED", False),
            scheduler_jobs=env.get("SCHEDULER_JOBS", "").strip() or "app.jobs:jobs",
            scheduler_history_days=env_int(env, "SCHEDULER_HISTORY_DAYS", 30, minimum=1),
        )


def normalise_database_url(raw: str) -> str:
    """Return `raw` with an explicit driver: `postgres://` and `postgresql://` use psycopg2.

    Raises `SettingsError` for anything but a PostgreSQL or SQLite URL.
    """
    scheme, sep, rest = raw.strip().partition("://")
    if not sep:
        raise SettingsError("DATABASE_URL", "must be a URL such as postgresql://user@host/db")
    if scheme in {"postgres", "postgresql", "postgresql+psycopg2"}:
        return f"postgresql+psycopg2://{rest}"
    if scheme in {"sqlite", "sqlite+pysqlite"}:
        if rest in {"", "/", "/:memory:"}:
            # Every pooled connection would open its own, empty, in-memory database.
            raise SettingsError("DATABASE_URL", "must name a SQLite file, not :memory:")
        return f"sqlite://{rest}"
    raise SettingsError(
        "DATABASE_URL", f"must start with postgresql:// or sqlite:// (got {scheme}://)"
    )


def _check_secret_key(app_env: AppEnv, secret_key: str) -> None:
    if app_env != "production":
        return
    if not secret_key.strip():
        raise SettingsError("SECRET_KEY", "is required when APP_ENV=production")
    if secret_key.strip().lower() in PLACEHOLDER_SECRETS:
        raise SettingsError("SECRET_KEY", "is a placeholder value; set a random secret")
    if len(secret_key) < MIN_PRODUCTION_SECRET_LENGTH:
        raise SettingsError(
            "SECRET_KEY",
            f"must be at least {MIN_PRODUCTION_SECRET_LENGTH} characters when APP_ENV=production",
        )


def env_choice(
    env: Mapping[str, str],
    name: str,
    choices: tuple[_Choice, ...],
    default: _Choice,
    *,
    upper: bool = False,
) -> _Choice:
    """Read one of `choices` (case-insensitive); a value outside them is an error."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    value = raw.upper() if upper else raw.lower()
    for choice in choices:
        if value == choice:
            return choice
    raise SettingsError(name, f"must be one of {', '.join(choices)} (got {raw!r})")


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int) -> int:
    """Read a whole number of at least `minimum`."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(name, f"must be a whole number (got {raw!r})") from None
    if value < minimum:
        raise SettingsError(name, f"must be at least {minimum} (got {value})")
    return value


def env_float(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    """Read a number of at least `minimum`."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(name, f"must be a number of seconds (got {raw!r})") from None
    if not value >= minimum:  # also refuses nan
        raise SettingsError(name, f"must be at least {minimum} (got {raw})")
    return value


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """Read a boolean strictly: 1/true/yes/on or 0/false/no/off; anything else is an error."""
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise SettingsError(name, f"must be one of 1, true, yes, on, 0, false, no, off (got {raw!r})")


def default_pool_for_greenlets(connections: int) -> None:
    """Under gevent every greenlet may hold one connection: unless DB_POOL_SIZE or
    DB_MAX_OVERFLOW is set, size the pool to the concurrent connections, with no overflow.

    Set in the environment because the app reads its settings after this runs (a gunicorn
    worker's post_fork, the gevent server's start)."""
    for name, value in (("DB_POOL_SIZE", connections), ("DB_MAX_OVERFLOW", 0)):
        if not os.environ.get(name, "").strip():
            os.environ[name] = str(value)
