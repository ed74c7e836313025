"""deploy/kubernetes/: every manifest is valid Kubernetes, the kustomization builds, and the
numbers and settings the kit promises (probes, graceful stop, sandboxing, ingress limits,
migrations, placeholder secrets, network policies, the error backend) are what the manifests
say. The error backend's nginx configuration runs under real nginx.

kubernetes-validate checks against the JSON schemas it ships (no cluster, no network);
`kubectl kustomize` needs no cluster either.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pytest
import yaml

from chassis.settings import ServerSettings, Settings, SettingsError, tcp_port
from chassis.web.envelope import envelope_body
from chassis.web.health import READINESS_TIMEOUT_S
from harness import programs
from harness.processes import ROOT, base_env, free_port
from harness.proxy import ConfdNginx
from tests.deploy.files import compose_services, yaml_documents, yaml_file
from tests.nginx.test_kit_conf import ONE_MIB, send

BASE = ROOT / "deploy" / "kubernetes"
KUBERNETES_VALIDATE = ROOT / ".venv" / "bin" / "kubernetes-validate"
KUBECTL = programs.find("kubectl")
# The oldest Kubernetes the manifests promise to suit, and the tool's newest schemas.
OLDEST_KUBERNETES = "1.30.0"
IMAGE = "registry.example.com/kit"


@pytest.fixture
def needs_kubectl() -> None:
    """Skip (or fail, under KIT_REQUIRE_SERVICES) unless kubectl is installed."""
    programs.require("kubectl")


def load(name: str) -> dict[str, Any]:
    """One manifest of the base, parsed."""
    return yaml_file(BASE / name)


def documents(name: str) -> list[dict[str, Any]]:
    """Every object of a manifest file (errors.yaml and networkpolicy.yaml hold several)."""
    return yaml_documents((BASE / name).read_text())


def find(name: str, kind: str) -> dict[str, Any]:
    """The one object of `kind` in the manifest file `name`."""
    (found,) = [document for document in documents(name) if document["kind"] == kind]
    return found


def resources() -> list[str]:
    """The files kustomization.yaml lists as resources."""
    listed: list[str] = load("kustomization.yaml")["resources"]
    return listed


def gunicorn_default(name: str) -> int:
    """A server setting's declared default, e.g. GUNICORN_GRACEFUL_TIMEOUT's 30."""
    default = ServerSettings.model_fields[name.lower()].default
    assert isinstance(default, int), f"{name} has no whole-number default"
    return default


def workload(name: str) -> dict[str, Any]:
    """The one Deployment or Job in the manifest file `name`."""
    (found,) = [d for d in documents(name) if d["kind"] in {"Deployment", "Job"}]
    return found


def pod_spec(name: str) -> dict[str, Any]:
    """The pod template's spec of a workload manifest (deployment.yaml, migration-job.yaml,
    errors.yaml)."""
    spec: dict[str, Any] = workload(name)["spec"]["template"]["spec"]
    return spec


def pod_labels(name: str) -> dict[str, str]:
    """The labels a workload manifest puts on its pods."""
    labels: dict[str, str] = workload(name)["spec"]["template"]["metadata"]["labels"]
    return labels


def container(name: str) -> dict[str, Any]:
    """The single container of a workload manifest."""
    (only,) = pod_spec(name)["containers"]
    result: dict[str, Any] = only
    return result


WORKLOADS = [
    pytest.param("deployment.yaml", id="web-pods"),
    pytest.param("migration-job.yaml", id="migration-job"),
]
# Every pod the kit runs, the error backend's nginx included: sandboxed alike.
SANDBOXED = [*WORKLOADS, pytest.param("errors.yaml", id="error-backend")]


# --- Valid, complete, buildable ----------------------------------------------------------


@pytest.mark.parametrize(
    "version",
    [pytest.param(OLDEST_KUBERNETES, id="oldest"), pytest.param(None, id="newest")],
)
def test_manifests_pass_kubernetes_validate(version: str | None) -> None:
    """Every resource passes kubernetes-validate --strict (unknown fields are errors)."""
    pinned = ["--kubernetes-version", version] if version else []
    done = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "--quiet", *pinned, *resources()],
        cwd=BASE,
        capture_output=True,
        text=True,
        timeout=60,
        env=base_env(),
    )
    # --quiet prints only warnings (such as a kind it has no schema for) and failures.
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_every_manifest_is_a_kustomization_resource() -> None:
    """No manifest in the directory is left out of kustomization.yaml, and none is missing."""
    on_disk = {path.name for path in BASE.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(on_disk) == sorted(resources())


def kustomize(directory: Path) -> list[dict[str, Any]]:
    """Build `directory` with kubectl kustomize and return the rendered objects."""
    assert KUBECTL is not None
    done = subprocess.run(
        [KUBECTL, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        env=base_env(),
    )
    assert done.returncode == 0, done.stderr
    return yaml_documents(done.stdout)


@pytest.mark.usefixtures("needs_kubectl")
def test_kustomization_builds_every_resource() -> None:
    """kubectl kustomize renders every object of every resource file."""
    kinds = sorted(document["kind"] for document in kustomize(BASE))
    expected = sorted(document["kind"] for name in resources() for document in documents(name))
    assert kinds == expected


@pytest.mark.usefixtures("needs_kubectl")
def test_one_image_override_sets_web_and_migration_images(tmp_path: Path) -> None:
    """The kustomization's `images:` entry retags the web pods and the migration Job alike,
    and leaves the error backend's nginx alone."""
    copy = tmp_path / "kubernetes"
    shutil.copytree(BASE, copy)
    kustomization = copy / "kustomization.yaml"
    text = kustomization.read_text()
    assert "newTag: 0.1.0" in text
    kustomization.write_text(text.replace("newTag: 0.1.0", "newTag: 9.9.9"))

    images = {
        document["metadata"]["name"]: [
            c["image"] for c in document["spec"]["template"]["spec"]["containers"]
        ]
        for document in kustomize(copy)
        if document["kind"] in {"Deployment", "Job"}
    }
    assert images == {
        "kit": [f"{IMAGE}:9.9.9"],
        "kit-migrate": [f"{IMAGE}:9.9.9"],
        "kit-errors": [compose_services()["nginx"]["image"]],
    }


