"""The private internals of libraries the chassis leans on, each checked here so that an
upgrade that changes one fails loudly, with its name, instead of quietly disabling the
feature built on it. Each entry names where it is used and the version it was checked
against (uv.lock pins that version); the comment at the place of use says why.

    flask.ctx._AppCtxGlobals         chassis/web/app.py      Flask 3.1.3
    prometheus_client ValueClass     chassis/observability/metric_files.py  0.26.0
    prometheus_client MmapedDict     chassis/observability/metric_files.py  0.26.0
    gunicorn.util.write_error        chassis/serving/hooks.py  gunicorn 27.0.1
    gunicorn's reading in gunicorn.http.*  chassis/serving/hooks.py  gunicorn 27.0.1
    gthread's TConn.sock, enqueue_req      chassis/serving/gthread_worker.py  gunicorn 27.0.1
    SocketUnreader reads sock.recv         chassis/serving/deadline.py  gunicorn 27.0.1

Flask's `_is_coroutine_marker` check is no longer one of them: `ensure_sync` asks the
public `inspect.iscoroutinefunction` once per function (tests/test_app.py).
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import flask
import flask.ctx
import gunicorn.http
import gunicorn.http.unreader
import gunicorn.util
import gunicorn.workers.base
import gunicorn.workers.gthread
import prometheus_client.metrics
import prometheus_client.mmap_dict
import prometheus_client.multiprocess
import prometheus_client.values
from flask import Flask

from chassis.web.app import TrackingGlobals


def broken(name: str, where: str, checked: str, what: str) -> str:
    """The message of a failed check: which internal, where it is used, what changed."""
    return f"{name} (used by {where}, checked against {checked}) changed: {what}"


def test_flask_app_ctx_globals_is_the_class_of_g(app: Flask) -> None:
    """`flask.ctx._AppCtxGlobals` is still Flask's class for `g`, and `g` is ours."""
    name = "flask.ctx._AppCtxGlobals"
    where, checked = "chassis/web/app.py TrackingGlobals", "Flask 3.1.3"
    base = getattr(flask.ctx, "_AppCtxGlobals", None)
    assert base is not None, broken(name, where, checked, "it is gone")
    assert Flask.app_ctx_globals_class is base, broken(
        name, where, checked, "Flask.app_ctx_globals_class is another class"
    )
    with app.app_context():
        assert isinstance(flask.g._get_current_object(), TrackingGlobals)
        flask.g.seen = 1
        assert flask.g.get("seen") == 1, broken(name, where, checked, "g lost get()")


def test_prometheus_value_class_is_chosen_at_import_and_read_by_each_metric() -> None:
    """`values.ValueClass` is still what each metric keeps its values in (read when the
    metric is made), and the multiprocess class still says `_multiprocess`."""
    name = "prometheus_client.values.ValueClass"
    where, checked = (
        "chassis/observability/metric_files.py write_to_files",
        "prometheus_client 0.26.0",
    )
    assert hasattr(prometheus_client.values, "ValueClass"), broken(name, where, checked, "gone")
    assert "values.ValueClass(" in inspect.getsource(prometheus_client.metrics), broken(
        name, where, checked, "metrics no longer read it when they are made"
    )
    made = prometheus_client.values.MultiProcessValue()  # type: ignore[no-untyped-call]
    assert getattr(made, "_multiprocess", False) is True, broken(
        name, where, checked, "MultiProcessValue()'s class has no _multiprocess"
    )


def test_prometheus_mmaped_dict_reads_the_files_the_collector_reads() -> None:
    """`mmap_dict.MmapedDict` still reads and writes the multiprocess files, for the
    library's own collector too."""
    name = "prometheus_client.mmap_dict.MmapedDict"
    where, checked = "chassis/observability/metric_files.py fold", "prometheus_client 0.26.0"
    reader = getattr(prometheus_client.mmap_dict.MmapedDict, "read_all_values_from_file", None)
    assert callable(reader), broken(name, where, checked, "read_all_values_from_file is gone")
    assert "MmapedDict" in inspect.getsource(prometheus_client.multiprocess), broken(
        name, where, checked, "the multiprocess collector reads its files another way"
    )


def test_gunicorn_writes_its_error_pages_through_util_write_error() -> None:
    """`gunicorn.util.write_error(sock, status_int, reason, mesg)` is still looked up at
    call time by the worker's error handling, so replacing it replaces the pages."""
    name = "gunicorn.util.write_error"
    where, checked = "chassis/serving/hooks.py use_json_error_pages", "gunicorn 27.0.1"
    assert list(inspect.signature(gunicorn.util.write_error).parameters) == [
        "sock",
        "status_int",
        "reason",
        "mesg",
    ], broken(name, where, checked, "its signature")
    handler = inspect.getsource(gunicorn.workers.base.Worker.handle_error)
    assert "util.write_error(" in handler, broken(
        name, where, checked, "Worker.handle_error no longer calls it through gunicorn.util"
    )


def test_gunicorn_reads_requests_only_in_its_http_package() -> None:
    """Every module that reads a request's bytes from the socket is in `gunicorn.http`:
    the frame that tells a slow client from a stuck app."""
    name = "gunicorn's module layout (gunicorn.http.*)"
    where, checked = "chassis/serving/hooks.py _waiting_for_client", "gunicorn 27.0.1"
    package = Path(gunicorn.http.__file__).parent
    readers = {path.stem for path in package.glob("*.py")}
    assert {"unreader", "body", "message", "parser"} <= readers, broken(
        name, where, checked, f"gunicorn/http/ now holds {sorted(readers)}"
    )
    workers = ("gunicorn.workers.sync", "gunicorn.workers.gthread", "gunicorn.workers.ggevent")
    for module_name in workers:
        source = inspect.getsource(importlib.import_module(module_name))
        assert ".recv(" not in source, broken(
            name, where, checked, f"{module_name} reads from the socket itself"
        )


def test_gthread_reads_each_request_through_the_connections_socket() -> None:
    """gthread hands every connection with a request to read to `enqueue_req`, on its main
    thread, and its parser reads `TConn.sock` (made in `TConn.init`, with `http.get_parser`)
    through `SocketUnreader.chunk`, which calls `sock.recv`: the kit's gthread worker puts
    its deadline there (chassis/serving/deadline.py)."""
    gthread = gunicorn.workers.gthread
    where, checked = "chassis/serving/gthread_worker.py", "gunicorn 27.0.1"
    for method in ("accept", "on_client_socket_readable", "on_pending_socket_readable"):
        assert "enqueue_req" in inspect.getsource(getattr(gthread.ThreadWorker, method)), broken(
            f"ThreadWorker.{method}", where, checked, "it no longer calls enqueue_req"
        )
    init = inspect.getsource(gthread.TConn.init)
    assert "get_parser(self.cfg, self.sock" in init, broken(
        "TConn.init", where, checked, "the parser no longer reads self.sock"
    )
    chunk = inspect.getsource(gunicorn.http.unreader.SocketUnreader.chunk)
    assert "self.sock.recv(" in chunk, broken(
        "SocketUnreader.chunk", where, checked, "it no longer reads with sock.recv"
    )
