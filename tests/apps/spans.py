"""A span exporter for the tracing tests: each finished span as one JSON line in a file of
this process's own, `$TEST_SPANS_DIR/<pid>.jsonl`, which the test reads back.

The server under test is told to use it with `TRACING_EXPORTER=tests.apps.spans:
JsonLinesExporter`; the shipped kit never names it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.trace import format_span_id, format_trace_id


def describe(span: ReadableSpan) -> dict[str, Any]:
    """What the tests check of a span, as plain JSON values."""
    assert span.context is not None
    return {
        "name": span.name,
        "kind": span.kind.name,
        "trace_id": format_trace_id(span.context.trace_id),
        "span_id": format_span_id(span.context.span_id),
        "parent_id": format_span_id(span.parent.span_id) if span.parent else None,
        "attributes": dict(span.attributes or {}),
        "status": span.status.status_code.name,
        "status_description": span.status.description,
        "events": [{"name": e.name, **dict(e.attributes or {})} for e in span.events],
        "start_ns": span.start_time,
        "end_ns": span.end_time,
        "pid": os.getpid(),
    }


class JsonLinesExporter(SpanExporter):
    """Append each exported span to `$TEST_SPANS_DIR/<pid>.jsonl`, one JSON object a line."""

    def __init__(self) -> None:
        self.path = Path(os.environ["TEST_SPANS_DIR"]) / f"{os.getpid()}.jsonl"

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with self.path.open("a") as out:
            out.write("".join(json.dumps(describe(span)) + "\n" for span in spans))
        return SpanExportResult.SUCCESS


def read_spans(directory: Path) -> list[dict[str, Any]]:
    """Every span the server's processes exported to `directory` so far."""
    return [
        json.loads(line)
        for path in sorted(directory.glob("*.jsonl"))
        # The last piece is "" after a complete line, or a line still being written.
        for line in path.read_text().split("\n")[:-1]
    ]
