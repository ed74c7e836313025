"""deploy/kubernetes/: every manifest is valid Kubernetes, the kustomization builds, and the
numbers and settings the kit promises (probes, graceful stop, sandboxing, ingress limits,
migrations, placeholder secrets) are what the manifests say.

kubernetes-validate checks against the JSON schemas it ships (no cluster, no network);
`kubectl kustomize` needs no cluster either.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from chassis.health import READINESS_TIMEOUT_S
from chassis.settings import ServerSettings, Settings, SettingsError
from tests.conftest import require_service
from tests.deploy.files import yaml_documents, yaml_file
from tests.processes import ROOT, base_env

BASE = ROOT / "deploy" / "kubernetes"
KUBERNETES_VALIDATE = ROOT / ".venv" / "bin" / "kubernetes-validate"
KUBECTL = shutil.which("kubectl")
# The oldest Kubernetes the manifests promise to suit, and the tool's newest schemas.
OLDEST_KUBERNETES = "1.30.0"
IMAGE = "registry.example.com/kit"


@pytest.fixture
def needs_kubectl() -> None:
    """Skip (or fail, under KIT_REQUIRE_SERVICES) unless kubectl is installed."""
    if KUBECTL is None:
        require_service("kubectl is not installed (Debian 13: apt-get install kubectl)")


def load(name: str) -> dict[str, Any]:
    """One manifest of the base, parsed."""
    return yaml_file(BASE / name)


def resources() -> list[str]:
    """The files kustomization.yaml lists as resources."""
    listed: list[str] = load("kustomization.yaml")["resources"]
    return listed


def gunicorn_default(name: str) -> int:
    """A server setting's declared default, e.g. GUNICORN_GRACEFUL_TIMEOUT's 30."""
    default = ServerSettings.model_fields[name.lower()].default
    assert isinstance(default, int), f"{name} has no whole-number default"
    return default


def pod_spec(name: str) -> dict[str, Any]:
    """The pod template's spec of a workload manifest (deployment.yaml, migration-job.yaml)."""
    spec: dict[str, Any] = load(name)["spec"]["template"]["spec"]
    return spec


def container(name: str) -> dict[str, Any]:
    """The single container of a workload manifest."""
    (only,) = pod_spec(name)["containers"]
    result: dict[str, Any] = only
    return result


WORKLOADS = [
    pytest.param("deployment.yaml", id="web-pods"),
    pytest.param("migration-job.yaml", id="migration-job"),
]


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
    """kubectl kustomize renders one object per resource file."""
    kinds = sorted(document["kind"] for document in kustomize(BASE))
    expected = sorted(load(name)["kind"] for name in resources())
    assert kinds == expected


@pytest.mark.usefixtures("needs_kubectl")
def test_one_image_override_sets_web_and_migration_images(tmp_path: Path) -> None:
    """The kustomization's `images:` entry retags the web pods and the migration Job alike."""
    copy = tmp_path / "kubernetes"
    shutil.copytree(BASE, copy)
    kustomization = copy / "kustomization.yaml"
    text = kustomization.read_text()
    assert "newTag: 0.1.0" in text
    kustomization.write_text(text.replace("newTag: 0.1.0", "newTag: 9.9.9"))

    images = {
        document["kind"]: [c["image"] for c in document["spec"]["template"]["spec"]["containers"]]
        for document in kustomize(copy)
        if document["kind"] in {"Deployment", "Job"}
    }
    assert images == {"Deployment": [f"{IMAGE}:9.9.9"], "Job": [f"{IMAGE}:9.9.9"]}


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


@pytest.mark.parametrize("name", WORKLOADS)
def test_container_is_read_only_without_privileges(name: str) -> None:
    """No privilege escalation, no capabilities, a read-only root file system."""
    assert container(name)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }


@pytest.mark.parametrize("name", WORKLOADS)
def test_tmp_is_a_writable_empty_dir(name: str) -> None:
    """/tmp is an emptyDir, the one writable path beside /dev/shm."""
    mounts = {m["mountPath"]: m["name"] for m in container(name)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_spec(name)["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("name", WORKLOADS)
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
    """The container listens where GUNICORN_BIND says; the Service targets that port by name."""
    bind = load("configmap.yaml")["data"]["GUNICORN_BIND"]
    assert container("deployment.yaml")["ports"] == [
        {"name": "http", "containerPort": int(bind.rsplit(":", 1)[1]), "protocol": "TCP"}
    ]
    assert load("service.yaml")["spec"]["ports"][0]["targetPort"] == "http"


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
    settings = Settings.from_env(environ | {"SECRET_KEY": "r" * 64})
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
