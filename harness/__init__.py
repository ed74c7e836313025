"""The real processes and servers that the tests and the benchmarks both run: gunicorn,
PostgreSQL, nginx, the programs they need and the directories they share with other users.

Nothing here imports pytest at module level or anything from tests/, so bench/ stands on it
alone; what only the tests use lives in tests/support/.
"""
