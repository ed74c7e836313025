"""The parsers the settings share with the rest of the chassis, each written once: the
error every bad value raises, what a bad value turns into at an entry point, a HOST:PORT,
a database URL, a header name, a choice.

Standard library only, so that anything may use them without loading pydantic.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import unquote

_T = TypeVar("_T")

# RFC 9110 token characters: what a header name may hold.
HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# What names a callable to import: `package.module:attribute`.
IMPORT_PATH = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*")


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


def host_port(bind: str) -> tuple[str, int] | None:
    """The host and port of a gunicorn bind `HOST:PORT` or `[IPV6]:PORT` (the host without
    its brackets); None for anything else (`unix:PATH`, `fd://N`, a missing or
    out-of-range port)."""
    host, _, port = bind.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if not host or (":" in host) != bracketed:
        return None
    if not (port.isdigit() and 0 < int(port) < 65536):
        return None
    return (host[1:-1] if bracketed else host), int(port)


def tcp_port(bind: str) -> int | None:
    """The port of a gunicorn bind `HOST:PORT` or `[IPV6]:PORT`, else None."""
    parsed = host_port(bind)
    return parsed[1] if parsed else None


def normalise_database_url(raw: str) -> str:
    """Return `raw` with an explicit driver: `postgres://` and `postgresql://` use psycopg2.

    Raises ValueError for anything but a PostgreSQL URL or a SQLite file's, naming only its
    scheme or form (never the credentials)."""
    scheme, sep, rest = raw.strip().partition("://")
    if not sep:
        raise ValueError("must be a URL such as postgresql://user@host/db")
    if scheme in {"postgres", "postgresql", "postgresql+psycopg2"}:
        return f"postgresql+psycopg2://{rest}"
    if scheme in {"sqlite", "sqlite+pysqlite"}:
        return f"sqlite://{_sqlite_file(rest)}"
    raise ValueError(f"must start with postgresql:// or sqlite:// (got {scheme}://)")


def _sqlite_file(rest: str) -> str:
    """`rest` of a `sqlite://` URL when it is `/PATH` naming a file the chassis's engine can
    open (chassis/database/engine.py); else ValueError saying which form it is."""
    if rest and not rest.startswith("/"):
        raise ValueError("must be sqlite:///PATH: three slashes, four for an absolute path")
    path, question_mark, _ = rest[1:].partition("?")
    # SQLAlchemy decodes %XX in the name: sqlite:///%3Amemory%3A is :memory:.
    path = unquote(path)
    if path in {"", ":memory:"}:
        # Each worker, and each pooled connection, would have its own empty database (and
        # SQLAlchemy refuses the engine's pool options for one: a TypeError at start).
        raise ValueError("must name a SQLite file, not :memory:")
    if path.startswith("file:"):
        raise ValueError("must name a SQLite file by its path (sqlite:///PATH), not a file: URI")
    if question_mark:
        # The engine sets SQLite's timeout and pragmas itself: options in the URL would be
        # overridden, or dropped with only a warning (mode=ro, cache=shared).
        raise ValueError("takes no query string for SQLite: name the file only, sqlite:///PATH")
    if path.rpartition("/")[2] in {"", ".", ".."}:
        raise ValueError("must name a SQLite file, not a folder")
    return rest


def installed(module: str) -> bool:
    """Whether `module` can be imported (without importing it; its parents are imported)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


def choice(value: Any, *, upper: bool = False) -> Any:
    """Choices are case-insensitive: `LOG_LEVEL=debug` is DEBUG, `APP_ENV=Test` is test."""
    if isinstance(value, str):
        return value.strip().upper() if upper else value.strip().lower()
    return value
