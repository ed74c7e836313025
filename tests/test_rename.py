"""`make rename name=...` renames the service everywhere, in a copy of this repository: the
copy then lints, type-checks, passes the tests where the name matters, and its nginx, compose
and Kubernetes files are accepted by the real tools, with no trace of the old name left."""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

from harness import programs
from harness.processes import ROOT, base_env
from template.rename import current_name, project_files, rewrite, word
from tests.support.checkout import copy_repository, nested_pytest_args, run

NEW = "orders-api"
OLD, PROJECT = current_name(ROOT)
# The tests whose subject carries the name: settings and logs, the deploy files (units,
# programs, users, paths, Kubernetes objects), nginx under the stock outer files.
NAMED_TESTS = [
    "tests/chassis/test_settings.py",
    "tests/chassis/test_log.py",
    "tests/test_gunicorn_conf.py",
    "tests/deploy/test_agreement.py",
    "tests/deploy/test_kubernetes.py",
    "tests/deploy/test_systemd.py",
    "tests/deploy/test_supervisor.py",
    "tests/deploy/test_workflows.py",
    "tests/nginx",
]


def renamed(name: str) -> str:
    """`name` as the rename writes it."""
    return rewrite(name, OLD, NEW, PROJECT)


@pytest.fixture(scope="module")
def copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the repository, renamed with the README's command."""
    repo = copy_repository(tmp_path_factory.mktemp("rename") / "repo")
    # nginx's workers (www-data) serve app/static from the copy, as they do from a checkout:
    # open the directories above it that pytest made private.
    for parent in [repo, *repo.parents][:4]:
        parent.chmod(parent.stat().st_mode | 0o055)
    changed = run(repo, "make", "rename", f"name={NEW}").stdout
    assert f"moved deploy/systemd/{OLD}.service -> deploy/systemd/{NEW}.service" in changed
    return repo


def test_no_trace_of_the_old_name_is_left(copy: Path) -> None:
    """Outside the CHANGELOG, the old name is in no file's name or text, in any spelling."""
    old = word(OLD)
    left = []
    for path in project_files(copy):
        if path.name == "CHANGELOG.md":
            continue
        text = (copy / path).read_bytes().decode("utf-8", errors="replace")
        left += [f"{path}: {m.group(0)}" for m in old.finditer(f"{path}\n{text}")]
        left += [f"{path}: {PROJECT}"] if PROJECT in text else []
    assert left == []


def test_the_service_takes_its_own_identity(copy: Path) -> None:
    """The README's title and the description /openapi.json and /docs show are the
    service's, not the template's."""
    project = tomllib.loads((copy / "pyproject.toml").read_text())["project"]
    assert (project["name"], project["description"]) == (
        NEW,
        f"The {NEW} service, on a Flask production chassis.",
    )
    assert (copy / "README.md").read_text().splitlines()[0] == f"# {NEW}: a Flask service"


def test_renaming_again_changes_nothing(copy: Path) -> None:
    """The same name twice is a no-op (copier runs it after every update)."""
    assert (
        run(copy, "make", "rename", f"name={NEW}").stdout.strip().endswith(f"already named {NEW}")
    )


