"""Tracing (TRACING_ENABLED): a server span per request continuing the caller's W3C trace,
its ids in every log line, started in workers only; and with tracing off, nothing at all.

The server tests run real gunicorn, sync and gevent, serving tests/apps/traced.py with an
exporter that writes each span as a JSON line the test reads back (tests/apps/spans.py), behind
the real batch span processor (its delay shortened by OTEL_BSP_SCHEDULE_DELAY).
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import re
import secrets
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.typing import ResponseReturnValue

from chassis.settings import Settings, SettingsError
from chassis.web.responses import ok
from harness.processes import Gunicorn, base_env, get, request, wait_until
from tests.apps.spans import read_spans
from tests.support.flask_app import AppFactory, LogReader

TRACED_APP = "tests.apps.traced:app"
HEX32 = re.compile(r"[0-9a-f]{32}")
log = logging.getLogger("tests.tracing")


def new_ids() -> tuple[str, str]:
    """A fresh caller's trace id and span id."""
    return secrets.token_hex(16), secrets.token_hex(8)


def traceparent(trace_id: str, span_id: str, flags: str = "01") -> str:
    """A W3C traceparent header value (version 00)."""
    return f"00-{trace_id}-{span_id}-{flags}"


def serve(directory: Path, worker_class: str, **env: str) -> Gunicorn:
    """Start tests/apps/traced.py under gunicorn.conf.py with one worker of `worker_class`,
    JSON logs, tracing on with the test exporter writing to `directory`/spans, and `env`."""
    spans = directory / "spans"
    spans.mkdir(exist_ok=True)
    values = {
        "GUNICORN_WORKER_CLASS": worker_class,
        "WEB_CONCURRENCY": "1",
        "LOG_FORMAT": "json",
        "DATABASE_URL": f"sqlite:///{directory / 'app.db'}",
        "TRACING_ENABLED": "true",
        "TRACING_EXPORTER": "tests.apps.spans:JsonLinesExporter",
        "TEST_SPANS_DIR": str(spans),
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        **env,
    }
    return Gunicorn(directory, base_env(**values), args=[TRACED_APP]).start()


def os_threads(pid: int) -> int:
    """How many OS threads process `pid` runs."""
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


