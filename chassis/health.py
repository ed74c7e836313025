"""Liveness and readiness endpoints for load balancers and orchestrators.

`/healthz` (liveness) answers while the process can serve a request and never touches a
dependency: a database outage must not make Kubernetes restart every healthy pod.
`/readyz` (readiness) says whether this instance should receive traffic: it runs `SELECT 1`
and answers 503 within 1.5 seconds when the database is down or unreachable.
"""

from __future__ import annotations

from flask import Blueprint, Response

from chassis.db import get_db
from chassis.responses import error, ok

bp = Blueprint("health", __name__)

# Load balancers typically give a probe 2-5 seconds; answer well inside that.
READINESS_TIMEOUT_S = 1.5


@bp.get("/healthz")
def healthz() -> Response:
    """Report that the process is alive."""
    return ok({"status": "alive"})


@bp.get("/readyz")
def readyz() -> Response:
    """Report whether this instance can take traffic: the database answers a query."""
    if get_db().is_ready(READINESS_TIMEOUT_S):
        return ok({"status": "ready"})
    return error(503, "database unavailable", {"Retry-After": "1"})
