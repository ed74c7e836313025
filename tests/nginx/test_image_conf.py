"""nginx/ under the nginx image compose.yaml runs: its own outer nginx.conf, its entrypoint
rendering the templates, as its unprivileged user. (tests/nginx/test_kit_conf.py runs the
same files under Debian's stock nginx.conf; tests/deploy/test_compose.py serves through it.)
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.proxy import NGINX_DIR, template_env
from tests.deploy.test_container import services
from tests.nginx.test_kit_conf import PLAIN, TLS, self_signed_certificate
from tests.support.engine import docker

pytestmark = pytest.mark.usefixtures("engine")


@pytest.mark.parametrize("template", [pytest.param(PLAIN, id="plain"), pytest.param(TLS, id="tls")])
def test_image_renders_template_and_passes_nginx_t(template: Path, tmp_path: Path) -> None:
    """The image's entrypoint renders each template and `nginx -t` accepts the result under
    the image's own nginx.conf, with no directive repeated."""
    cert, key = self_signed_certificate(tmp_path / "tls")
    cert.chmod(0o644)
    key.chmod(0o644)
    variables = template_env(
        8000,
        8080,
        APP_UPSTREAM="127.0.0.1:8000",
        NGINX_PORT="8080",
        NGINX_TLS_PORT="8443",
        STATIC_ROOT="/srv/static",
        NGINX_ACCESS_LOG="/dev/stdout",
        TLS_CERTIFICATE="/etc/tls/cert.pem",
        TLS_CERTIFICATE_KEY="/etc/tls/key.pem",
    )
    templates = tmp_path / "templates"
    templates.mkdir()
    (templates / template.name).write_bytes(template.read_bytes())
    env = [arg for name, value in variables.items() for arg in ("--env", f"{name}={value}")]
    result = docker(
        "run", "--rm", "--read-only",
        "--tmpfs", "/tmp", "--tmpfs", "/etc/nginx/conf.d:uid=101,gid=101,mode=0755",
        "--volume", f"{templates}:/etc/nginx/templates:ro",
        "--volume", f"{NGINX_DIR / 'kit'}:/etc/nginx/kit:ro",
        "--volume", f"{tmp_path / 'tls'}:/etc/tls:ro",
        *env, services()["nginx"]["image"], "nginx", "-t",
        check=False,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert "Running envsubst on /etc/nginx/templates/kit.conf.template" in output
    assert result.returncode == 0, output
    assert "test is successful" in output
