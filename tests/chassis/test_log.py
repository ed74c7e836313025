"""Every log record is one JSON line stamped with the tracking id, whoever logged it."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from flask import Flask, current_app
from flask.testing import FlaskClient
from flask.typing import ResponseReturnValue

from chassis.observability.log import build_formatter
from chassis.observability.tracking import NO_TRACKING_ID, tracking_scope
from chassis.web.responses import ok
from harness.processes import ROOT
from tests.support.flask_app import AppFactory, LogReader

log = logging.getLogger("some.module")
# What no log line may carry raw, in either format: the C1 controls, the line and paragraph
# separators, and the bidirectional controls that reorder what a viewer shows.
INVISIBLE = "".join(map(chr, range(0x80, 0xA0))) + (
    "\u2028\u2029\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c"
)


def forget(log_stream: io.StringIO) -> None:
    """Discard what the handler wrote so far (the boot warning about the development key)."""
    log_stream.seek(0)
    log_stream.truncate()


@pytest.fixture
def app(make_app: AppFactory, log_stream: io.StringIO) -> Flask:
    """The suite's app, with nothing logged yet."""
    app = make_app()
    forget(log_stream)
    return app


def raw_lines(log_stream: io.StringIO) -> list[str]:
    """Split what the handler wrote on "\\n" only, the way log shippers split a stream."""
    return log_stream.getvalue().removesuffix("\n").split("\n")


def test_record_outside_a_request_carries_the_placeholder_id(
    app: Flask, read_logs: LogReader
) -> None:
    """A record from startup, the CLI or a job gets tracking_id "-" instead of failing."""
    log.info("outside")
    [record] = read_logs()
    assert record["tracking_id"] == NO_TRACKING_ID


def test_text_format_outside_a_request_shows_the_placeholder_id(
    make_app: AppFactory, log_stream: io.StringIO
) -> None:
    """The text formatter also finds a tracking id on a record from outside a request."""
    make_app(log_format="text")
    forget(log_stream)
    log.warning("outside")
    assert "[-] some.module: outside" in log_stream.getvalue()


@pytest.mark.parametrize(
    "message",
    [
        pytest.param('say "hi"', id="quotes"),
        pytest.param("C:\\path\\to", id="backslashes"),
        pytest.param("first\nsecond", id="newline"),
        pytest.param("forged\r\n{}", id="crlf"),
        pytest.param("a\tb", id="tab"),
        pytest.param("café ✓ 日本", id="non-ascii"),
        pytest.param("nul\x00here", id="nul"),
        # JSON leaves these raw; they end a line for str.splitlines() but not for a shipper.
        pytest.param("line\u2028separator", id="unicode-line-separator"),
        pytest.param("next\x85line", id="c1-next-line"),
    ],
)
def test_any_message_is_one_json_line(app: Flask, log_stream: io.StringIO, message: str) -> None:
    """Whatever the message holds, the record is one line that parses back to it exactly."""
    log.info(message)
    [line] = raw_lines(log_stream)
    assert json.loads(line)["message"] == message


@pytest.mark.parametrize(
    "extra",
    [
        pytest.param({}, id="orjson"),
        pytest.param({"big": 2**70}, id="json-module"),
    ],
)
def test_json_lines_escape_invisible_characters(
    app: Flask, log_stream: io.StringIO, extra: dict[str, int]
) -> None:
    """Each invisible character, in the message or an extra field, is a \\u escape in the
    raw line, whichever library wrote it, and parses back to itself."""
    message = f"report{INVISIBLE}.txt"
    log.info(message, extra={"agent": "gpj.\u202eexe", **extra})
    [line] = raw_lines(log_stream)
    assert [f"U+{ord(char):04X}" for char in INVISIBLE if char in line] == []
    assert '"gpj.\\u202eexe"' in line
    assert "report\\u0080\\u0081" in line
    record = json.loads(line)
    assert (record["message"], record["agent"]) == (message, "gpj.\u202eexe")


def test_non_ascii_is_written_unescaped(app: Flask, log_stream: io.StringIO) -> None:
    """Non-ASCII text stays readable in the raw line, not \\u-escaped."""
    log.info("café ✓ 日本")
    assert "café ✓ 日本" in log_stream.getvalue()


def test_record_carries_the_documented_fields(app: Flask, read_logs: LogReader) -> None:
    """A JSON line holds the timestamp, level, logger, tracking id, location and process."""
    log.info("fields")
    [record] = read_logs()
    assert set(record) == {
        "@timestamp",
        "level",
        "logger",
        "tracking_id",
        "loc",
        "func",
        "message",
        "process",
    }
    timestamp = datetime.fromisoformat(record["@timestamp"])
    assert timestamp.tzinfo is not None
    assert re.search(r"T\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d$", record["@timestamp"])
    assert record["level"] == "INFO"
    assert record["logger"] == "some.module"
    assert record["tracking_id"] == NO_TRACKING_ID
    assert re.fullmatch(r"[\w.]+\.py:\d+", record["loc"])
    assert record["loc"].startswith("test_log.py:")
    assert record["func"] == "test_record_carries_the_documented_fields"
    assert record["message"] == "fields"
    assert record["process"] == os.getpid()


