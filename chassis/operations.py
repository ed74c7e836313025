"""Moved to `chassis.web.operations` in 0.3; this name keeps working until 0.4.

Services made from the template before 0.3 import this one; new code imports from the
new place (CHANGELOG: 0.3).
"""

from chassis.web.operations import IntParam, Operation, TextParam, declaration, operation

__all__ = ["IntParam", "Operation", "TextParam", "declaration", "operation"]