# --- Probes and graceful shutdown ---------------------------------------------------------


@pytest.mark.parametrize(
    ("probe", "path"),
    [
        pytest.param("startupProbe", "/healthz", id="startup-healthz"),
        pytest.param("livenessProbe", "/healthz", id="liveness-never-the-database"),
        pytest.param("readinessProbe", "/readyz", id="readiness-checks-the-database"),
    ],
)
def test_probe_path(probe: str, path: str) -> None:
    """Each probe asks the endpoint meant for it, on the named port."""
    assert container("deployment.yaml")[probe]["httpGet"] == {"path": path, "port": "http"}


def test_startup_probe_allows_a_minute_to_boot() -> None:
    """The startup probe gives gunicorn and its workers 60 s before the pod is restarted."""
    probe = container("deployment.yaml")["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] == 60


def test_readiness_timeout_exceeds_readyz_deadline() -> None:
    """The kubelet waits longer than /readyz's own database deadline, so it gets the 503."""
    assert container("deployment.yaml")["readinessProbe"]["timeoutSeconds"] > READINESS_TIMEOUT_S


def test_liveness_outlasts_gunicorn_worker_timeout() -> None:
    """gunicorn replaces a stuck worker (timeout 30 s) before liveness restarts the pod."""
    probe = container("deployment.yaml")["livenessProbe"]
    silence = probe["periodSeconds"] * probe["failureThreshold"]
    assert silence > gunicorn_default("GUNICORN_TIMEOUT")


def test_pre_stop_sleeps_ten_seconds() -> None:
    """preStop keeps serving 10 s while the endpoint removal reaches the ingress controller."""
    assert container("deployment.yaml")["lifecycle"]["preStop"] == {
        "exec": {"command": ["sleep", "10"]}
    }


def test_grace_period_covers_pre_stop_and_gunicorn_graceful_timeout() -> None:
    """terminationGracePeriodSeconds (45) >= preStop sleep (10) + graceful_timeout (30)."""
    grace = pod_spec("deployment.yaml")["terminationGracePeriodSeconds"]
    pre_stop = int(container("deployment.yaml")["lifecycle"]["preStop"]["exec"]["command"][1])
    assert grace == 45
    assert pre_stop + gunicorn_default("GUNICORN_GRACEFUL_TIMEOUT") <= grace


def test_rolling_update_never_reduces_capacity() -> None:
    """A rollout adds one pod before it removes one."""
    strategy = load("deployment.yaml")["spec"]["strategy"]
    assert strategy == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }


