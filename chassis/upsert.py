"""Moved to `chassis.database.upsert` in 0.3; this name keeps working until 0.4.

Services made from the template before 0.3 import this one; new code imports from the
new place (CHANGELOG: 0.3).
"""

from chassis.database.upsert import Upserted, Where, dialect_insert, upsert

__all__ = ["Upserted", "Where", "dialect_insert", "upsert"]
