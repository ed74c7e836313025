""".github/: the workflows pass actionlint and GitHub's workflow schema, dependabot.yml passes
Dependabot's, and ci.yml does what docs/testing.md says: its `check` job runs the make targets
.ci/run runs, and its `compose` job starts the real stack, sends requests through nginx and
removes the stack again.

GitHub Actions cannot run here. actionlint (with shellcheck on every `run:` script) and the
schemas vendored in check-jsonschema check the files with no network; the rest is read from
the files, with the numbers the workflow must agree on read from where they are set.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from harness import programs
from harness.processes import ROOT
from tests.deploy.files import yaml_file
from tests.deploy.test_container import dev_tool, run_checked

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
CI = ROOT / ".github" / "workflows" / "ci.yml"
DEPENDABOT = ROOT / ".github" / "dependabot.yml"
EACH_WORKFLOW = [pytest.param(path, id=path.name) for path in WORKFLOWS]
# A `uses:` line pinned to a full commit SHA, with the release it is in a comment.
PINNED = re.compile(r"uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+$")


def load(path: Path) -> dict[str, Any]:
    """A YAML file, parsed."""
    return yaml_file(path)


def job(name: str) -> dict[str, Any]:
    """One job of ci.yml."""
    found: dict[str, Any] = load(CI)["jobs"][name]
    return found


def scripts(name: str) -> str:
    """Every `run:` script of a ci.yml job, in order, one after another."""
    return "\n".join(step.get("run", "") for step in job(name)["steps"])


def step_running(name: str, command: str) -> dict[str, Any]:
    """The one step of a ci.yml job whose script runs `command`."""
    steps: list[dict[str, Any]] = job(name)["steps"]
    (found,) = [step for step in steps if command in step.get("run", "")]
    return found


def make_calls(script: str) -> list[str]:
    """The `make TARGET` calls ending a line of a shell script (after any sudo/env), in order."""
    return re.findall(r"(?:^|\s)(make [\w-]+)\s*$", script, re.MULTILINE)


# --- Valid files --------------------------------------------------------------------------


@pytest.mark.parametrize("path", EACH_WORKFLOW)
def test_workflow_passes_actionlint(path: Path) -> None:
    """actionlint, with shellcheck on the `run:` scripts, finds nothing in the workflow."""
    # pyflakes is no dev dependency (and no step runs Python): whether it happens to be on
    # PATH must not change the verdict.
    shellcheck = ["-shellcheck", dev_tool("shellcheck"), "-pyflakes="]
    cmd = [dev_tool("actionlint"), "-no-color", "-oneline", *shellcheck, str(path)]
    assert run_checked(cmd, cwd=ROOT).stdout == ""


@pytest.mark.parametrize("path", EACH_WORKFLOW)
def test_workflow_matches_github_workflow_schema(path: Path) -> None:
    """The workflow validates against the GitHub workflow schema check-jsonschema ships."""
    schema = ["--builtin-schema", "vendor.github-workflows"]
    run_checked([dev_tool("check-jsonschema"), *schema, str(path)])


def test_dependabot_config_matches_dependabot_schema() -> None:
    """dependabot.yml validates against the Dependabot schema check-jsonschema ships."""
    schema = ["--builtin-schema", "vendor.dependabot"]
    run_checked([dev_tool("check-jsonschema"), *schema, str(DEPENDABOT)])


# --- Every workflow: triggers, token, pins, limits ---------------------------------------


def test_ci_runs_on_every_push_and_pull_request() -> None:
    """ci.yml runs for pushes to any branch and for pull requests."""
    # PyYAML reads YAML 1.1, where a bare `on` is the boolean true.
    triggers: Any = load(CI).get(True)  # type: ignore[call-overload]
    assert triggers == {"push": None, "pull_request": None}


@pytest.mark.parametrize("path", EACH_WORKFLOW)
def test_token_can_only_read_the_repository(path: Path) -> None:
    """The workflow's token reads contents and nothing else, and no job widens it."""
    workflow = load(path)
    assert workflow["permissions"] == {"contents": "read"}
    assert [name for name, spec in workflow["jobs"].items() if "permissions" in spec] == []


