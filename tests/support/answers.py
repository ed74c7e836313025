"""What an answer's headers are, for comparing the writers outside Flask with the app's."""

from __future__ import annotations

from collections.abc import Iterable

# The headers of every envelope: the body's two, the writer's two, the tracking id.
ENVELOPE_HEADERS = frozenset(
    {"content-type", "content-length", "cache-control", "x-datetime", "x-tracking-id"}
)
# What the server adds around any answer, the app's included; not the envelope's.
TRANSPORT = frozenset({"connection", "date", "keep-alive", "server", "transfer-encoding"})


def header_names(headers: Iterable[str]) -> set[str]:
    """The names of `headers`, lowered, less what the server adds around every answer."""
    return {name.lower() for name in headers} - TRANSPORT


def raw_header_names(head: bytes) -> set[str]:
    """`header_names` of a raw HTTP head (status line, then `Name: value` lines)."""
    lines = head.decode("latin-1").split("\r\n")[1:]
    return header_names(line.split(":", 1)[0] for line in lines if line)
