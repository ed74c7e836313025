"""schemathesis against the service on a real gunicorn, once on SQLite and once on
PostgreSQL, from /openapi.json: every operation, then stateful scenarios along the
document's links (create an item, then read, update and delete that same item).

Checks: every schemathesis check (no server error; status codes, content type, headers and
bodies as documented; schema-valid input accepted and invalid input refused), and the kit's
own (tests/schemathesis_hooks.py): every answer is the envelope, with the tracking id in
the header and the body. Bounded (MAX_EXAMPLES per operation and phase, RUN_TIMEOUT_S),
seeded (SEED, one worker, no example database): a failure replays with the same command.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, cast

import pytest
import requests
from schemathesis import Response

from harness.postgres import PostgresServer
from harness.processes import ROOT, Gunicorn, base_env, get
from tests.schemathesis_hooks import envelope_with_tracking_id
from tests.support.flask_app import migrate

SEED = 13
MAX_EXAMPLES = 80
# Each run takes about 15 s on a 2-core machine; a run that hangs fails here instead.
RUN_TIMEOUT_S = 120


@pytest.fixture(params=["sqlite", "postgres"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    """The service (app.wsgi:app) under gunicorn, two sync workers, on a fresh database of
    the backend, migrated as `make migrate` does."""
    if request.param == "postgres":
        server: PostgresServer = request.getfixturevalue("postgres")
        url = server.create_database(f"schemathesis_{tmp_path.name[-20:].replace('-', '_')}")
    else:
        url = f"sqlite:///{tmp_path / 'api.db'}"
    migrate(url)
    logs = tmp_path / "gunicorn"
    logs.mkdir()
    env = base_env(DATABASE_URL=url, WEB_CONCURRENCY="2", LOG_FORMAT="json")
    gunicorn = Gunicorn(logs, env).start()
    yield gunicorn
    gunicorn.stop()


def test_schemathesis_finds_nothing(served: Gunicorn, tmp_path: Path) -> None:
    """Every phase passes every check, and the stateful phase follows the links."""
    command = [
        sys.executable, "-m", "schemathesis.cli", "run",
        f"http://127.0.0.1:{served.port}/openapi.json",
        "--checks", "all",
        "--seed", str(SEED),
        "--max-examples", str(MAX_EXAMPLES),
        "--workers", "1",
        "--generation-database", "none",
        "--request-timeout", "10",
        "--no-color",
        "--report", "junit",
        "--report-junit-path", str(tmp_path / "schemathesis.xml"),
    ]  # fmt: skip
    env = base_env(SCHEMATHESIS_HOOKS="tests.schemathesis_hooks", PYTHONPATH=str(ROOT))
    run = subprocess.run(
        command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S
    )
    report = run.stdout + run.stderr
    print(report)  # the operations, phases and counts, shown with -s or on failure
    assert run.returncode == 0, report
    assert "No issues found" in report
    # With a resource (the example's items), the stateful phase follows the document's links;
    # the kit's own endpoints alone have none to follow.
    document = json.loads(get(served.port, "/openapi.json")[2])
    if any("links" in answer for answer in answers_of(document)):
        stateful = re.search(
            r"Stateful.*?Scenarios:\s+(\d+).*?Links:\s+(\d+) covered", report, re.S
        )
        assert stateful is not None, report
        assert (int(stateful[1]) > 0, int(stateful[2]) > 0) == (True, True), report
    assert served.proc is not None
    assert served.proc.poll() is None, "gunicorn died during the run"
    errors = [line for line in served.json_lines("stderr") if line.get("level") == "ERROR"]
    assert errors == []


def answers_of(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Every answer the document gives inline (the shared ones carry no links)."""
    return [
        answer
        for methods in document["paths"].values()
        for operation in methods.values()
        for answer in operation["responses"].values()
    ]


def answer(
    status: int, body: bytes, headers: dict[str, list[str]], method: str = "GET"
) -> Response:
    """A response as schemathesis hands it to a check."""
    sent = requests.Request(method, "http://127.0.0.1/x").prepare()
    return Response(status, headers, body, request=sent, elapsed=0.0, verify=True)


ENVELOPE = {"code": 200, "msg": "ok", "data": None, "tracking_id": "abc"}


@pytest.mark.parametrize(
    ("response", "failure"),
    [
        pytest.param(answer(200, json.dumps(ENVELOPE).encode(), {"X-Tracking-ID": ["abc"]}), None, id="envelope"),
        pytest.param(answer(204, b"", {"X-Tracking-ID": ["abc"]}, "OPTIONS"), None, id="options"),
        pytest.param(answer(200, json.dumps(ENVELOPE).encode(), {}), "no tracking id header", id="no-header"),
        pytest.param(answer(200, json.dumps(ENVELOPE).encode(), {"X-Tracking-ID": ["abd"]}), "body 'abc', header 'abd'", id="other-id"),
        pytest.param(answer(201, json.dumps(ENVELOPE).encode(), {"X-Tracking-ID": ["abc"]}), "code 200, status 201", id="code-not-status"),
        pytest.param(answer(200, b'{"data": 1}', {"X-Tracking-ID": ["abc"]}), "not the envelope's keys", id="not-envelope"),
        pytest.param(answer(200, b"", {"X-Tracking-ID": ["abc"]}), "GET answered 200 with no body", id="empty"),
    ],
)  # fmt: skip
def test_the_envelope_check_fails_what_is_not_the_envelope(
    response: Response, failure: str | None
) -> None:
    """The kit's check passes the envelope (and OPTIONS's empty 204) and fails the rest."""
    if failure is None:
        assert envelope_with_tracking_id(cast(Any, None), response, cast(Any, None))
    else:
        with pytest.raises(AssertionError, match=re.escape(failure)):
            envelope_with_tracking_id(cast(Any, None), response, cast(Any, None))
