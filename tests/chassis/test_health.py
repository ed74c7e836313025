"""Liveness and readiness answer in the envelope."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient


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