@dataclass
class Traced:
    """A running traced server and where its spans land."""

    server: Gunicorn
    worker_class: str

    @property
    def spans_dir(self) -> Path:
        """Where the test exporter writes (`serve`)."""
        return self.server.log_dir / "spans"

    def spans(self) -> list[dict[str, Any]]:
        """Every span exported so far."""
        return read_spans(self.spans_dir)

    def span(self, match: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
        """The one exported span `match` accepts, waiting for the exporter (10 s at most)."""
        wait_until(
            lambda: any(map(match, self.spans())),
            10,
            lambda: f"no such span; exported: {self.spans()}\n{self.server.stderr()}",
        )
        [found] = [span for span in self.spans() if match(span)]
        return found

    def span_of_trace(self, trace_id: str) -> dict[str, Any]:
        """The server span of the request in trace `trace_id`."""
        return self.span(lambda span: span["trace_id"] == trace_id)

    def span_of_request(self, tracking_id: str) -> dict[str, Any]:
        """The server span of the request sent with `tracking_id`."""
        return self.span(lambda span: span["attributes"]["tracking_id"] == tracking_id)

    def lines(self, tracking_id: str) -> list[dict[str, Any]]:
        """The log lines of the request sent with `tracking_id` (the app's and the access line)."""
        return [line for line in self.server.json_lines() if line["tracking_id"] == tracking_id]


@pytest.fixture(scope="module", params=["sync", "gevent"])
def traced(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Traced]:
    """One traced server per worker class, shared by the module's tests (each test tells its
    requests apart by fresh trace and tracking ids)."""
    worker_class: str = request.param
    server = serve(tmp_path_factory.mktemp(f"traced-{worker_class}"), worker_class)
    yield Traced(server, worker_class)
    server.stop()


# --- A request's span ------------------------------------------------------------------


def test_traceparent_is_continued_by_a_server_span_for_the_route(traced: Traced) -> None:
    """The span joins the caller's trace as its child, is named for the route template, and
    records the method, path, status and the tracking id."""
    trace_id, caller = new_ids()
    headers = {"traceparent": traceparent(trace_id, caller), "X-Tracking-ID": "continue-1"}
    status, _, _ = get(traced.server.port, "/test/hello/ada", headers)
    assert status == 200
    span = traced.span_of_trace(trace_id)
    assert span["parent_id"] == caller
    assert span["kind"] == "SERVER"
    assert span["name"] == "GET /test/hello/<name>"
    assert span["attributes"] == {
        "http.request.method": "GET",
        "http.route": "/test/hello/<name>",
        "http.response.status_code": 200,
        "url.path": "/test/hello/ada",
        "url.scheme": "http",
        "tracking_id": "continue-1",
    }
    assert span["status"] == "UNSET"


def test_every_log_line_of_a_request_carries_its_trace_and_span_ids(traced: Traced) -> None:
    """The app's line and gunicorn's access line both carry the span's ids beside the
    tracking id."""
    trace_id, caller = new_ids()
    tracking_id = secrets.token_hex(8)
    headers = {"traceparent": traceparent(trace_id, caller), "X-Tracking-ID": tracking_id}
    get(traced.server.port, "/test/hello/grace", headers)
    span = traced.span_of_trace(trace_id)
    lines = traced.lines(tracking_id)
    assert [line["logger"] for line in lines] == ["tests.traced", "gunicorn.access"]
    assert {(line["trace_id"], line["span_id"]) for line in lines} == {(trace_id, span["span_id"])}


def test_request_without_traceparent_starts_a_new_trace(traced: Traced) -> None:
    """No caller's context: the span is a root of a fresh trace, and the logs carry it."""
    tracking_id = secrets.token_hex(8)
    get(traced.server.port, "/test/hello/root", {"X-Tracking-ID": tracking_id})
    span = traced.span_of_request(tracking_id)
    assert span["parent_id"] is None
    assert HEX32.fullmatch(span["trace_id"])
    assert span["trace_id"] != "0" * 32
    assert {line["trace_id"] for line in traced.lines(tracking_id)} == {span["trace_id"]}


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("00-{t}-{s}", id="no-flags"),
        pytest.param("ff-{t}-{s}-01", id="version-ff"),
        pytest.param("00-" + "0" * 32 + "-{s}-01", id="zero-trace-id"),
        pytest.param("00-{t}-" + "0" * 16 + "-01", id="zero-span-id"),
        pytest.param("00-{t}-{s}-01-extra", id="trailing-data"),
        pytest.param("00-{t}xx-{s}-01", id="not-hex"),
        pytest.param("00-{t}-{s}-01,00-{t}-{s}-01", id="two-values"),
    ],
)
def test_malformed_traceparent_starts_a_new_trace(traced: Traced, value: str) -> None:
    """A traceparent the W3C format refuses is ignored: a new root span, a new trace."""
    trace_id, caller = new_ids()
    tracking_id = secrets.token_hex(8)
    sent = value.format(t=trace_id, s=caller)
    get(traced.server.port, "/test/hello/x", {"traceparent": sent, "X-Tracking-ID": tracking_id})
    span = traced.span_of_request(tracking_id)
    assert span["parent_id"] is None
    assert span["trace_id"] != trace_id


def test_unsampled_traceparent_is_carried_but_not_recorded(traced: Traced) -> None:
    """A caller that did not sample its trace gets no span here, but the log lines keep its
    trace id (the SDK's default sampler follows the parent)."""
    trace_id, caller = new_ids()
    tracking_id = secrets.token_hex(8)
    headers = {"traceparent": traceparent(trace_id, caller, "00"), "X-Tracking-ID": tracking_id}
    get(traced.server.port, "/test/hello/quiet", headers)
    # A sampled request after it: once its span is exported, an earlier one would be too.
    later, _ = new_ids()
    get(traced.server.port, "/healthz", {"traceparent": traceparent(later, caller)})
    traced.span_of_trace(later)
    assert [span for span in traced.spans() if span["trace_id"] == trace_id] == []
    assert {line["trace_id"] for line in traced.lines(tracking_id)} == {trace_id}


def test_server_error_fails_the_span_naming_only_the_exception_type(traced: Traced) -> None:
    """An unhandled exception: status 500 and ERROR on the span, with an exception event
    holding the type and never the message."""
    trace_id, caller = new_ids()
    status, _, _ = get(
        traced.server.port, "/test/boom", {"traceparent": traceparent(trace_id, caller)}
    )
    assert status == 500
    span = traced.span_of_trace(trace_id)
    assert span["status"] == "ERROR"
    assert span["attributes"]["http.response.status_code"] == 500
    assert span["events"] == [{"name": "exception", "exception.type": "RuntimeError"}]
    assert "secret-detail-4711" not in json.dumps(span)


