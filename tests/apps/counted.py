"""A test-only app with a metric of the service's own, made the way a service makes one: an
unlabelled prometheus_client counter at module level, created when gunicorn's worker imports
the app. POST /test/orders counts one.

Served with `gunicorn -c gunicorn.conf.py tests.apps.counted:app`.
"""

from __future__ import annotations

from flask import Response
from prometheus_client import Counter

from app import create_app
from chassis.web.responses import ok

ORDERS = Counter("test_orders", "Orders taken: a metric of the service's own.")

app = create_app()


@app.post("/test/orders")
def take_order() -> Response:
    """Count one order."""
    ORDERS.inc()
    return ok()
