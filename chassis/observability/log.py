"""Logging setup: one handler on the root logger, JSON lines in production, text in development.

Every record passes a filter that stamps it with the current tracking id (or the
`NO_TRACKING_ID` placeholder outside a request), so the formatters never fail on a record
from startup, the CLI or a background thread. With TRACING_ENABLED it also stamps the active
span's trace and span ids ("-" outside a span; chassis/observability/tracing.py); with tracing off records
carry no such field and nothing is looked up. Flask's `app.logger` and werkzeug's logger
propagate to the root and so go through the same handler.

A JSON line holds::

    {"@timestamp": "2026-01-02T03:04:05.678+00:00", "level": "INFO", "logger": "app",
     "tracking_id": "...", "loc": "items.py:42", "func": "create", "process": 123,
     "message": "...", "exception": "Traceback ..."}

plus `"trace_id": "...", "span_id": "..."` after the tracking id with TRACING_ENABLED, and
any `extra={...}` fields the call passed.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
from pythonjsonlogger.core import LogData
from pythonjsonlogger.json import JsonFormatter
from pythonjsonlogger.orjson import OrjsonFormatter

from chassis.observability.tracking import current_tracking_id
from chassis.settings import Settings

HANDLER_NAME = "app"
TEXT_FORMAT = "%(asctime)s %(levelname)-8s [%(tracking_id)s] %(name)s: %(message)s"
TRACED_TEXT_FORMAT = TEXT_FORMAT.replace("%(tracking_id)s", "%(tracking_id)s %(trace_id)s")


class TrackingIdFilter(logging.Filter):
    """Stamp each record with the active tracking id and, given `span_ids`, the active
    span's trace and span ids, unless it already carries them."""

    def __init__(self, span_ids: Callable[[], tuple[str, str]] | None = None) -> None:
        super().__init__()
        self.span_ids = span_ids

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "tracking_id"):
            record.tracking_id = current_tracking_id()
        if self.span_ids is not None and not hasattr(record, "trace_id"):
            record.trace_id, record.span_id = self.span_ids()
        return True


def record_filter(settings: Settings) -> TrackingIdFilter:
    """Return the filter for this process's handlers: span ids only with TRACING_ENABLED."""
    if not settings.tracing_enabled:
        return TrackingIdFilter()
    # Imported only when tracing is on: OpenTelemetry is an optional extra.
    from chassis.observability.tracing import current_span_ids

    return TrackingIdFilter(current_span_ids)


class JsonLineFormatter(OrjsonFormatter):
    """Format a record as one JSON object on one line, with the chassis's field names.

    The library's orjson formatter: a line costs a fraction of the json module's (every
    access line is one; bench/instructions.py). Non-ASCII stays readable; newlines, quotes
    and every other control character are escaped, so one record is always exactly one
    line, and so are the invisible characters a viewer would act on (`escape_invisible`).
    What orjson refuses (an `extra` integer past 64 bits) goes through the json module
    instead, rather than losing the line."""

    def __init__(self) -> None:
        super().__init__(rename_fields={"exc_info": "exception"})
        self._fallback = JsonFormatter(json_ensure_ascii=False)

    def jsonify_log_record(self, log_data: LogData) -> str:
        try:
            line = super().jsonify_log_record(log_data)
        except orjson.JSONEncodeError:
            line = self._fallback.jsonify_log_record(log_data)
        # isascii() reads a flag CPython keeps on every string: an ASCII line costs nothing.
        return line if line.isascii() else escape_invisible(line)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        created = datetime.fromtimestamp(record.created, tz=UTC)
        log_data["@timestamp"] = created.isoformat(timespec="milliseconds")
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["tracking_id"] = getattr(record, "tracking_id", current_tracking_id())
        if hasattr(record, "trace_id"):  # TRACING_ENABLED
            log_data["trace_id"] = record.trace_id
            log_data["span_id"] = getattr(record, "span_id", "-")
        log_data["loc"] = f"{record.filename}:{record.lineno}"
        log_data["func"] = record.funcName
        log_data["process"] = record.process
        log_data["message"] = record.message  # set by format() just before
        # Extras and the formatted exception, with the library's handling of odd types.
        super().add_fields(log_data, record, message_dict)


