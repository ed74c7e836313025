"""Moved to `chassis.web.responses` in 0.3; this name keeps working until 0.4.

Services made from the template before 0.3 import this one; new code imports from the
new place (CHANGELOG: 0.3).
"""

from chassis.web.envelope import DATETIME_HEADER, envelope_body, envelope_json, to_json
from chassis.web.responses import JSONProvider, created, envelope, error, ok

__all__ = [
    "DATETIME_HEADER",
    "JSONProvider",
    "created",
    "envelope",
    "envelope_body",
    "envelope_json",
    "error",
    "ok",
    "to_json",
]
