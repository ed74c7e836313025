"""Reading the metrics in tests: a scrape of the metrics listener, or the files a stopped
server left, as {(sample name, labels): value}."""

from __future__ import annotations

import time
from pathlib import Path

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from chassis.observability.metric_files import collecting_registry
from harness.processes import get

# One time series: its sample name and its labels, sorted.
Series = tuple[str, tuple[tuple[str, str], ...]]
# Metric types whose samples must never go down (gauges may).
MONOTONIC = frozenset({"counter", "histogram", "summary"})


def parse(text: str, types: frozenset[str] | None = None) -> dict[Series, float]:
    """Every sample of an exposition (of metrics of `types` only, when given)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        if types is None or family.type in types
        for sample in family.samples
    }


def scrape_text(port: int) -> str:
    """GET /metrics from the metrics listener on 127.0.0.1:`port`; fails unless 200."""
    status, _, body = get(port, "/metrics")
    assert status == 200, body
    return body.decode()


def scrape(port: int, types: frozenset[str] | None = None) -> dict[Series, float]:
    """The samples the metrics listener on `port` answers with."""
    return parse(scrape_text(port), types)


def scrape_answered(
    port: int, types: frozenset[str] | None = None, timeout: float = 5.0
) -> dict[Series, float]:
    """The samples once no request is in flight (for up to `timeout` seconds).

    A request is counted when the server closes its response, an instant after the client
    has read it, so a scrape right after the last answer may miss it."""
    deadline = time.monotonic() + timeout
    while value(scrape(port), "http_requests_in_flight") and time.monotonic() < deadline:
        time.sleep(0.02)
    return scrape(port, types)


def read_files(directory: Path) -> dict[Series, float]:
    """The samples in a metrics directory, read as a scrape would read them."""
    return parse(generate_latest(collecting_registry(directory)).decode())


def value(samples: dict[Series, float], name: str, **labels: str) -> float:
    """The one sample `name` with exactly `labels` (0 when absent)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def total(samples: dict[Series, float], name: str, **labels: str) -> float:
    """The sum of the samples `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, series), v in samples.items() if n == name and wanted <= set(series))