# Characters that change what a viewer shows or where it breaks a line, without being seen:
# the C1 controls (0x85 ends a line for some readers, 0x9b is a one-byte terminal CSI), the
# Unicode line and paragraph separators (line ends to JavaScript and str.splitlines()), and
# the bidirectional controls that reorder the text around them ("Trojan Source",
# CVE-2021-42574). JSON may hold them raw, so orjson writes them raw.
_INVISIBLE = r"\x80-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
_INVISIBLE_CHARS = re.compile(f"[{_INVISIBLE}]")
# The same, with the C0 controls and DEL, for text lines.
_CONTROLS = re.compile(f"[\\x00-\\x1f\\x7f{_INVISIBLE}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_invisible(line: str) -> str:
    """`line`, a JSON text, with each invisible character written as its JSON escape
    (`\\u2028`): it reads back the same, and a viewer shows it instead of acting on it."""
    return _INVISIBLE_CHARS.sub(lambda m: f"\\u{ord(m[0]):04x}", line)


def escape_controls(text: str) -> str:
    """`text` with every control and invisible character written as an escape (`\\n`, `\\x1b`,
    `\\u202e`), so that a client's path, query or header can neither start a forged line,
    drive a terminal nor reorder what a viewer shows."""
    return _CONTROLS.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    return _NAMED.get(match[0]) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


class TextLineFormatter(logging.Formatter):
    """Readable text, one line per record: control and invisible characters in the message
    are escaped. A traceback keeps its own line breaks, with the rest escaped in each line."""

    def __init__(self, traced: bool = False) -> None:
        super().__init__(TRACED_TEXT_FORMAT if traced else TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape_controls(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return "\n".join(map(escape_controls, super().formatException(ei).split("\n")))

    def formatStack(self, stack_info: str) -> str:
        return "\n".join(map(escape_controls, super().formatStack(stack_info).split("\n")))


def build_formatter(log_format: str, traced: bool = False) -> logging.Formatter:
    """Return the formatter for `log_format` ("json" or "text"); `traced` adds the trace
    id to text lines (JSON lines show whatever ids the filter stamped)."""
    if log_format == "json":
        return JsonLineFormatter()
    return TextLineFormatter(traced)


def configure_logging(settings: Settings) -> None:
    """Install the chassis's single stdout handler on the root logger (idempotent)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.name = HANDLER_NAME
    handler.setFormatter(build_formatter(settings.log_format, settings.tracing_enabled))
    handler.addFilter(record_filter(settings))
    root = logging.getLogger()
    for existing in [h for h in root.handlers if h.name == HANDLER_NAME]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(settings.log_level)


def access_fields(
    environ: dict[str, Any],
    status: int | None,
    sent: int | None,
    duration_ms: float,
    tracking_id: str,
) -> dict[str, Any]:
    """The fields of one access log line: the same for gunicorn's logger (chassis/serving/hooks.py)
    under every worker class, whatever the client sent."""
    return {
        "client": environ.get("REMOTE_ADDR"),
        "method": environ.get("REQUEST_METHOD"),
        "path": _text(environ.get("PATH_INFO", "")),
        "query": _text(environ.get("QUERY_STRING", "")),
        "status": status,
        "bytes": sent,
        "duration_ms": duration_ms,
        "user_agent": _text(environ.get("HTTP_USER_AGENT", "")),
        "referer": _text(environ.get("HTTP_REFERER", "")),
        "tracking_id": tracking_id,
    }


def _text(value: str) -> str:
    # WSGI hands over raw bytes as latin-1 characters; show what the client meant (UTF-8).
    return value.encode("latin-1", "replace").decode("utf-8", "replace")