def test_autoscaler_owns_the_replica_count() -> None:
    """The Deployment sets no replicas (apply would reset the HPA's count); the HPA runs 2-10
    pods at 70% CPU."""
    hpa = load("hpa.yaml")["spec"]
    assert "replicas" not in load("deployment.yaml")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70


def test_disruption_budget_and_service_select_the_web_pods() -> None:
    """The PDB and the Service select exactly the Deployment's pods."""
    deployment = load("deployment.yaml")["spec"]
    labels = deployment["template"]["metadata"]["labels"]
    assert deployment["selector"]["matchLabels"] == labels
    assert load("pdb.yaml")["spec"]["selector"]["matchLabels"] == labels
    assert load("service.yaml")["spec"]["selector"] == labels


# --- The container ------------------------------------------------------------------------


@pytest.mark.parametrize("name", WORKLOADS)
def test_pod_runs_as_the_image_user(name: str) -> None:
    """Pods run as UID/GID 10001 (the image's `app`), never root, with the default seccomp."""
    assert pod_spec(name)["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


@pytest.mark.parametrize("name", SANDBOXED)
def test_container_is_read_only_without_privileges(name: str) -> None:
    """No privilege escalation, no capabilities, a read-only root file system."""
    assert container(name)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


@pytest.mark.parametrize("name", SANDBOXED)
def test_tmp_is_a_writable_empty_dir(name: str) -> None:
    """/tmp is an emptyDir, writable on the read-only root file system."""
    mounts = {m["mountPath"]: m["name"] for m in container(name)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(name)["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("name", SANDBOXED)
def test_resources_are_requested_and_limited(name: str) -> None:
    """CPU and memory have requests (scheduling, the HPA) and limits."""
    resources = container(name)["resources"]
    assert sorted(resources["requests"]) == ["cpu", "memory"]
    assert sorted(resources["limits"]) == ["cpu", "memory"]


@pytest.mark.parametrize("name", WORKLOADS)
def test_environment_comes_from_the_configmap_and_secret(name: str) -> None:
    """Web pods and the migration Job read the same ConfigMap and Secret, nothing inline."""
    assert container(name)["envFrom"] == [
        {"configMapRef": {"name": "kit"}},
        {"secretRef": {"name": "kit"}},
    ]
    assert "env" not in container(name)


def test_container_port_matches_bind_and_service() -> None:
    """The container listens where GUNICORN_BIND and METRICS_BIND say; the Service targets
    the app's port by name, and only that one."""
    data = load("configmap.yaml")["data"]
    assert container("deployment.yaml")["ports"] == [
        {"name": "http", "containerPort": tcp_port(data["GUNICORN_BIND"]), "protocol": "TCP"},
        {"name": "metrics", "containerPort": tcp_port(data["METRICS_BIND"]), "protocol": "TCP"},
    ]
    assert [port["targetPort"] for port in load("service.yaml")["spec"]["ports"]] == ["http"]


def test_pod_annotations_point_prometheus_at_the_metrics_listener() -> None:
    """prometheus.io/* on the web pods name METRICS_BIND's port and /metrics."""
    annotations = workload("deployment.yaml")["spec"]["template"]["metadata"]["annotations"]
    assert annotations == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": str(tcp_port(load("configmap.yaml")["data"]["METRICS_BIND"])),
        "prometheus.io/path": "/metrics",
    }


def test_worker_count_is_sized_for_the_cpu_limit() -> None:
    """WEB_CONCURRENCY is 2 x the CPU limit + 1, gunicorn's rule for sync workers."""
    data = load("configmap.yaml")["data"]
    cpu_limit = container("deployment.yaml")["resources"]["limits"]["cpu"]
    assert data["GUNICORN_WORKER_CLASS"] == "sync"
    assert int(data["WEB_CONCURRENCY"]) == 2 * int(cpu_limit) + 1


# --- Configuration and secrets ------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("APP_ENV", "production", id="production"),
        pytest.param("LOG_FORMAT", "json", id="json-logs"),
        pytest.param("GUNICORN_BIND", "0.0.0.0:8000", id="all-interfaces-in-the-pod"),
        pytest.param("PROXY_FIX_X_FOR", "1", id="x-for-one-hop"),
        pytest.param("PROXY_FIX_X_PROTO", "1", id="x-proto-one-hop"),
        pytest.param("PROXY_FIX_X_HOST", "1", id="x-host-one-hop"),
        pytest.param("PROXY_FIX_X_PORT", None, id="x-port-untrusted"),
        pytest.param("PROXY_FIX_X_PREFIX", None, id="x-prefix-untrusted"),
    ],
)
def test_configmap_value(name: str, expected: str | None) -> None:
    """The ConfigMap configures production behind exactly one proxy."""
    assert load("configmap.yaml")["data"].get(name) == expected