def test_a_newer_push_cancels_the_run_it_supersedes() -> None:
    """One run at a time per workflow and branch or pull request; the newest wins."""
    assert load(CI)["concurrency"] == {
        "group": "${{ github.workflow }}-${{ github.ref }}",
        "cancel-in-progress": True,
    }


@pytest.mark.parametrize("path", EACH_WORKFLOW)
def test_scripts_fail_on_a_failure_inside_a_pipeline(path: Path) -> None:
    """Scripts run under an explicit `bash`, which GitHub starts with -e and -o pipefail."""
    assert load(path)["defaults"] == {"run": {"shell": "bash"}}


@pytest.mark.parametrize("path", EACH_WORKFLOW)
def test_every_job_has_a_timeout(path: Path) -> None:
    """A hung job is stopped by its own limit, not by GitHub's six hours."""
    jobs = load(path)["jobs"]
    assert [name for name, spec in jobs.items() if "timeout-minutes" not in spec] == []


@pytest.mark.parametrize("path", EACH_WORKFLOW)
def test_every_action_is_pinned_to_a_commit(path: Path) -> None:
    """Every `uses:` names a full commit SHA and, in a comment, the release it is."""
    uses = [line.strip().removeprefix("- ") for line in path.read_text().splitlines()]
    uses = [line for line in uses if line.startswith("uses:")]
    assert uses
    assert [line for line in uses if not PINNED.fullmatch(line)] == []


# --- The check job: what .ci/run runs -----------------------------------------------------


def test_check_job_runs_the_make_targets_ci_runs() -> None:
    """The check job calls the same make targets as .ci/run, in the same order."""
    expected = make_calls((ROOT / ".ci" / "run").read_text())
    assert expected
    assert make_calls(scripts("check")) == expected


def test_check_job_turns_a_missing_service_into_a_failure() -> None:
    """KIT_REQUIRE_SERVICES=1, as in .ci/run: no PostgreSQL, nginx or engine test skips."""
    assert job("check")["env"]["KIT_REQUIRE_SERVICES"] == "1"


def test_check_job_tests_against_the_real_images() -> None:
    """Unlike .ci/run, the job sets no KIT_STANDIN_IMAGES: the engine pulls the real images."""
    assert "KIT_STANDIN_IMAGES" not in CI.read_text()


def test_check_job_runs_on_the_oldest_supported_python() -> None:
    """setup-python installs the lowest Python that pyproject.toml's requires-python allows."""
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    (setup,) = [s for s in job("check")["steps"] if "/setup-python@" in s.get("uses", "")]
    assert f">={setup['with']['python-version']}" == requires


def test_check_job_installs_every_program_the_list_gives_to_apt() -> None:
    """The job's apt-get line installs exactly the packages of harness/programs.toml whose
    `github` is "apt": a program added to the list for a test reaches the workflow too."""
    install = step_running("check", "apt-get install")["run"]
    line = install[install.index("apt-get install") :].replace("\\\n", " ").splitlines()[0]
    installed = {word for word in line.split()[2:] if not word.startswith("-")}
    wanted = {p.package for p in programs.listed().values() if p.github == "apt"}
    assert installed == wanted


def test_every_program_is_installed_by_the_workflow_or_the_runner() -> None:
    """Each program of the list says where the workflow gets it: its own apt-get line or
    the runner image."""
    assert {p.name: p.github for p in programs.listed().values()} == {
        name: p.github for name, p in programs.listed().items() if p.github in {"apt", "runner"}
    }


def test_check_job_gives_the_docs_page_test_a_browser() -> None:
    """The browser test (tests/chassis/test_apidocs.py) finds Chrome and its driver where
    the runner has them, named through to `make test`; .ci/run installs Debian's."""
    named = step_running("check", "KIT_CHROMIUM=")["run"]
    assert "$GITHUB_ENV" in named
    assert "KIT_CHROMEDRIVER=" in named
    test = step_running("check", "make test")["run"]
    assert "KIT_CHROMIUM,KIT_CHROMEDRIVER" in test
    # .ci/run installs Debian's from the list.
    assert {"chromium", "chromedriver"} <= set(programs.listed())


# --- The compose job: the real stack, through nginx ---------------------------------------


def compose_default(value: str) -> str:
    """The default in a compose.yaml `${NAME:-default}`: what applies when NAME is unset."""
    match = re.search(r"\$\{\w+:-([^}]*)\}", value)
    assert match is not None, value
    return match[1]


