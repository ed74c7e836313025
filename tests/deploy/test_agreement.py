"""The numbers that must agree across the deployment files, read from the files themselves.

- gunicorn's graceful_timeout fits inside every stop timeout (compose, systemd, supervisor,
  Kubernetes grace period minus preStop), with gunicorn.conf.py resolved under each
  deployment's own environment;
- nginx (and the Kubernetes ingress) accept bodies at least as large as the app does and
  wait for a response at least as long as gunicorn lets a worker run;
- gunicorn keeps idle connections open longer than nginx's upstream keepalive;
- each deployment's ProxyFix counts equal the X-Forwarded-* headers nginx sets;
- nginx's copy of the JSON envelope has the app's keys in the app's order.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER

from chassis.settings import DEFAULT_MAX_CONTENT_LENGTH, tcp_port
from chassis.web.envelope import envelope_body
from harness.processes import ROOT, resolve_gunicorn_conf
from tests.deploy.files import compose_services, yaml_documents

NGINX_TEMPLATES = [ROOT / "nginx" / "templates", ROOT / "nginx" / "tls"]
NGINX_FILES = [*ROOT.glob("nginx/*/*.template"), *ROOT.glob("nginx/kit/*.conf")]
KUBERNETES = ROOT / "deploy" / "kubernetes"
PROXY_FIX = {
    "PROXY_FIX_X_FOR": "X-Forwarded-For",
    "PROXY_FIX_X_PROTO": "X-Forwarded-Proto",
    "PROXY_FIX_X_HOST": "X-Forwarded-Host",
    "PROXY_FIX_X_PORT": "X-Forwarded-Port",
    "PROXY_FIX_X_PREFIX": "X-Forwarded-Prefix",
}
# Stands in for the secrets each deployment keeps outside its files.
SECRETS = {
    "SECRET_KEY": "42818ade52925286a427bfd2f4307d22c32722118b10935973cd20034737fdc4",
    "DATABASE_URL": "sqlite:///agreement.db",
}


def kubernetes_object(kind: str, name: str = "kit") -> dict[str, Any]:
    """The app's object of `kind` (named kit) in deploy/kubernetes/."""
    found = [
        doc
        for path in KUBERNETES.glob("*.yaml")
        for doc in yaml_documents(path.read_text())
        if doc.get("kind") == kind and doc["metadata"]["name"] == name
    ]
    assert len(found) == 1, f"{len(found)} {kind} objects named {name}"
    return found[0]


def unit_values(key: str) -> list[str]:
    """Every value of `key=` in the systemd unit (keys may repeat)."""
    text = (ROOT / "deploy" / "systemd" / "kit.service").read_text()
    return re.findall(rf"^{key}=(.*)$", text, re.MULTILINE)


def supervisor_value(key: str) -> str:
    """The value of `key=` in the supervisor program."""
    text = (ROOT / "deploy" / "supervisor" / "kit.conf").read_text()
    (value,) = re.findall(rf"^{key}=(.*)$", text, re.MULTILINE)
    return str(value)


def compose_service(name: str) -> dict[str, Any]:
    """One service of compose.yaml."""
    return compose_services()[name]


def deployment_environments() -> dict[str, dict[str, str]]:
    """The environment each deployment gives gunicorn, secrets aside."""
    systemd = dict(line.split("=", 1) for line in unit_values("Environment"))
    supervisor = dict(re.findall(r'(\w+)="([^"]*)"', supervisor_value("environment")))
    compose = {k: str(v) for k, v in compose_service("app")["environment"].items()}
    kubernetes = kubernetes_object("ConfigMap")["data"]
    return {"compose": compose, "systemd": systemd, "supervisor": supervisor, "k8s": kubernetes}


def resolve_gunicorn(environment: dict[str, str]) -> dict[str, Any]:
    """gunicorn.conf.py as it resolves under `environment` and stand-in secrets. METRICS_BIND's
    host gets loopback in its stead: compose's names its network alias, which names nothing
    here, and gunicorn.conf.py would stop on it (metrics_hooks.own_address)."""
    metrics_bind = environment.get("METRICS_BIND")
    metrics = {"METRICS_BIND": f"127.0.0.1:{tcp_port(metrics_bind)}"} if metrics_bind else {}
    return resolve_gunicorn_conf(**{**environment, **SECRETS, **metrics})


def seconds(value: str | int) -> int:
    """A duration as compose ("45s", "1m30s"), systemd or nginx ("60s") write it."""
    text = str(value)
    if text.isdigit():
        return int(text)
    units = {"h": 3600, "m": 60, "s": 1}
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
    assert text, "empty duration"
    assert parts is not None, f"not a duration: {text!r}"
    return sum(int(n) * units[u] for n, u in zip(parts.groups(), "hms", strict=True) if n)


def nginx_size(value: str) -> int:
    """An nginx size ("1m", "512k", "1048576") in bytes."""
    scale = {"k": 1024, "m": 1024**2, "g": 1024**3}
    unit = value[-1].lower()
    return int(value[:-1]) * scale[unit] if unit in scale else int(value)


def nginx_directive(name: str, files: list[Path] = NGINX_FILES) -> list[str]:
    """Every value of `name` in the nginx files."""
    pattern = re.compile(rf"^\s*{name}\s+([^;]+);", re.MULTILINE)
    return [value for path in files for value in pattern.findall(path.read_text())]