def test_placeholder_secret_is_refused_in_production() -> None:
    """The Secret as shipped stops the app at boot with an error naming SECRET_KEY."""
    environ = load("configmap.yaml")["data"] | load("secret.yaml")["stringData"]
    with pytest.raises(SettingsError, match="placeholder") as refused:
        Settings.from_env(environ)
    assert refused.value.name == "SECRET_KEY"


def test_configmap_is_valid_production_configuration() -> None:
    """With a real secret in place the ConfigMap and Secret make valid production settings."""
    environ = load("configmap.yaml")["data"] | load("secret.yaml")["stringData"]
    settings = Settings.from_env(
        environ | {"SECRET_KEY": "41711232685a807333d10f8ef950f07a275d805c268bef96e7c559329c2ee984"}
    )
    assert (settings.app_env, settings.proxy_fix_x_for) == ("production", 1)


# --- Ingress and migrations ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        pytest.param("proxy-body-size", "1m", id="body-size-matches-max-content-length"),
        pytest.param("proxy-read-timeout", "60", id="read-timeout"),
        pytest.param("proxy-send-timeout", "60", id="send-timeout"),
    ],
)
def test_ingress_annotation(annotation: str, expected: str) -> None:
    """The ingress-nginx annotations carry the kit's body limit and proxy timeouts."""
    annotations = load("ingress.yaml")["metadata"]["annotations"]
    assert annotations[f"nginx.ingress.kubernetes.io/{annotation}"] == expected


def test_ingress_read_timeout_outlasts_gunicorn_timeout() -> None:
    """The controller waits longer than gunicorn lets a request run, so the app answers."""
    annotations = load("ingress.yaml")["metadata"]["annotations"]
    timeout = int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"])
    assert timeout >= gunicorn_default("GUNICORN_TIMEOUT")


def test_ingress_routes_to_the_service() -> None:
    """The nginx ingress class sends every path to the Service's http port."""
    spec = load("ingress.yaml")["spec"]
    (path,) = spec["rules"][0]["http"]["paths"]
    assert spec["ingressClassName"] == "nginx"
    assert path["backend"] == {"service": {"name": "kit", "port": {"name": "http"}}}


def test_migration_job_runs_alembic_upgrade_head_once() -> None:
    """The Job runs `alembic upgrade heads` with the web image and is not restarted in place."""
    assert container("migration-job.yaml")["command"] == ["alembic", "upgrade", "heads"]
    assert container("migration-job.yaml")["image"] == container("deployment.yaml")["image"]
    assert pod_spec("migration-job.yaml")["restartPolicy"] == "Never"


def test_image_placeholder_is_the_kustomization_image() -> None:
    """The manifests' image name is the one kustomization.yaml's `images:` overrides."""
    (override,) = load("kustomization.yaml")["images"]
    assert container("deployment.yaml")["image"].rsplit(":", 1)[0] == override["name"] == IMAGE


# --- Network policies ---------------------------------------------------------------------