def smoke_request(path: str) -> str:
    """The smoke step's one curl of `path` on nginx's published port, on one line."""
    nginx = load(ROOT / "compose.yaml")["services"]["nginx"]
    url = f"http://localhost:{compose_default(nginx['ports'][0])}{path} "
    script: str = step_running("compose", "curl")["run"].replace("\\\n", " ")
    requests = [
        line.strip()
        for line in script.splitlines()
        if line.strip().startswith("curl ") and url in line
    ]
    (request,) = requests
    return request


# The kit's endpoints, which every service built on it has: the smoke step passes whatever
# resources the service has, the example removed included.
SMOKE_PATHS = [
    pytest.param("/healthz", id="liveness"),
    pytest.param("/readyz", id="readiness"),
]


def test_compose_job_builds_and_waits_for_a_healthy_stack() -> None:
    """The stack is built from the checkout and started with `up --wait` (healthy or fail)."""
    assert "docker compose up --build --wait" in scripts("compose")


def test_compose_job_sets_every_secret_compose_requires() -> None:
    """Each `${NAME:?...}` compose.yaml refuses to start without is generated into .env."""
    required = set(re.findall(r"\$\{(\w+):\?", (ROOT / "compose.yaml").read_text()))
    generate = step_running("compose", "> .env")["run"]
    assert required
    assert {name for name in required if f"{name}=" in generate} == required


@pytest.mark.parametrize("path", SMOKE_PATHS)
def test_smoke_request_goes_through_nginx(path: str) -> None:
    """The request goes to nginx's published port (the only one) with a Host nginx serves."""
    nginx = load(ROOT / "compose.yaml")["services"]["nginx"]
    host = re.search(r"-H 'Host: ([^']+)'", smoke_request(path))
    assert host is not None
    assert host[1] in compose_default(nginx["environment"]["SERVER_NAME"]).split()


@pytest.mark.parametrize("path", SMOKE_PATHS)
def test_smoke_request_fails_the_job_on_a_bad_answer(path: str) -> None:
    """curl -f fails on an error status and jq -e on an answer without what was expected."""
    request = smoke_request(path)
    assert request.startswith("curl -fsS ")
    assert "| jq -e " in request


@pytest.mark.parametrize("path", SMOKE_PATHS)
def test_smoke_request_expects_what_the_endpoint_answers(client: FlaskClient, path: str) -> None:
    """The jq check passes on the status the app's endpoint reports when all is well."""
    response = client.get(path)
    assert response.status_code == 200
    check = f'.data.status == "{(response.json or {})["data"]["status"]}"'
    assert f"| jq -e '., {check}'" in smoke_request(path)


def test_compose_job_prints_the_logs_when_a_step_fails() -> None:
    """On failure, the containers' state and logs are in the job's output."""
    assert step_running("compose", "docker compose logs")["if"] == "failure()"


def test_compose_job_always_removes_the_stack_and_its_volumes() -> None:
    """`docker compose down -v` runs last, whatever happened before it."""
    last = job("compose")["steps"][-1]
    assert (last["run"], last["if"]) == ("docker compose down -v", "always()")


# --- Dependabot ---------------------------------------------------------------------------

ECOSYSTEMS = ["uv", "docker", "docker-compose", "github-actions"]


def test_dependabot_watches_each_ecosystem_once() -> None:
    """Python packages, the Dockerfile's and compose.yaml's images, and the actions."""
    updates = load(DEPENDABOT)["updates"]
    assert sorted(u["package-ecosystem"] for u in updates) == sorted(ECOSYSTEMS)


@pytest.mark.parametrize("ecosystem", ECOSYSTEMS)
def test_dependabot_proposes_one_weekly_pull_request_after_a_cooldown(ecosystem: str) -> None:
    """Weekly, all of an ecosystem's updates in one group, for releases a week old."""
    (update,) = [u for u in load(DEPENDABOT)["updates"] if u["package-ecosystem"] == ecosystem]
    assert update["directory"] == "/"
    assert update["schedule"] == {"interval": "weekly"}
    assert update["groups"] == {ecosystem: {"patterns": ["*"]}}
    assert update["cooldown"] == {"default-days": 7}
