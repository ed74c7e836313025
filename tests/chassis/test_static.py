"""Files served by the app itself (Flask's static route, or a view's `send_file`), as they are
when gunicorn answers without nginx in front: whole, by range, or not modified as werkzeug
serves them, and a failed precondition or an unsatisfiable range as the error envelope,
never with the file's bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask, send_file
from flask.testing import FlaskClient
from flask.typing import ResponseReturnValue

HEADER = "X-Tracking-ID"
CONTENT = b"User-agent: *\nDisallow: /api/\n"


@pytest.fixture
def files_client(app: Flask, tmp_path: Path) -> FlaskClient:
    """The app serving `tmp_path` at /static/ and its file `robots.txt` from a view too."""
    (tmp_path / "robots.txt").write_bytes(CONTENT)
    app.static_folder = tmp_path

    @app.get("/download")
    def download() -> ResponseReturnValue:
        return send_file(tmp_path / "robots.txt", conditional=True)

    return app.test_client()


# Both ways a file leaves the app: the static route and a view of the service's own.
PATHS = [
    pytest.param("/static/robots.txt", id="static"),
    pytest.param("/download", id="send_file"),
]


@pytest.mark.parametrize("path", PATHS)
def test_a_file_is_served_whole_with_its_etag(files_client: FlaskClient, path: str) -> None:
    """A plain GET answers 200 with the file, its ETag and byte ranges offered."""
    response = files_client.get(path)
    assert (response.status_code, response.data) == (200, CONTENT)
    assert response.headers["ETag"]
    assert response.headers["Accept-Ranges"] == "bytes"


@pytest.mark.parametrize("path", PATHS)
def test_a_satisfiable_range_is_a_206_with_those_bytes(
    files_client: FlaskClient, path: str
) -> None:
    """`Range: bytes=0-9` answers 206 with the first ten bytes and their Content-Range."""
    response = files_client.get(path, headers={"Range": "bytes=0-9"})
    assert (response.status_code, response.data) == (206, CONTENT[:10])
    assert response.headers["Content-Range"] == f"bytes 0-9/{len(CONTENT)}"


@pytest.mark.parametrize("path", PATHS)
def test_a_matching_if_none_match_is_a_304_without_a_body(
    files_client: FlaskClient, path: str
) -> None:
    """The file's own ETag in `If-None-Match` answers 304 with an empty body."""
    etag = files_client.get(path).headers["ETag"]
    response = files_client.get(path, headers={"If-None-Match": etag})
    assert (response.status_code, response.data) == (304, b"")


@pytest.mark.parametrize("path", PATHS)
def test_a_matching_if_match_is_the_file(files_client: FlaskClient, path: str) -> None:
    """The file's own ETag in `If-Match` answers 200 with the file: only a failed one is 412."""
    etag = files_client.get(path).headers["ETag"]
    response = files_client.get(path, headers={"If-Match": etag})
    assert (response.status_code, response.data) == (200, CONTENT)


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("headers", "status", "msg"),
    [
        pytest.param(
            {"If-Match": '"nope"'}, 412, "If-Match matches no current version", id="412-if-match"
        ),
        pytest.param(
            {"Range": "bytes=9999-"}, 416, "requested range not satisfiable", id="416-past-end"
        ),
        pytest.param({"Range": "bytes=x"}, 416, "requested range not satisfiable", id="416-bad"),
    ],
)
def test_a_failed_condition_is_the_envelope_without_the_file(
    files_client: FlaskClient, path: str, headers: dict[str, str], status: int, msg: str
) -> None:
    """A failed If-Match (werkzeug would send the file as the 412's body) and a range the
    file cannot satisfy answer the error envelope and its headers, none of the file, and
    close it (an unclosed file's ResourceWarning fails the test: filterwarnings = error)."""
    response = files_client.get(path, headers={HEADER: "cond-1", **headers})
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert response.json == {"code": status, "msg": msg, "data": None, "tracking_id": "cond-1"}
    assert response.headers[HEADER] == "cond-1"
    assert response.headers["Cache-Control"] == "no-store"
    assert "ETag" not in response.headers
    assert CONTENT not in response.data


def test_a_failed_if_match_on_head_is_a_412_without_a_body(files_client: FlaskClient) -> None:
    """HEAD with a failed If-Match answers 412 with the envelope's headers and no body."""
    response = files_client.head("/static/robots.txt", headers={"If-Match": '"nope"'})
    assert (response.status_code, response.data) == (412, b"")
    assert response.mimetype == "application/json"
    assert response.headers[HEADER]
