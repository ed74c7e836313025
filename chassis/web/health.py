"""Liveness and readiness endpoints for load balancers and orchestrators.

`/healthz` (liveness) answers while the process can serve a request and never touches a
dependency: a database outage must not make Kubernetes restart every healthy pod.
`/readyz` (readiness) says whether this instance should receive traffic: it runs `SELECT 1`
and answers 503 within 1.5 seconds when the database is down or unreachable.
"""

from __future__ import annotations

from typing import Literal

from flask import Blueprint, Response
from pydantic import BaseModel

from chassis.database.sessions import get_db
from chassis.web.operations import operation
from chassis.web.responses import error, ok

bp = Blueprint("health", __name__)

# Load balancers typically give a probe 2-5 seconds; answer well inside that.
READINESS_TIMEOUT_S = 1.5


class Alive(BaseModel):
    """The process answers."""

    status: Literal["alive"]


class Ready(BaseModel):
    """The database answers a query."""

    status: Literal["ready"]


@bp.get("/healthz")
@operation(answers={200: Alive}, database=False)
def healthz() -> Response:
    """Report that the process is alive."""
    return ok({"status": "alive"})


@bp.get("/readyz")
@operation(
    answers={200: Ready, 503: "The database does not answer: take this instance out of rotation."},
    database=False,  # it answers its own 503, within READINESS_TIMEOUT_S, never a 504
)
def readyz() -> Response:
    """Report whether this instance can take traffic: the database answers a query."""
    if get_db().is_ready(READINESS_TIMEOUT_S):
        return ok({"status": "ready"})
    return error(503, "database unavailable", {"Retry-After": "1"})