def test_client_error_leaves_the_span_unset_without_a_route(traced: Traced) -> None:
    """A 404 is the client's doing: the span's status stays unset, named for the method."""
    trace_id, caller = new_ids()
    status, _, _ = get(
        traced.server.port, "/nowhere", {"traceparent": traceparent(trace_id, caller)}
    )
    assert status == 404
    span = traced.span_of_trace(trace_id)
    assert (span["name"], span["status"]) == ("GET", "UNSET")
    assert "http.route" not in span["attributes"]


def test_made_up_method_does_not_name_the_span(traced: Traced) -> None:
    """A method outside HTTP's standard ones is recorded as _OTHER and the span is "HTTP", so
    clients cannot mint span names."""
    trace_id, caller = new_ids()
    headers = {"traceparent": traceparent(trace_id, caller)}
    status, _, _ = request(traced.server.port, "BREW", "/test/hello/pot", headers=headers)
    assert status == 405
    span = traced.span_of_trace(trace_id)
    assert span["name"] == "HTTP"
    assert span["attributes"]["http.request.method"] == "_OTHER"


# --- Propagation -----------------------------------------------------------------------


def test_outgoing_calls_carry_the_request_span_as_parent(traced: Traced) -> None:
    """OpenTelemetry's `propagate.inject` inside a request writes a traceparent in the
    caller's trace whose parent is this request's span."""
    trace_id, caller = new_ids()
    _, _, body = get(
        traced.server.port, "/test/outgoing", {"traceparent": traceparent(trace_id, caller)}
    )
    span = traced.span_of_trace(trace_id)
    headers = json.loads(body)["data"]["headers"]
    assert headers["traceparent"] == traceparent(trace_id, span["span_id"])


def test_background_work_carries_the_trace_only_with_the_request_context(traced: Traced) -> None:
    """A thread (a greenlet under gevent) starts with an empty context: its lines carry no
    trace id unless it was started with a copy of the request's context."""
    trace_id, caller = new_ids()
    get(traced.server.port, "/test/background", {"traceparent": traceparent(trace_id, caller)})
    span = traced.span_of_trace(trace_id)
    background = {
        line["how"]: (line["trace_id"], line["span_id"])
        for line in traced.server.json_lines()
        if line["message"] == "background"
    }
    assert background["copied"] == (trace_id, span["span_id"])
    assert background["plain"] == ("-", "-")


def test_concurrent_requests_keep_their_own_trace(traced: Traced) -> None:
    """Requests served at once (greenlets of one gevent worker) each log their own trace id
    and get a span in their own trace."""
    calls = {secrets.token_hex(8): new_ids() for _ in range(12)}

    def call(tracking_id: str) -> int:
        trace_id, caller = calls[tracking_id]
        headers = {"traceparent": traceparent(trace_id, caller), "X-Tracking-ID": tracking_id}
        return get(traced.server.port, f"/test/hello/{tracking_id}", headers)[0]

    with ThreadPoolExecutor(len(calls)) as pool:
        assert set(pool.map(call, calls)) == {200}
    spans = {tracking_id: traced.span_of_request(tracking_id) for tracking_id in calls}
    for tracking_id, (trace_id, caller) in calls.items():
        assert (spans[tracking_id]["trace_id"], spans[tracking_id]["parent_id"]) == (
            trace_id,
            caller,
        )
        assert {line["trace_id"] for line in traced.lines(tracking_id)} == {trace_id}
    if traced.worker_class == "gevent":
        # Otherwise this test would not have exercised greenlets switching mid-request.
        ends = sorted((span["start_ns"], span["end_ns"]) for span in spans.values())
        assert any(later[0] < earlier[1] for earlier, later in pairwise(ends))


def test_requests_on_one_keep_alive_connection_do_not_share_a_trace(traced: Traced) -> None:
    """A second request on the same connection without a traceparent starts its own trace:
    nothing of the first request's context stays behind."""
    trace_id, caller = new_ids()
    second = secrets.token_hex(8)
    conn = http.client.HTTPConnection("127.0.0.1", traced.server.port, timeout=10)
    try:
        conn.request(
            "GET", "/test/hello/first", headers={"traceparent": traceparent(trace_id, caller)}
        )
        first = conn.getresponse()
        first.read()
        conn.request("GET", "/test/hello/second", headers={"X-Tracking-ID": second})
        conn.getresponse().read()
    finally:
        conn.close()
    if traced.worker_class == "gevent":
        assert first.getheader("Connection") == "keep-alive"
    span = traced.span_of_request(second)
    assert span["parent_id"] is None
    assert span["trace_id"] != trace_id
    assert {line["trace_id"] for line in traced.lines(second)} == {span["trace_id"]}


# --- Processes -------------------------------------------------------------------------


