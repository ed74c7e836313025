"""Mixed traffic through one port, counted request by request, for the tests that roll out a
new version under load (tests/deploy/test_rollout.py).

Each thread sends one kind of request, each on a new connection, until told to stop (10
minutes at most): reads, POSTs that create a row under a name of their own, and requests
that wait in PostgreSQL. Every result is kept with its kind, its times and its status, or
the name of the error when no answer came.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from dataclasses import dataclass

from harness.processes import Load, request

# Bounded even if never stopped.
LONGEST_S = 600
# psql's arguments, run in the database's container, that list the rows the test app's
# POSTs created (harness/apps/records.py).
STORED_NAMES = ("psql", "-U", "kit", "-d", "kit", "-Atc", "SELECT name FROM test_records")


@dataclass(frozen=True)
class Outcome:
    """One request: its kind, when it was sent and answered, and the status or error."""

    kind: str
    sent: float
    done: float
    status: int | str


class Traffic(Load):
    """GET `read`, POST `create` and GET `slow` through 127.0.0.1:`port`, with `headers`, on
    `readers`, `creators` and `sleepers` threads (Load starts and stops them)."""

    def __init__(
        self,
        port: int,
        read: str,
        create: str,
        slow: str,
        headers: dict[str, str] | None = None,
        kinds: tuple[int, int, int] = (3, 2, 1),
    ) -> None:
        super().__init__(port, read, threads=0, headers=headers)
        self.create, self.slow = create, slow
        self.results: list[Outcome] = []
        self.created: list[str] = []
        readers, creators, sleepers = kinds
        chosen = ["read"] * readers + ["create"] * creators + ["slow"] * sleepers
        self.threads = [
            threading.Thread(target=self._send_until_stopped, args=(k,)) for k in chosen
        ]

    def _send(self, kind: str) -> int | str:
        if kind == "read":
            return request(self.port, "GET", self.path, headers=self.headers, timeout=30)[0]
        if kind == "slow":
            return request(self.port, "GET", self.slow, headers=self.headers, timeout=30)[0]
        name = f"rollout-{secrets.token_hex(8)}"
        body = json.dumps({"name": name}).encode()
        status = request(self.port, "POST", self.create, body, self.headers, timeout=30)[0]
        if status == 201:
            self.created.append(name)
        return status

    def _send_until_stopped(self, kind: str) -> None:
        deadline = time.monotonic() + LONGEST_S
        while not self.stopping.is_set() and time.monotonic() < deadline:
            sent = time.monotonic()
            try:
                status: int | str = self._send(kind)
            except OSError as exc:
                status = type(exc).__name__
            self.results.append(Outcome(kind, sent, time.monotonic(), status))

    @classmethod
    def to_test_app(cls, port: int) -> Traffic:
        """The test app's (harness/apps/sleepy.py): reads and creates of its records, and
        waits of 1.5 s in PostgreSQL."""
        return cls(port, "/test/records?limit=5", "/test/records", "/test/pg-sleep?s=1.5")

    def __enter__(self) -> Traffic:
        super().__enter__()
        return self

    def failed(self) -> list[Outcome]:
        """Every request not answered with a 2xx."""
        return [o for o in self.results if not (isinstance(o.status, int) and o.status < 300)]

    def between(self, start: float, end: float) -> list[Outcome]:
        """The requests sent from `start` to `end` (time.monotonic)."""
        return [o for o in self.results if start <= o.sent <= end]