def test_exception_is_logged_with_its_traceback_on_one_line(
    app: Flask, log_stream: io.StringIO
) -> None:
    """log.exception() adds an "exception" field holding the traceback text."""
    try:
        raise ValueError("boom-4711")
    except ValueError:
        log.exception("failed")
    [line] = raw_lines(log_stream)
    exception = json.loads(line)["exception"]
    assert exception.startswith("Traceback (most recent call last):")
    assert "ValueError: boom-4711" in exception


def test_extra_fields_are_written(app: Flask, read_logs: LogReader) -> None:
    """Fields passed with extra={...} appear in the JSON line."""
    log.info("with extra", extra={"user": "x"})
    [record] = read_logs()
    assert record["user"] == "x"


def test_a_value_orjson_refuses_is_still_written(app: Flask, read_logs: LogReader) -> None:
    """An integer past 64 bits, which orjson refuses, is written by the json module: the
    line is kept, whole and exact."""
    log.info("big", extra={"big": 2**70})
    [record] = read_logs()
    assert record["big"] == 2**70
    assert record["message"] == "big"


def test_every_logger_carries_the_request_tracking_id(
    app: Flask, client: FlaskClient, read_logs: LogReader
) -> None:
    """Flask's, werkzeug's and the app's own loggers all go through the one handler."""

    @app.get("/log")
    def write_logs() -> ResponseReturnValue:
        current_app.logger.info("from flask")
        logging.getLogger("werkzeug").info("from werkzeug")
        logging.getLogger("some.module").info("from module")
        return ok()

    client.get("/log", headers={"X-Tracking-ID": "req-42"})
    records = [(r["logger"], r["tracking_id"]) for r in read_logs()]
    assert records == [("app", "req-42"), ("werkzeug", "req-42"), ("some.module", "req-42")]


def test_tracking_scope_stamps_its_records_and_then_restores(
    app: Flask, read_logs: LogReader
) -> None:
    """Records inside tracking_scope("job-1") carry job-1; records after it carry "-"."""
    with tracking_scope("job-1"):
        log.info("inside")
    log.info("after")
    assert [r["tracking_id"] for r in read_logs()] == ["job-1", NO_TRACKING_ID]


def test_building_the_app_twice_keeps_one_handler(
    make_app: AppFactory, log_stream: io.StringIO
) -> None:
    """A second create_app() replaces the handler, so one record is still one line."""
    make_app()
    make_app()
    forget(log_stream)
    log.info("once")
    assert len(raw_lines(log_stream)) == 1


def test_log_level_setting_is_applied(
    make_app: AppFactory, log_stream: io.StringIO, read_logs: LogReader
) -> None:
    """With log_level="WARNING", info records are dropped and warnings are written."""
    make_app(log_level="WARNING")
    forget(log_stream)
    log.info("dropped")
    log.warning("kept")
    assert [r["message"] for r in read_logs()] == ["kept"]


def test_flask_adds_no_handler_of_its_own(tmp_path: Path) -> None:
    """In a fresh interpreter (no pytest handlers), the root handler is the only one."""
    code = (
        "import logging; from app import create_app; from chassis.settings import Settings\n"
        f"app = create_app(Settings(app_env='test', database_url='sqlite:///{tmp_path}/a.db'))\n"
        "print(len(app.logger.handlers), len(logging.getLogger().handlers))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stdout.splitlines()[-1] == "0 1"


def test_text_lines_escape_control_characters_but_tracebacks_keep_their_lines() -> None:
    """A message with a newline, a carriage return and terminal escapes stays one line with
    each written as an escape; a traceback keeps its line breaks, its controls escaped."""
    formatter = build_formatter("text")
    record = logging.LogRecord(
        "app", logging.WARNING, "x.py", 1, "item %s", ("a\nb\r\x1b[2J\x9b\x00",), None
    )
    record.tracking_id = "t-1"
    line = formatter.format(record)
    assert "\n" not in line
    assert line.endswith("app: item a\\nb\\r\\x1b[2J\\x9b\\x00")
    try:
        raise ValueError("bad\x1b[31m")
    except ValueError:
        record.exc_info = sys.exc_info()
    lines = formatter.format(record).split("\n")
    assert lines[-1] == "ValueError: bad\\x1b[31m"
    assert lines[1] == "Traceback (most recent call last):"


def test_text_lines_escape_invisible_characters() -> None:
    """Each invisible character is an escape in a text line too, as C0 controls are: `\\x85`
    below U+0100, `\\u2028` above; other non-ASCII text stays readable."""
    formatter = build_formatter("text")
    record = logging.LogRecord(
        "app", logging.WARNING, "x.py", 1, "file %s", (f"café{INVISIBLE}",), None
    )
    record.tracking_id = "t-1"
    line = formatter.format(record)
    assert [f"U+{ord(char):04X}" for char in INVISIBLE if char in line] == []
    assert "app: file café\\x80\\x81" in line
    assert line.endswith(
        "\\x9f\\u2028\\u2029\\u202a\\u202b\\u202c\\u202d\\u202e"
        "\\u2066\\u2067\\u2068\\u2069\\u200e\\u200f\\u061c"
    )
