"""nginx/ never serves /metrics, under real nginx (Debian's stock nginx.conf) in front of real
gunicorn with a metrics listener: the metrics are on a port nginx does not proxy to, and
nginx refuses the path itself, even from an upstream that would answer it.

Both templates include kit/app.conf, where the refusal is; the plain one is run here.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from harness.processes import SLEEPY, Gunicorn, base_env, free_port, get
from harness.proxy import Nginx, template_env
from tests.nginx.test_kit_conf import PLAIN, eventually, nginx_lines, send

pytestmark = pytest.mark.usefixtures("requires_nginx")

METRIC = b"http_requests_total"


@pytest.fixture(scope="module")
def upstream(
    requires_nginx: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gunicorn, int]]:
    """The test app under gunicorn with its metrics listener; and the listener's port."""
    workdir = tmp_path_factory.mktemp("upstream")
    metrics_port = free_port()
    env = base_env(
        WEB_CONCURRENCY="1",
        LOG_FORMAT="json",
        DATABASE_URL=f"sqlite:///{workdir / 'app.db'}",
        METRICS_BIND=f"127.0.0.1:{metrics_port}",
        PROMETHEUS_MULTIPROC_DIR=str(workdir / "metrics"),
    )
    server = Gunicorn(workdir, env, args=[SLEEPY]).start()
    yield server, metrics_port
    server.stop(signal.SIGTERM)


@pytest.fixture(scope="module")
def proxies(
    upstream: tuple[Gunicorn, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Nginx]]:
    """nginx from the plain template in front of the app's port ("app"), as deployed, and
    in front of the metrics listener ("metrics"), as nobody should deploy it."""
    server, metrics_port = upstream
    started = {
        name: Nginx(
            tmp_path_factory.mktemp(f"nginx-{name}"), PLAIN, template_env(port, free_port())
        ).start()
        for name, port in (("app", server.port), ("metrics", metrics_port))
    }
    yield started
    for proxy in started.values():
        proxy.stop()


def test_metrics_listener_answers_directly(upstream: tuple[Gunicorn, int]) -> None:
    """The listener itself serves the exposition: what nginx must keep from the public."""
    status, headers, body = get(upstream[1], "/metrics")
    assert (status, headers["Content-Type"].split(";")[0]) == (200, "text/plain")
    assert METRIC in body


@pytest.mark.parametrize(
    "path",
    [
        pytest.param("/metrics", id="plain"),
        pytest.param("/metrics?format=text", id="query"),
        pytest.param("//metrics", id="double-slash"),
        pytest.param("/%6Detrics", id="encoded"),
    ],
)
@pytest.mark.parametrize("behind", ["app", "metrics"])
def test_metrics_through_nginx_is_its_own_404_envelope(
    proxies: dict[str, Nginx], behind: str, path: str
) -> None:
    """However it is spelled, /metrics through nginx is nginx's 404 envelope, answered
    without asking the upstream, even one whose /metrics would answer."""
    proxy = proxies[behind]
    answer = send(proxy.port, "GET", path, {"X-Tracking-ID": f"metrics-{behind}-{len(path)}"})
    envelope = answer.json()
    assert (answer.status, envelope["code"], envelope["msg"]) == (404, 404, "not found")
    assert METRIC not in answer.body
    (line,) = eventually(lambda: nginx_lines(proxy, f"metrics-{behind}-{len(path)}"))
    assert line["upstream"] == ""


def test_metrics_below_the_path_reach_only_the_apps_404(proxies: dict[str, Nginx]) -> None:
    """/metrics/ is proxied like any path, to the app's port, which has no such route."""
    proxy = proxies["app"]
    answer = send(proxy.port, "GET", "/metrics/", {"X-Tracking-ID": "metrics-below"})
    assert (answer.status, answer.json()["code"]) == (404, 404)
    assert METRIC not in answer.body
    (line,) = eventually(lambda: nginx_lines(proxy, "metrics-below"))
    assert line["upstream"] != ""
