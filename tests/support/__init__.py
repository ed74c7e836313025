"""Helpers the tests share: real servers, programs, processes. Tests import them from here,
never from a conftest.py."""
