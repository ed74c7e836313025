"""A Kubernetes rollout with no gap, checked in the manifests alone (deploy/kubernetes/): no
API server runs here, so neither a server-side dry run nor a real rollout can.

Each check is one way a rolling update drops requests when two numbers disagree. The
numbers outside the manifests are the defaults of the parts a cluster brings, named where
they are used: ingress-nginx (the Ingress's class) and kube-proxy.
"""

from __future__ import annotations

from tests.deploy.test_agreement import deployment_environments, resolve_gunicorn
from tests.deploy.test_kubernetes import container, load

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
WEB = "deployment.yaml"


def test_pre_stop_outlasts_the_endpoint_propagation() -> None:
    """A terminating pod keeps serving until the ingress has stopped sending to it: gunicorn
    gets SIGTERM, and closes its socket, only after the preStop pause. (That the grace
    period covers the pause and gunicorn's graceful timeout: test_kubernetes.py and
    test_agreement.py.)"""
    command = container(WEB)["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep", command
    assert float(command[1]) > ENDPOINT_PROPAGATION_S


def test_gunicorn_outlasts_the_ingress_idle_connections() -> None:
    """gunicorn, under the ConfigMap's environment, keeps an idle connection open longer
    than ingress-nginx does, so the ingress never sends a request down a connection gunicorn
    is closing."""
    keepalive = resolve_gunicorn(deployment_environments()["k8s"])["keepalive"]
    assert keepalive > INGRESS_UPSTREAM_KEEPALIVE_S


def test_a_slow_boot_is_not_a_failed_rollout() -> None:
    """A new pod may take the startup probe's whole budget and a readiness period before it
    takes traffic; the Deployment's progress deadline is longer, so a slow but healthy boot
    does not mark the rollout failed."""
    startup, readiness = container(WEB)["startupProbe"], container(WEB)["readinessProbe"]
    slowest_boot = startup["periodSeconds"] * startup["failureThreshold"] + readiness[
        "periodSeconds"
    ] * readiness.get("successThreshold", 1)
    deadline = load(WEB)["spec"].get("progressDeadlineSeconds", DEFAULT_PROGRESS_DEADLINE_S)
    assert deadline > slowest_boot


def test_a_node_drain_leaves_the_autoscalers_minimum_serving() -> None:
    """A voluntary disruption (a node drain) may take a pod, never all that the autoscaler
    keeps at least: the disruption budget allows fewer than its minimum."""
    budget = load("pdb.yaml")["spec"]
    assert 1 <= budget["maxUnavailable"] < load("hpa.yaml")["spec"]["minReplicas"]