def test_span_processor_runs_in_the_worker_only(traced: Traced) -> None:
    """The master runs one OS thread; the worker has the SDK's provider and its batch
    processor, a thread under sync and a greenlet under gevent (no OS thread of its own)."""
    _, _, body = get(traced.server.port, "/test/process")
    worker = json.loads(body)["data"]
    assert traced.server.proc is not None
    assert os_threads(traced.server.proc.pid) == 1
    assert worker["tracer_provider"] == "opentelemetry.sdk.trace.TracerProvider"
    assert "OtelBatchSpanRecordProcessor" in worker["threads"]
    if traced.worker_class == "gevent":
        # Patched threading: the processor is a greenlet, the worker one OS thread.
        assert worker["os_threads"] == 1
    else:
        # Every Python thread, the processor's included, is an OS thread.
        assert worker["os_threads"] == len(worker["threads"]) >= 2
    started = [
        line for line in traced.server.json_lines() if line["message"].startswith("tracing started")
    ]
    assert [line["process"] for line in started] == [worker["pid"]]


def test_preloaded_app_still_traces_only_in_workers(tmp_path: Path) -> None:
    """With GUNICORN_PRELOAD the app is built in the master, yet only each worker starts
    tracing: the master keeps one OS thread."""
    server = serve(tmp_path, "sync", GUNICORN_PRELOAD="true", WEB_CONCURRENCY="2")
    try:
        assert server.proc is not None
        assert "preload_app=True" in server.stderr()
        assert os_threads(server.proc.pid) == 1
        started = [
            line["process"]
            for line in server.json_lines()
            if line["message"].startswith("tracing started")
        ]
        assert len(started) == 2
        assert server.proc.pid not in started
    finally:
        server.stop()


@pytest.mark.parametrize("worker_class", ["sync", "gevent"])
def test_queued_spans_are_exported_when_a_worker_stops(tmp_path: Path, worker_class: str) -> None:
    """A span still waiting in the batch processor is exported on SIGTERM, before the worker
    exits."""
    server = serve(tmp_path, worker_class, OTEL_BSP_SCHEDULE_DELAY="600000")
    trace_id, caller = new_ids()
    try:
        get(server.port, "/test/hello/late", {"traceparent": traceparent(trace_id, caller)})
        assert read_spans(tmp_path / "spans") == []  # the processor waits ten minutes
    finally:
        assert server.stop() == 0
    assert [
        span["parent_id"] for span in read_spans(tmp_path / "spans") if span["trace_id"] == trace_id
    ] == [caller]


def test_console_exporter_writes_each_span_as_one_json_line(tmp_path: Path) -> None:
    """The default exporter: each span is one JSON object on a line of stdout, beside the
    log lines (OpenTelemetry's own span JSON, its ids written 0x...)."""
    server = serve(tmp_path, "sync", TRACING_EXPORTER="console")
    trace_id, caller = new_ids()
    try:
        get(server.port, "/test/hello/console", {"traceparent": traceparent(trace_id, caller)})

        def exported() -> list[dict[str, Any]]:
            lines = server.json_lines()  # fails on any line that is not one JSON object
            return [
                line for line in lines if line.get("context", {}).get("trace_id") == f"0x{trace_id}"
            ]

        wait_until(lambda: bool(exported()), 10, server.stdout)
    finally:
        server.stop()
    [span] = exported()
    assert (span["name"], span["kind"]) == ("GET /test/hello/<name>", "SpanKind.SERVER")
    assert span["parent_id"] == f"0x{caller}"


def test_unimportable_exporter_stops_the_server_naming_the_variable(tmp_path: Path) -> None:
    """A TRACING_EXPORTER that cannot be imported fails the worker's boot, and gunicorn stops
    instead of restarting it in a loop."""
    server = Gunicorn(
        tmp_path,
        base_env(
            WEB_CONCURRENCY="1",
            LOG_FORMAT="json",
            DATABASE_URL=f"sqlite:///{tmp_path / 'app.db'}",
            TRACING_ENABLED="true",
            TRACING_EXPORTER="tests.apps.nowhere:Exporter",
        ),
        args=[TRACED_APP],
    ).start(wait=False)
    assert server.proc is not None
    assert server.proc.wait(30) != 0
    assert "TRACING_EXPORTER: cannot import tests.apps.nowhere:Exporter" in server.stderr()


# --- Tracing off -----------------------------------------------------------------------


