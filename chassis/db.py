"""Moved to `chassis.database.sessions` in 0.3; this name keeps working until 0.4.

Services made from the template before 0.3 import this one; new code imports from the
new place (CHANGELOG: 0.3).
"""

from chassis.database.engine import build_engine, sqlite_begin_immediate
from chassis.database.sessions import Database, get_db, get_session

__all__ = ["Database", "build_engine", "get_db", "get_session", "sqlite_begin_immediate"]
