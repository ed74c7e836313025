"""A Kubernetes rollout with no gap, checked in the manifests alone (deploy/kubernetes/): no
API server runs here, so neither a server-side dry run nor a real rollout can.

Each check is one way a rolling update drops requests when two numbers disagree. The
numbers outside the manifests are the defaults of the parts a cluster brings, named where
they are used: ingress-nginx (the Ingress's class) and kube-proxy.
"""

from __future__ import annotations

from typing import Any

from tests.deploy.test_agreement import (
    deployment_environments,
    kubernetes_object,
    resolve_gunicorn,
)

# How long, at most, until the ingress controller stops sending to a pod that began to
# terminate: the EndpointSlice update reaches ingress-nginx's watch (about a second), and
# the controller applies endpoint changes at most --sync-rate-limit (0.3) times a second,
# so up to 3.3 s later. kube-proxy (for traffic through the Service) syncs its rules at
# most once a second (--iptables-min-sync-period 1s), well within the same bound.
ENDPOINT_PROPAGATION_S = 1 + 1 / 0.3
# ingress-nginx's upstream-keepalive-timeout: how long it keeps an idle connection to a pod.
INGRESS_UPSTREAM_KEEPALIVE_S = 60
# A Deployment's progressDeadlineSeconds when it sets none.
DEFAULT_PROGRESS_DEADLINE_S = 600


def pod() -> dict[str, Any]:
    """The Deployment's pod spec."""
    spec: dict[str, Any] = kubernetes_object("Deployment")["spec"]["template"]["spec"]
    return spec


def container() -> dict[str, Any]:
    """The Deployment's one container."""
    (only,) = pod()["containers"]
    found: dict[str, Any] = only
    return found


def pre_stop_seconds() -> float:
    """The preStop pause: `sleep N`, or Kubernetes 1.30's `sleep: {seconds: N}`."""
    pre_stop = container()["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    assert command[0] == "sleep", command
    return float(command[1])


def gunicorn() -> dict[str, Any]:
    """gunicorn.conf.py as the ConfigMap's environment resolves it."""
    return resolve_gunicorn(deployment_environments()["k8s"])


def test_pre_stop_outlasts_the_endpoint_propagation() -> None:
    """A terminating pod keeps serving until the ingress has stopped sending to it: gunicorn
    gets SIGTERM, and closes its socket, only after the preStop pause."""
    assert pre_stop_seconds() > ENDPOINT_PROPAGATION_S


def test_grace_period_outlasts_pre_stop_and_the_graceful_timeout() -> None:
    """The kubelet kills the pod after terminationGracePeriodSeconds, counted from the start
    of preStop: gunicorn's graceful timeout, under the ConfigMap's environment, fits after
    the pause, so the requests in flight at SIGTERM finish."""
    grace = pod()["terminationGracePeriodSeconds"]
    assert grace > pre_stop_seconds() + gunicorn()["graceful_timeout"]


def test_gunicorn_outlasts_the_ingress_idle_connections() -> None:
    """gunicorn keeps an idle connection open longer than ingress-nginx does, so the ingress
    never sends a request down a connection gunicorn is closing."""
    assert gunicorn()["keepalive"] > INGRESS_UPSTREAM_KEEPALIVE_S


def test_a_slow_boot_is_not_a_failed_rollout() -> None:
    """A new pod may take the startup probe's whole budget and a readiness period before it
    takes traffic; the Deployment's progress deadline is longer, so a slow but healthy boot
    does not mark the rollout failed."""
    spec = kubernetes_object("Deployment")["spec"]
    startup = container()["startupProbe"]
    readiness = container()["readinessProbe"]
    slowest_boot = startup["periodSeconds"] * startup["failureThreshold"] + readiness[
        "periodSeconds"
    ] * readiness.get("successThreshold", 1)
    assert spec.get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE_S) > slowest_boot


def test_traffic_reaches_only_ready_pods_and_capacity_never_drops() -> None:
    """Traffic follows /readyz, a rollout removes no pod before its replacement is ready,
    and a voluntary disruption (a node drain) may take a pod while the autoscaler's minimum
    keeps another serving."""
    assert container()["readinessProbe"]["httpGet"]["path"] == "/readyz"
    strategy = kubernetes_object("Deployment")["spec"]["strategy"]["rollingUpdate"]
    assert strategy["maxUnavailable"] == 0
    assert strategy["maxSurge"] >= 1
    budget = kubernetes_object("PodDisruptionBudget")["spec"]
    minimum = kubernetes_object("HorizontalPodAutoscaler")["spec"]["minReplicas"]
    assert 1 <= budget["maxUnavailable"] < minimum
