"""Liveness and readiness endpoints for load balancers and orchestrators.

`/healthz` (liveness) answers while the process can serve a request and never touches a
dependency: a database outage must not make Kubernetes restart every healthy pod.
`/readyz` (readiness) says whether this instance should receive traffic.
"""

from __future__ import annotations

from flask import Blueprint, Response

from app.responses import ok

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    """Report that the process is alive."""
    return ok({"status": "alive"})


@bp.get("/readyz")
def readyz() -> Response:
    """Report that this instance can take traffic."""
    return ok({"status": "ready"})