def stop_timeouts() -> dict[str, int]:
    """Seconds each deployment waits after SIGTERM before it kills gunicorn."""
    pod = kubernetes_object("Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    (systemd,) = unit_values("TimeoutStopSec")
    return {
        "compose": seconds(compose_service("app")["stop_grace_period"]),
        "systemd": seconds(systemd),
        "supervisor": int(supervisor_value("stopwaitsecs")),
        # The pod's grace period also has to cover the preStop pause before SIGTERM.
        "k8s": pod["terminationGracePeriodSeconds"] - int(pre_stop[1]),
    }


@pytest.mark.parametrize("deployment", ["compose", "systemd", "supervisor", "k8s"])
def test_graceful_timeout_fits_in_every_stop_timeout(deployment: str) -> None:
    """gunicorn finishes its graceful shutdown before the supervisor of the process kills it."""
    gunicorn = resolve_gunicorn(deployment_environments()[deployment])
    assert gunicorn["graceful_timeout"] < stop_timeouts()[deployment]


def test_every_stop_signal_is_sigterm() -> None:
    """Every deployment stops gunicorn with SIGTERM, its graceful shutdown."""
    assert re.findall(r"^STOPSIGNAL (\S+)", (ROOT / "Dockerfile").read_text(), re.MULTILINE) == [
        "SIGTERM"
    ]
    assert unit_values("KillSignal") == ["SIGTERM"]
    assert supervisor_value("stopsignal") == "TERM"


def test_nginx_accepts_every_body_the_app_accepts() -> None:
    """nginx's and the ingress's body limits are at least the app's MAX_CONTENT_LENGTH."""
    limits = nginx_directive("client_max_body_size")
    assert limits
    assert all(nginx_size(limit) >= DEFAULT_MAX_CONTENT_LENGTH for limit in limits)
    annotations = kubernetes_object("Ingress")["metadata"]["annotations"]
    ingress = annotations["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert nginx_size(ingress) >= DEFAULT_MAX_CONTENT_LENGTH
    for environment in deployment_environments().values():
        assert "MAX_CONTENT_LENGTH" not in environment  # the default is what nginx matches


@pytest.mark.parametrize("deployment", ["compose", "systemd", "supervisor", "k8s"])
def test_proxies_wait_at_least_as_long_as_gunicorn(deployment: str) -> None:
    """nginx's and the ingress's read timeouts are not shorter than gunicorn's timeout."""
    timeout = resolve_gunicorn(deployment_environments()[deployment])["timeout"]
    reads = nginx_directive("proxy_read_timeout")
    assert reads
    assert all(seconds(read) >= timeout for read in reads)
    annotations = kubernetes_object("Ingress")["metadata"]["annotations"]
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= timeout


@pytest.mark.parametrize("deployment", ["compose", "systemd", "supervisor"])
def test_gunicorn_keepalive_outlasts_nginx_upstream_keepalive(deployment: str) -> None:
    """nginx drops an idle upstream connection before gunicorn does, running or stopping
    (no request sent down a connection gunicorn is shutting)."""
    keepalive = resolve_gunicorn(deployment_environments()[deployment])["keepalive"]
    templates = [path for directory in NGINX_TEMPLATES for path in directory.glob("*.template")]
    upstream_timeouts = [
        seconds(match)
        for path in templates
        for block in re.findall(r"^upstream \w+ \{(.*?)^\}", path.read_text(), re.DOTALL | re.M)
        for match in re.findall(r"keepalive_timeout\s+(\w+);", block)
    ]
    assert len(upstream_timeouts) == len(templates)
    assert all(timeout < keepalive for timeout in upstream_timeouts)
    # A stopping worker (gthread; the kit's gevent worker takes gunicorn's number) shuts its
    # idle connections STOP_KEEPALIVE_LINGER after it stops: nginx must have dropped them.
    assert all(timeout < STOP_KEEPALIVE_LINGER for timeout in upstream_timeouts)


@pytest.mark.parametrize("deployment", ["compose", "systemd", "supervisor", "k8s"])
def test_proxy_fix_counts_match_the_headers_nginx_sets(deployment: str) -> None:
    """Each X-Forwarded-* header nginx sets is trusted for exactly one hop, and no other."""
    environment = deployment_environments()[deployment]
    set_by_nginx = {
        value.split()[0].lower()
        for value in nginx_directive("proxy_set_header")
        # `proxy_set_header NAME "";` drops the client's header: nginx sets nothing.
        if value.lower().startswith("x-forwarded-") and not value.endswith('""')
    }
    for variable, header in PROXY_FIX.items():
        expected = 1 if header.lower() in set_by_nginx else 0
        assert int(environment.get(variable, "0")) == expected, variable


def test_nginx_error_envelope_is_the_apps() -> None:
    """The body nginx writes for its own errors (nginx/kit/app.conf) is the envelope the app
    and gunicorn write (chassis/web/responses.py), key for key, in the same order."""
    conf = (ROOT / "nginx" / "kit" / "app.conf").read_text()
    (template,) = re.findall(r"return 200 '(\{.*\})\\n';", conf)
    filled = (
        template.replace("$status", "413")
        .replace("$kit_error_msg", "too large")
        .replace("$tracking_id", "t-1")
    )
    nginx_body = json.loads(filled)
    assert list(nginx_body.items()) == list(envelope_body(413, "too large", None, "t-1").items())
