"""Helpers only the tests use: the app under test, a copy of the checkout, the Docker engine,
metrics scrapes, answers' headers. Tests import them from here, never from a conftest.py;
the real servers and processes the benchmarks run too are in harness/."""
