"""The kit's own schemathesis check, loaded by `st run` (SCHEMATHESIS_HOOKS) in
tests/test_schemathesis.py: every answer is the envelope and carries the tracking id."""

from __future__ import annotations

import json
import re
from typing import Any

import schemathesis
from schemathesis import Case, CheckContext, Response

from chassis.observability.tracking import VALID_TRACKING_ID
from chassis.web.envelope import envelope_body

ENVELOPE_KEYS = list(envelope_body(200, "", None, ""))
TRACKING_HEADER = "x-tracking-id"  # schemathesis lower-cases header names


@schemathesis.check
def envelope_with_tracking_id(ctx: CheckContext, response: Response, case: Case[Any]) -> bool:
    """The body is the envelope, its `code` the status, its `tracking_id` the header's."""
    (header,) = response.headers.get(TRACKING_HEADER, [None])
    assert header is not None, "no tracking id header"
    assert re.fullmatch(VALID_TRACKING_ID, header), f"invalid tracking id {header!r}"
    if not response.content:
        # By design: HEAD has no body, and OPTIONS answers 204 with Allow.
        method = response.request.method
        assert method in {"HEAD", "OPTIONS"}, (
            f"{method} answered {response.status_code} with no body"
        )
        return True
    body = json.loads(response.content)
    assert isinstance(body, dict), f"not an object: {body!r}"
    assert list(body) == ENVELOPE_KEYS, f"not the envelope's keys: {list(body)}"
    assert body["code"] == response.status_code, (
        f"code {body['code']}, status {response.status_code}"
    )
    assert body["tracking_id"] == header, f"body {body['tracking_id']!r}, header {header!r}"
    return True