@pytest.mark.parametrize("bad", ["Orders", "orders_api", "orders-", "orders--api", "x" * 41])
def test_a_bad_name_is_refused_before_anything_changes(bad: str, tmp_path: Path) -> None:
    """A name no Kubernetes object, Linux user or unit could carry exits 2, changing nothing."""
    done = subprocess.run(
        ["python3", str(ROOT / "template" / "rename.py"), bad],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert done.stderr.startswith(f"rename: {bad!r} is not a name")


def test_the_renamed_copy_lints_and_type_checks(copy: Path) -> None:
    """ruff (lint and format) and mypy --strict accept the renamed code and tests."""
    run(copy, "ruff", "check", ".")
    run(copy, "ruff", "format", "--check", ".")
    run(copy, "mypy")


def test_the_renamed_copy_passes_the_tests_where_the_name_matters(
    copy: Path, tmp_path: Path
) -> None:
    """Settings, logs, deploy files and nginx tests pass in the copy, services required as
    here (the variable that demands them is renamed too). Its temporary files stay in this
    test's (nested_pytest_args)."""
    required = os.environ.get(f"{OLD.upper().replace('-', '_')}_REQUIRE_SERVICES", "")
    done = run(
        copy, "python", "-m", "pytest", *nested_pytest_args(tmp_path), *NAMED_TESTS,
        timeout=900, env={renamed("KIT_REQUIRE_SERVICES"): required},
    )  # fmt: skip
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary, done.stdout
    assert "skipped" not in summary or required != "1", done.stdout


def test_the_renamed_nginx_files_pass_nginx_t(copy: Path, requires_nginx: None) -> None:
    """The renamed includes and site, placed as docs/nginx.md says, load under Debian's stock
    nginx.conf: `nginx -t` run by the copy's own test helper."""
    code = (
        "import sys, tempfile; from pathlib import Path; "
        "from harness.proxy import NGINX_DIR, Nginx, template_env; "
        f"site = NGINX_DIR / 'templates' / '{NEW}.conf.template'; "
        "checked = Nginx(Path(tempfile.mkdtemp()), site, template_env(8000, 8080)).configure(); "
        "print(checked.stderr); sys.exit(checked.returncode)"
    )
    assert "test is successful" in run(copy, "python", "-c", code).stdout


def test_the_renamed_compose_file_is_accepted_by_docker_compose(copy: Path) -> None:
    """`docker compose config` accepts the copy's compose.yaml; its database and user are
    the new name."""
    programs.require("docker", "docker-compose")
    config = run(
        copy, "docker", "compose", "config", "--format", "json",
        env={"POSTGRES_PASSWORD": "x" * 16, "SECRET_KEY": "y" * 64},
    ).stdout  # fmt: skip
    services = json.loads(config)["services"]
    assert services["db"]["environment"]["POSTGRES_USER"] == NEW
    assert f"@db:5432/{NEW}" in services["app"]["environment"]["DATABASE_URL"]


def test_the_renamed_kubernetes_files_build_with_kubectl_kustomize(copy: Path) -> None:
    """`kubectl kustomize deploy/kubernetes` builds the copy's manifests, every object named
    and labelled with the new name."""
    programs.require("kubectl")
    built = run(copy, "kubectl", "kustomize", "deploy/kubernetes").stdout
    objects = [doc for doc in yaml.safe_load_all(built) if doc]
    names = {doc["metadata"]["name"] for doc in objects}
    assert names
    assert all(name.startswith(NEW) for name in names), names
    assert {doc["metadata"]["labels"]["app.kubernetes.io/name"] for doc in objects} == {NEW}


def test_a_rename_without_a_venv_still_formats_what_it_rewrote(tmp_path: Path) -> None:
    """Where there is no .venv (a project `copier copy` just wrote), the rename installs the
    ruff uv.lock pins into .tools/ and formats with it: the result passes `make lint`."""
    repo = copy_repository(tmp_path / "repo")
    (repo / ".venv").unlink()
    long_name = "a-much-longer-service-name-than-before"
    # PATH without this .venv, as copier's task runs: python3 is the machine's.
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if ".venv" not in p)
    done = subprocess.run(
        ["python3", "template/rename.py", long_name],
        cwd=repo, env=base_env(PATH=path), capture_output=True, text=True, timeout=300,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "formatted the Python files (ruff)"
    ruff = str(repo / ".tools" / "ruff" / "bin" / "ruff")
    # The copy is no git work tree, so ruff cannot read .gitignore's /.tools/: say it here.
    run(repo, ruff, "check", "--extend-exclude", ".tools", ".")
    run(repo, ruff, "format", "--check", "--extend-exclude", ".tools", ".")
