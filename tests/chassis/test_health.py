"""Liveness and readiness answer in the envelope."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.support.flask_app import AppFactory, LogReader


@pytest.mark.parametrize(
    ("path", "status"),
    [
        pytest.param("/healthz", "alive", id="liveness"),
        pytest.param("/readyz", "ready", id="readiness"),
    ],
)
def test_health_endpoint_answers_in_the_envelope(
    client: FlaskClient, path: str, status: str
) -> None:
    """Each probe answers 200 with its status in `data`."""
    response = client.get(path)
    assert response.status_code == 200
    assert response.json is not None
    assert response.json["data"] == {"status": status}
    assert response.json["code"] == 200


def test_health_endpoints_answer_head(client: FlaskClient) -> None:
    """Load balancers that probe with HEAD get 200 and no body."""
    response = client.head("/healthz")
    assert response.status_code == 200
    assert response.data == b""


def test_failed_readiness_check_logs_under_the_requests_tracking_id(
    make_app: AppFactory, read_logs: LogReader, tmp_path: Path
) -> None:
    """A database that cannot be opened (its file is a directory): /readyz answers the 503
    envelope, and the check's warning, logged on its own thread, names the file and carries
    the request's tracking id."""
    (tmp_path / "app.db").mkdir()
    app = make_app(database_url=f"sqlite:///{tmp_path / 'app.db'}")
    response = app.test_client().get("/readyz", headers={"X-Tracking-ID": "ready-1"})
    assert response.status_code == 503
    assert response.json is not None
    assert (response.json["msg"], response.json["tracking_id"]) == (
        "database unavailable",
        "ready-1",
    )
    warnings = [line for line in read_logs() if line["logger"] == "chassis.database.sessions"]
    said = f"readiness check failed: database unreachable: DATABASE_URL's {tmp_path / 'app.db'}: "
    assert [(line["message"][: len(said)], line["tracking_id"]) for line in warnings] == [
        (said, "ready-1")
    ]
