"""deploy/grafana/kit-dashboard.json: a dashboard Grafana can import, whose every query asks
for metrics, and groups by labels, that a real server's /metrics has.

The server is the test app under gunicorn with a job scheduled every second, so that the
scheduler's metrics exist too; it listens on 127.0.0.1 and its database is a SQLite file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from harness.processes import ROOT, SLEEPY, Gunicorn, base_env, free_port, get, wait_until
from tests.support.flask_app import migrate
from tests.support.scrape import parse, scrape_text, total

DASHBOARD = ROOT / "deploy" / "grafana" / "kit-dashboard.json"
# Labels Prometheus itself puts on every series (the target's), and histograms' bucket bound.
TARGET_LABELS = {"job", "instance", "le"}
# PromQL words that look like metric names once functions (followed by "(") are left out.
KEYWORDS = {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}


def queries() -> list[str]:
    """Every PromQL expression of every panel."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects: identifiers that are not functions,
    keywords, label names (in {} or by/without ()) or durations (in [])."""
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", expr)
    bare = re.sub(r"\b(?:by|without|on|ignoring)\s*\([^)]*\)", "", bare)
    found = set(re.findall(r"\b([A-Za-z_:][A-Za-z0-9_:]*)\b(?!\s*\()", bare))
    return found - KEYWORDS


def grouping_labels(expr: str) -> set[str]:
    """The labels an expression groups by."""
    clauses = re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr)
    return {label.strip() for clause in clauses for label in clause.split(",") if label.strip()}


@pytest.fixture(scope="module")
def exposition(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """/metrics of a server that has answered a request and run a scheduled job."""
    workdir = tmp_path_factory.mktemp("grafana")
    url = f"sqlite:///{workdir / 'app.db'}"
    migrate(url)
    metrics_port = free_port()
    env = base_env(
        WEB_CONCURRENCY="1",
        LOG_FORMAT="json",
        DATABASE_URL=url,
        METRICS_BIND=f"127.0.0.1:{metrics_port}",
        SCHEDULER_ENABLED="true",
        SCHEDULER_JOBS="tests.apps.jobs:ticks",
        JOB_EVENTS=str(workdir / "events.jsonl"),
    )
    server = Gunicorn(workdir, env, args=[SLEEPY]).start()
    try:
        assert get(server.port, "/test/sleep?s=0")[0] == 200
        wait_until(
            lambda: total(parse(scrape_text(metrics_port)), "scheduler_runs_total") >= 1,
            15,
            lambda: f"no job run counted:\n{server.stderr()}",
        )
        yield scrape_text(metrics_port)
    finally:
        server.stop()


def test_dashboard_is_an_importable_grafana_dashboard() -> None:
    """A dashboard with a title and a stable uid, whose panels all read the data source
    chosen at import (the `datasource` variable), with at least one query each."""
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "kit-service"
    assert dashboard["title"].startswith("kit")
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        assert panel["targets"], panel["title"]


def test_every_metric_the_dashboard_queries_is_in_metrics(exposition: str) -> None:
    """Each metric name in a query is a sample of the live /metrics output."""
    samples = {
        sample.name
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }
    queried = {name: expr for expr in queries() for name in metric_names(expr)}
    assert len(queried) >= 9
    missing = {name: expr for name, expr in queried.items() if name not in samples}
    assert missing == {}


def test_every_label_the_dashboard_groups_by_is_on_its_metrics(exposition: str) -> None:
    """`by (...)` names only labels the metrics carry, or ones Prometheus adds."""
    labels = {
        label
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
        for label in sample.labels
    }
    grouped = {label for expr in queries() for label in grouping_labels(expr)}
    assert grouped - labels - TARGET_LABELS == set()
    assert {"route", "status_class", "job_name", "outcome"} <= grouped


def test_metric_names_are_read_from_promql() -> None:
    """The reader above finds names, not functions, labels or durations."""
    expr = (
        "histogram_quantile(0.95, sum by (le, route) "
        '(rate(http_request_duration_seconds_bucket{job=~"$job", route="/x"}[$__rate_interval])))'
        " / sum(up)"
    )
    assert metric_names(expr) == {"http_request_duration_seconds_bucket", "up"}
    assert grouping_labels(expr) == {"le", "route"}


def test_dashboard_file_is_formatted_json() -> None:
    """Two-space JSON with a final newline, as Grafana exports it: diffs stay readable."""
    text = DASHBOARD.read_text()
    assert text == json.dumps(json.loads(text), indent=2) + "\n"