# The peers the policies name, written out: one namespace selector for the controller, and for
# DNS one peer holding both selectors (the kube-dns pods *in* kube-system; two peers would
# mean either).
INGRESS_CONTROLLER = {
    "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
}
FROM_THE_CONTROLLER_ON_HTTP = {
    "from": [INGRESS_CONTROLLER],
    "ports": [{"protocol": "TCP", "port": "http"}],
}
FROM_MONITORING_ON_METRICS = {
    "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
    "ports": [{"protocol": "TCP", "port": "metrics"}],
}
TO_THE_DATABASE = {"ports": [{"protocol": "TCP", "port": 5432}]}
TO_DNS = {
    "to": [
        {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}},
            "podSelector": {"matchLabels": {"k8s-app": "kube-dns"}},
        }
    ],
    "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
}


def network_policies() -> dict[str, dict[str, Any]]:
    """Every NetworkPolicy of the kustomization, by name."""
    return {
        document["metadata"]["name"]: document
        for name in resources()
        for document in documents(name)
        if document["kind"] == "NetworkPolicy"
    }


def selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    """Whether the policy's podSelector matches pods with `labels` (matchLabels only)."""
    selector = policy["spec"]["podSelector"]
    assert list(selector) == ["matchLabels"], "only matchLabels is read here"
    wanted: dict[str, str] = selector["matchLabels"]
    return wanted.items() <= labels.items()


def test_each_policy_selects_exactly_one_workloads_pods() -> None:
    """Each NetworkPolicy's podSelector matches the pods of one workload, and every workload
    of the kustomization has one: a selector that matched nothing would leave pods open."""
    workloads = [
        name
        for name in resources()
        if any(
            d["kind"] in {"Deployment", "Job", "StatefulSet", "DaemonSet"} for d in documents(name)
        )
    ]
    selected = {
        policy: [name for name in workloads if selects(document, pod_labels(name))]
        for policy, document in network_policies().items()
    }
    assert selected == {
        "kit": ["deployment.yaml"],
        "kit-migrate": ["migration-job.yaml"],
        "kit-errors": ["errors.yaml"],
    }
    assert sorted(name for names in selected.values() for name in names) == sorted(workloads)


@pytest.mark.parametrize(
    ("policy", "allowed_in", "allowed_out"),
    [
        pytest.param(
            "kit",
            [FROM_THE_CONTROLLER_ON_HTTP, FROM_MONITORING_ON_METRICS],
            [TO_THE_DATABASE, TO_DNS],
            id="web-pods",
        ),
        pytest.param("kit-migrate", [], [TO_THE_DATABASE, TO_DNS], id="migration-job"),
        pytest.param("kit-errors", [FROM_THE_CONTROLLER_ON_HTTP], [], id="error-backend"),
    ],
)
def test_policy_allows_only_these_peers_and_ports(
    policy: str, allowed_in: list[dict[str, Any]], allowed_out: list[dict[str, Any]]
) -> None:
    """Isolated both ways; in only from the controller's namespace on "http" (and, for the
    web pods, from the monitoring namespace on "metrics"), out only to the database and DNS
    (the error backend: nowhere)."""
    spec = network_policies()[policy]["spec"]
    assert spec["policyTypes"] == ["Ingress", "Egress"]
    assert spec.get("ingress", []) == allowed_in
    assert spec.get("egress", []) == allowed_out


@pytest.mark.parametrize(
    ("name", "service_file"),
    [
        pytest.param("deployment.yaml", "service.yaml", id="web-pods"),
        pytest.param("errors.yaml", "errors.yaml", id="error-backend"),
    ],
)
def test_policy_port_http_is_the_port_the_service_targets(name: str, service_file: str) -> None:
    """The named port the policy opens to the controller ("http") is a port of the
    workload's container, the one its Service sends to."""
    assert find(service_file, "Service")["spec"]["ports"][0]["targetPort"] == "http"
    assert "http" in {port["name"] for port in container(name)["ports"]}


# --- Optional monitoring -------------------------------------------------------------------

MONITORING = BASE / "monitoring"


def monitoring(kind: str) -> dict[str, Any]:
    """The one object of `kind` in monitoring/servicemonitor.yaml."""
    (found,) = [
        d
        for d in yaml_documents((MONITORING / "servicemonitor.yaml").read_text())
        if d["kind"] == kind
    ]
    return found


