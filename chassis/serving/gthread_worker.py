"""gunicorn's gthread worker with a deadline for reading each request: `GUNICORN_WORKER_CLASS=
gthread` runs this class (gunicorn.conf.py).

gunicorn's own waits a few seconds for a request's first byte, then reads the rest of the
head and the body in one of its threads with no deadline: two clients sending a header
line a second held both threads of a worker (GUNICORN_THREADS=2), and every other request
waited for as long as they kept sending. Here each request must be read within
GUNICORN_TIMEOUT of its first byte (chassis/serving/deadline.py), as under a sync worker.
"""

from __future__ import annotations

from typing import Any

from gunicorn.workers.gthread import ThreadWorker as GunicornThreadWorker

from chassis.serving.deadline import DeadlineSocket


class ThreadWorker(GunicornThreadWorker):  # type: ignore[misc]  # gunicorn is untyped
    """gunicorn's gthread worker, each request read within GUNICORN_TIMEOUT."""

    def enqueue_req(self, conn: Any) -> None:
        # On the main thread, when the connection has a request to read: a new one, a kept-
        # alive one readable again, or one that already holds the next request's bytes.
        # gunicorn serving TLS itself wraps the socket in ssl, which takes no stand-in: the
        # kit leaves TLS to nginx, so such a connection is read as gunicorn reads it.
        if not self.cfg.is_ssl:
            if not isinstance(conn.sock, DeadlineSocket):
                conn.sock = DeadlineSocket(conn.sock, self.cfg.timeout)
            conn.sock.rearm()
        super().enqueue_req(conn)
