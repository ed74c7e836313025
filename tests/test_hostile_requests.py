"""Hostile requests against real gunicorn, under sync and gevent workers: each gets the JSON
envelope (or a bodiless 204 for OPTIONS) with a tracking id, never HTML, a redirect or a
5xx, and nothing is logged as an error."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from harness.apps import records
from harness.processes import Gunicorn, base_env
from harness.processes import request as send

SLEEPY = "harness.apps.sleepy:app"


@pytest.fixture(scope="module", params=["sync", "gevent"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gunicorn]:
    """The test app (the kit's app plus harness/apps/records.py) under gunicorn.conf.py."""
    directory = tmp_path_factory.mktemp(f"hostile-{request.param}")
    database_url = f"sqlite:///{directory / 'app.db'}"
    records.create_tables(database_url)
    env = base_env(
        GUNICORN_WORKER_CLASS=request.param, WEB_CONCURRENCY="1", LOG_FORMAT="json",
        DATABASE_URL=database_url,
    )  # fmt: skip
    server = Gunicorn(directory, env, args=[SLEEPY]).start()
    yield server
    server.stop()


def envelope(status: int, headers: dict[str, str], body: bytes) -> dict[str, object]:
    """The JSON envelope of an answer, checked to be one, with its tracking id."""
    assert headers["Content-Type"] == "application/json", body
    answer: dict[str, object] = json.loads(body)
    assert answer["code"] == status
    assert answer["tracking_id"] == headers["X-Tracking-ID"]
    return answer


def no_errors_logged(server: Gunicorn) -> None:
    """Nothing at ERROR and no traceback in the server's log."""
    log = server.stderr() + server.stdout()
    assert "Traceback" not in log
    assert all(line["level"] != "ERROR" for line in server.json_lines("stderr"))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"[" * 5000, id="5000-open-brackets"),
        pytest.param(b'{"a":' * 5000 + b"1" + b"}" * 5000, id="5000-nested-objects"),
    ],
)
def test_deeply_nested_json_is_a_400(server: Gunicorn, body: bytes) -> None:
    """A body nested past the parser's recursion gets the 400 envelope, not a 500."""
    status, headers, answer = send(server.port, "POST", "/test/records", body)
    assert status == 400
    assert envelope(status, headers, answer)["msg"] == "request body is nested too deeply"
    no_errors_logged(server)


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/test//records", id="doubled-slash"),
        pytest.param("/test/records//", id="trailing-doubled-slash"),
    ],
)
def test_doubled_slashes_are_a_404_not_a_redirect(server: Gunicorn, path: str) -> None:
    """werkzeug would answer 308 with HTML and a Location built from X-Forwarded-Host."""
    headers_sent = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}
    status, headers, answer = send(server.port, "GET", path, headers=headers_sent)
    assert status == 404
    assert "Location" not in headers
    assert envelope(status, headers, answer)["msg"] == "not found"


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/healthz/", id="trailing-slash"),
        # werkzeug matches with the leading slashes stripped.
        pytest.param("//healthz", id="leading-doubled-slash"),
    ],
)
def test_extra_slashes_at_either_end_reach_the_same_route(server: Gunicorn, path: str) -> None:
    """`/healthz/` and `//healthz` are `/healthz`, answered directly, never redirected."""
    status, headers, answer = send(server.port, "GET", path)
    assert status == 200
    assert "Location" not in headers
    envelope(status, headers, answer)


def test_options_is_a_204_with_allow_and_no_body(server: Gunicorn) -> None:
    """OPTIONS answers which methods the URL takes, with no body and no content type."""
    status, headers, answer = send(server.port, "OPTIONS", "/test/records")
    assert (status, answer) == (204, b"")
    assert set(headers["Allow"].split(", ")) == {"GET", "HEAD", "POST", "OPTIONS"}
    assert "Content-Type" not in headers
    assert headers["X-Tracking-ID"]


@pytest.fixture(scope="module", params=["sync", "gevent"])
def text_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gunicorn]:
    """The test app with LOG_FORMAT=text, the development format."""
    directory = tmp_path_factory.mktemp(f"text-{request.param}")
    env = base_env(
        GUNICORN_WORKER_CLASS=request.param, WEB_CONCURRENCY="1", LOG_FORMAT="text",
        DATABASE_URL=f"sqlite:///{directory / 'app.db'}",
    )  # fmt: skip
    server = Gunicorn(directory, env, args=[SLEEPY]).start()
    yield server
    server.stop()


def test_text_logs_escape_control_characters_from_the_client(text_server: Gunicorn) -> None:
    """A path and query carrying a newline, a carriage return, a terminal escape, U+2028 (a
    line end to some viewers) and U+202E (right-to-left override, which shows `exe.txt` for
    `txt.exe`) give one access line in which each is written as an escape. (gunicorn itself
    refuses control characters in header values with its 400.)"""
    forged = "/x%0a2026-01-01%2000:00:00,000%20ERROR%20forged%0d%1b%5B31m%E2%80%A8%E2%80%AEtxt.exe"
    status, _, _ = send(text_server.port, "GET", f"{forged}?q=%0aline%1b")
    assert status == 404
    text_server.stop()
    lines = text_server.stdout().splitlines()
    (access,) = [line for line in lines if "gunicorn.access" in line and "/x" in line]
    assert "/x\\n2026-01-01 00:00:00,000 ERROR forged\\r\\x1b[31m\\u2028\\u202etxt.exe" in access
    assert not any(line.startswith("2026-01-01 00:00:00,000 ERROR forged") for line in lines)
    output = text_server.stdout() + text_server.stderr()
    assert [char for char in "\x1b\u2028\u202e" if char in output] == []
