"""Moved to `chassis.web.validation` in 0.3; this name keeps working until 0.4.

Services made from the template before 0.3 import this one; new code imports from the
new place (CHANGELOG: 0.3).
"""

from chassis.web.validation import MAX_INT, NO_NUL_PATTERN, Text, parse_body, parse_int

__all__ = ["MAX_INT", "NO_NUL_PATTERN", "Text", "parse_body", "parse_int"]
