"""Moved to `chassis.database.models` in 0.3; this name keeps working until 0.4.

Services made from the template before 0.3 import this one; new code imports from the
new place (CHANGELOG: 0.3).
"""

from chassis.database.models import NAMING_CONVENTION, Base, UTCDateTime, utcnow

__all__ = ["NAMING_CONVENTION", "Base", "UTCDateTime", "utcnow"]