@pytest.mark.usefixtures("needs_kubectl")
def test_monitoring_kustomization_builds_its_service_and_service_monitor() -> None:
    """The optional monitoring/ builds apart from the base: a Service and a ServiceMonitor."""
    assert sorted(d["kind"] for d in kustomize(MONITORING)) == ["Service", "ServiceMonitor"]


def test_metrics_service_passes_kubernetes_validate(tmp_path: Path) -> None:
    """The metrics Service is valid Kubernetes (the ServiceMonitor's kind is a CRD, which
    kubernetes-validate has no schema for, hence not in the base)."""
    service = tmp_path / "service.yaml"
    service.write_text(yaml.safe_dump(monitoring("Service")))
    done = subprocess.run(
        [str(KUBERNETES_VALIDATE), "--strict", "--quiet", str(service)],
        capture_output=True,
        text=True,
        timeout=60,
        env=base_env(),
    )
    assert (done.returncode, done.stdout + done.stderr) == (0, "")


def test_service_monitor_scrapes_the_web_pods_metrics_port() -> None:
    """ServiceMonitor -> the metrics Service (by its labels, its port's name) -> the web
    pods' port "metrics", at /metrics: the chain the policy's port "metrics" opens."""
    service, monitor = monitoring("Service"), monitoring("ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    (endpoint,) = monitor["spec"]["endpoints"]
    (port,) = service["spec"]["ports"]
    assert (endpoint["port"], endpoint["path"]) == (port["name"], "/metrics")
    assert service["spec"]["selector"].items() <= pod_labels("deployment.yaml").items()
    assert port["targetPort"] == "metrics"
    assert "metrics" in {p["name"] for p in container("deployment.yaml")["ports"]}


def test_database_rule_is_the_database_urls_port() -> None:
    """The egress port for PostgreSQL is the one DATABASE_URL (secret.yaml) connects to."""
    url = load("secret.yaml")["stringData"]["DATABASE_URL"]
    assert urlsplit(url).port == TO_THE_DATABASE["ports"][0]["port"] == 5432


# --- The error backend: manifests ---------------------------------------------------------

# What the backend answers for each code the Ingress hands it, in nginx/kit/http.conf's words.
ERROR_MESSAGES = {
    413: "request body is over the 1 MiB limit",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}
INGRESS_ANNOTATION = "nginx.ingress.kubernetes.io/"


def error_server_conf() -> str:
    """errors.conf, the error backend's nginx configuration, from its ConfigMap."""
    conf: str = find("errors.yaml", "ConfigMap")["data"]["errors.conf"]
    return conf


def test_ingress_hands_its_own_errors_to_the_error_backend() -> None:
    """The Ingress sends the codes the backend answers to the backend's Service, and leaves
    the app's own answers alone."""
    annotations = load("ingress.yaml")["metadata"]["annotations"]
    codes = [
        int(code) for code in annotations[f"{INGRESS_ANNOTATION}custom-http-errors"].split(",")
    ]
    assert codes == sorted(ERROR_MESSAGES)
    assert (
        annotations[f"{INGRESS_ANNOTATION}default-backend"]
        == find("errors.yaml", "Service")["metadata"]["name"]
    )
    assert annotations[f"{INGRESS_ANNOTATION}disable-proxy-intercept-errors"] == "true"


def test_error_messages_are_the_kit_nginxs() -> None:
    """Each message is the one nginx/kit/http.conf writes for the same status, and the 413's
    limit is the Ingress's proxy-body-size."""
    http_conf = (ROOT / "nginx" / "kit" / "http.conf").read_text()
    block = http_conf.split("map $status $kit_error_msg {", 1)[1].split("}", 1)[0]
    kit_messages = {
        int(code): msg for code, msg in re.findall(r'^\s*(\d{3})\s+"([^"]*)";', block, re.M)
    }
    assert {code: kit_messages[code] for code in ERROR_MESSAGES} == ERROR_MESSAGES
    body_size = load("ingress.yaml")["metadata"]["annotations"][
        f"{INGRESS_ANNOTATION}proxy-body-size"
    ]
    assert re.fullmatch(r"\d+m", body_size), body_size
    assert f"over the {body_size.removesuffix('m')} MiB limit" in ERROR_MESSAGES[413]


def test_error_backend_image_is_composes_pinned_nginx() -> None:
    """The backend runs the nginx image compose.yaml runs, pinned to a version tag."""
    image = container("errors.yaml")["image"]
    assert image == compose_services()["nginx"]["image"]
    assert re.fullmatch(r"[\w./-]+:\d+\.\d+\.\d+[\w.-]*", image), image


def test_error_backend_runs_as_the_images_user_without_api_access() -> None:
    """nginx runs as the image's UID/GID 101, never root, with no service account token and
    no Service variables."""
    spec = pod_spec("errors.yaml")
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 101,
        "runAsGroup": 101,
        "fsGroup": 101,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert (spec["automountServiceAccountToken"], spec["enableServiceLinks"]) == (False, False)


def test_error_backend_probes_use_a_port_the_service_does_not_expose() -> None:
    """Readiness and liveness ask /healthz on the probe port; the Service exposes only the
    error port, where every path is an error."""
    probed = container("errors.yaml")
    for probe in ("readinessProbe", "livenessProbe"):
        assert probed[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    ports = find("errors.yaml", "Service")["spec"]["ports"]
    assert [port["targetPort"] for port in ports] == ["http"]


def test_error_server_listens_on_the_container_ports() -> None:
    """errors.conf listens on the container's ports "http" and "health", nothing else."""
    ports = {port["name"]: port["containerPort"] for port in container("errors.yaml")["ports"]}
    listens = re.findall(r"^\s*listen\s+([^;]+);", error_server_conf(), re.M)
    assert sorted(listens) == sorted(str(ports[name]) for name in ("http", "health"))


def test_error_backend_keeps_two_pods_through_drains() -> None:
    """Two pods, and its PodDisruptionBudget evicts one at a time: with none ready the
    controller's own 404 page would replace every error."""
    assert workload("errors.yaml")["spec"]["replicas"] == 2
    budget = find("errors.yaml", "PodDisruptionBudget")["spec"]
    assert budget["maxUnavailable"] == 1
    assert budget["selector"]["matchLabels"] == pod_labels("errors.yaml")
    assert find("errors.yaml", "Service")["spec"]["selector"] == pod_labels("errors.yaml")


# --- The error backend under real nginx ---------------------------------------------------

HEX32 = re.compile(r"[0-9a-f]{32}")


class ErrorBackend(NamedTuple):
    """The running error server's ports on 127.0.0.1."""

    errors: int  # the controller's: the Service's port "http"
    health: int  # the kubelet's


@pytest.fixture(scope="module")
def error_backend(
    requires_nginx: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ErrorBackend]:
    """errors.conf as its ConfigMap holds it, in conf.d under Debian's stock nginx.conf (as the
    image includes it: inside http {}), with only its listen ports moved to 127.0.0.1."""
    ports = {port["name"]: port["containerPort"] for port in container("errors.yaml")["ports"]}
    backend = ErrorBackend(errors=free_port(), health=free_port())
    conf = error_server_conf()
    for name, port in (("http", backend.errors), ("health", backend.health)):
        listen = f"listen {ports[name]};"
        assert conf.count(listen) == 1, listen
        conf = conf.replace(listen, f"listen 127.0.0.1:{port};")
    server = ConfdNginx(tmp_path_factory.mktemp("errors"), {"errors.conf": conf}, backend.errors)
    server.start()
    yield backend
    server.stop()


@pytest.mark.parametrize(
    ("x_code", "status"),
    [
        pytest.param("413", 413, id="413-body-over-the-limit"),
        pytest.param("502", 502, id="502-pod-refused"),
        pytest.param("503", 503, id="503-no-ready-pod"),
        pytest.param("504", 504, id="504-connect-timed-out"),
        pytest.param("500", 503, id="unlisted-code-is-503"),
        pytest.param(None, 503, id="no-x-code-is-503"),
    ],
)
def test_error_backend_answers_each_code_with_its_envelope(
    error_backend: ErrorBackend, x_code: str | None, status: int
) -> None:
    """The status named in X-Code, as the app's envelope: JSON, never stored, the controller's
    X-Request-ID as its id; any other X-Code, or none, is a 503.

    What differs from a cluster (no controller runs here: no cluster, no registry): requests
    come straight from the test with the headers the controller sets, not from its
    `@custom_..._<code>` location (which sends the path `/` and keeps the method) or, while
    the app has no ready pod, its own location (the client's path, X-Code 503); nginx is
    Debian's 1.22 under Debian's stock nginx.conf, not the image's 1.28 under its own (both
    include conf.d/*.conf inside http {}), running as root with www-data workers instead of
    UID 101 on a read-only root file system, without the image's entrypoint scripts; its
    ports are 127.0.0.1's free ones instead of 8080 and 8081. That the controller passes
    this answer on unchanged (`error_page <code> = @custom...`: status, headers and body) is
    ingress-nginx's documented behaviour, not exercised here.
    """
    headers = {"X-Request-ID": "req-1", **({"X-Code": x_code} if x_code else {})}
    answer = send(error_backend.errors, "GET", "/", headers)
    assert answer.status == status
    assert answer.header("Content-Type") == "application/json"
    assert answer.header("Cache-Control") == "no-store"
    assert answer.header("X-Content-Type-Options") == "nosniff"
    assert answer.header("X-Tracking-ID") == "req-1"
    expected = envelope_body(status, ERROR_MESSAGES[status], None, "req-1")
    assert list(answer.json().items()) == list(expected.items())


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        pytest.param({"X-Request-ID": "req-1"}, "req-1", id="controller-request-id"),
        pytest.param(
            {"X-Request-ID": "req-1", "X-Tracking-ID": "client:42"}, "client:42", id="client-id"
        ),
        pytest.param(
            {"X-Request-ID": "req-1", "X-Tracking-ID": "has space"}, "req-1", id="invalid-client-id"
        ),
    ],
)
def test_error_envelope_keeps_the_requests_id(
    error_backend: ErrorBackend, headers: dict[str, str], expected: str
) -> None:
    """A valid X-Tracking-ID (the client's, as the app reads it) wins, else the controller's
    X-Request-ID; header and body agree."""
    answer = send(error_backend.errors, "GET", "/", {"X-Code": "502", **headers})
    assert (answer.header("X-Tracking-ID"), answer.json()["tracking_id"]) == (expected, expected)


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-id"),
        pytest.param({"X-Request-ID": "x" * 129}, id="request-id-too-long"),
        pytest.param({"X-Request-ID": 'r","code":200,"x":"'}, id="request-id-with-quotes"),
    ],
)
def test_error_envelope_mints_an_id_for_a_missing_or_unsafe_one(
    error_backend: ErrorBackend, headers: dict[str, str]
) -> None:
    """The controller passes a client's X-Request-ID on unchecked; one the app's rule refuses
    is replaced by nginx's own (32 hex characters), so the body stays the envelope."""
    answer = send(error_backend.errors, "GET", "/", {"X-Code": "502", **headers})
    body = answer.json()
    assert HEX32.fullmatch(str(answer.header("X-Tracking-ID")))
    assert (body["code"], body["tracking_id"]) == (502, answer.header("X-Tracking-ID"))


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        pytest.param("POST", "/api/widgets", b'{"name": "x"}', id="post"),
        pytest.param("DELETE", "/api/widgets/7?force=1", None, id="delete-with-query"),
        pytest.param("PUT", "/api/widgets/7", b"x" * (2 * ONE_MIB), id="body-over-1-mib"),
    ],
)
def test_request_forwarded_while_no_pod_is_ready_gets_the_503(
    error_backend: ErrorBackend, method: str, path: str, body: bytes | None
) -> None:
    """While the app has no ready pod the controller forwards the client's own request with
    X-Code 503: any method, path or body size gets the 503 envelope, never a 405 or 413."""
    answer = send(error_backend.errors, method, path, {"X-Code": "503"}, body=body)
    assert answer.status == 503
    assert answer.json()["msg"] == ERROR_MESSAGES[503]


def test_healthz_is_200_on_the_probe_port_only(error_backend: ErrorBackend) -> None:
    """The kubelet's /healthz answers 200 on the probe port; on the error port /healthz is a
    client's path like any other, answered with its error."""
    assert send(error_backend.health, "GET", "/healthz").status == 200
    assert send(error_backend.errors, "GET", "/healthz", {"X-Code": "503"}).status == 503