@pytest.mark.parametrize("worker_class", ["sync", "gevent"])
def test_tracing_off_loads_and_records_nothing(tmp_path: Path, worker_class: str) -> None:
    """Off by default: a traceparent is ignored, no span is exported, log lines have no
    trace id field, and the worker never imported OpenTelemetry nor started a thread."""
    server = serve(tmp_path, worker_class, TRACING_ENABLED="")
    trace_id, caller = new_ids()
    try:
        headers = {"traceparent": traceparent(trace_id, caller), "X-Tracking-ID": "untraced"}
        assert get(server.port, "/test/hello/off", headers)[0] == 200
        _, _, body = get(server.port, "/test/process")
    finally:
        server.stop()
    worker = json.loads(body)["data"]
    assert worker["opentelemetry_loaded"] == []
    assert worker["os_threads"] == 1
    assert list((tmp_path / "spans").iterdir()) == []
    lines = server.json_lines() + server.json_lines("stderr")
    assert [line for line in lines if "trace_id" in line or "span_id" in line] == []
    assert len([line for line in lines if line["tracking_id"] == "untraced"]) == 2


# --- Settings and log formats, in process ----------------------------------------------


def test_tracing_is_off_by_default() -> None:
    """An empty environment traces nothing; the exporter would be the console."""
    settings = Settings.from_env({})
    assert (settings.tracing_enabled, settings.tracing_exporter) == (False, "console")


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        pytest.param(
            {"TRACING_ENABLED": "maybe"}, "TRACING_ENABLED: must be one of", id="not-a-boolean"
        ),
        pytest.param(
            {"TRACING_EXPORTER": "otlp"}, "TRACING_EXPORTER: must be console or", id="a-bare-name"
        ),
        pytest.param(
            {"TRACING_EXPORTER": "a.b:"}, "TRACING_EXPORTER: must be console or", id="no-attribute"
        ),
        pytest.param(
            {"TRACING_EXPORTER": "a b:c"}, "TRACING_EXPORTER: must be console or", id="a-space"
        ),
    ],
)
def test_bad_tracing_setting_is_refused_naming_the_variable(
    environ: dict[str, str], message: str
) -> None:
    """Tracing's variables are validated at boot, with one line naming the variable."""
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(environ)
    assert str(raised.value).startswith(message)


def test_tracing_without_the_extra_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """TRACING_ENABLED where OpenTelemetry's SDK is not installed fails at boot, saying
    which extra to install, not with an ImportError in every worker."""
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk", None)
    with pytest.raises(SettingsError, match=r"^TRACING_ENABLED: needs the tracing extra"):
        Settings.from_env({"TRACING_ENABLED": "true"})


def test_log_lines_carry_the_callers_trace_before_the_process_traces(
    make_app: AppFactory, read_logs: LogReader
) -> None:
    """Built with tracing on but with no tracer provider yet (this test process never sets
    one), the app records nothing but its log lines still carry the caller's trace id."""
    app = make_app(tracing_enabled=True)
    add_logging_view(app)
    trace_id, caller = new_ids()
    read_logs()
    app.test_client().get("/logs", headers={"traceparent": traceparent(trace_id, caller)})
    [line] = [line for line in read_logs() if line["message"] == "in view"]
    assert (line["trace_id"], line["span_id"]) == (trace_id, caller)
    log.info("outside")
    assert [(line["trace_id"], line["span_id"]) for line in read_logs()] == [("-", "-")]


def test_text_lines_show_the_trace_id_beside_the_tracking_id(
    make_app: AppFactory, log_stream: io.StringIO
) -> None:
    """LOG_FORMAT=text with tracing: `[tracking-id trace-id]`, and `[- -]` outside a request."""
    app = make_app(tracing_enabled=True, log_format="text")
    add_logging_view(app)
    trace_id, caller = new_ids()
    headers = {"traceparent": traceparent(trace_id, caller), "X-Tracking-ID": "req-7"}
    app.test_client().get("/logs", headers=headers)
    log.info("outside")
    text = log_stream.getvalue()
    assert f"[req-7 {trace_id}] tests.tracing: in view" in text
    assert "[- -] tests.tracing: outside" in text


def test_tracing_off_adds_no_trace_fields(make_app: AppFactory, read_logs: LogReader) -> None:
    """Without TRACING_ENABLED a traceparent changes nothing in the log lines."""
    app = make_app()
    add_logging_view(app)
    trace_id, caller = new_ids()
    read_logs()
    app.test_client().get("/logs", headers={"traceparent": traceparent(trace_id, caller)})
    [line] = [line for line in read_logs() if line["message"] == "in view"]
    assert "trace_id" not in line
    assert "span_id" not in line


def add_logging_view(app: Flask) -> None:
    """Add GET /logs, which writes the line "in view"."""

    def view() -> ResponseReturnValue:
        log.info("in view")
        return ok()

    app.add_url_rule("/logs", "logs", view)
