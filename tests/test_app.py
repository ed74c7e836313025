"""The factory: what it builds, what importing builds (nothing), and whom ProxyFix trusts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from flask import Flask, request, url_for
from flask.typing import ResponseReturnValue

from chassis.web.responses import ok
from tests.support.flask_app import AppFactory, LogReader

ROOT = Path(__file__).resolve().parent.parent


def test_importing_the_package_builds_nothing() -> None:
    """Importing every module of the chassis and the service except app.wsgi starts no thread
    and configures no logging."""
    code = """
import logging, pkgutil, importlib, threading, app, chassis
names = [
    m.name
    for package in (app, chassis)
    for m in pkgutil.walk_packages(package.__path__, package.__name__ + ".")
    if m.name != "app.wsgi"
]
for name in names:
    importlib.import_module(name)
assert logging.getLogger().handlers == [], logging.getLogger().handlers
assert threading.active_count() == 1, threading.enumerate()
print(len(names))
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 20


def test_wsgi_module_holds_the_app(tmp_path: Path) -> None:
    """`app.wsgi:app` is a Flask app built from the environment."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "from app.wsgi import app; import flask; print(isinstance(app, flask.Flask))",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={
            "APP_ENV": "test",
            "DATABASE_URL": f"sqlite:///{tmp_path}/app.db",
            "FLASK_SKIP_DOTENV": "1",
        },
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "True"


def test_bad_setting_stops_wsgi_import_with_one_line() -> None:
    """A bad value exits with one line naming the variable, not a traceback."""
    result = subprocess.run(
        [sys.executable, "-c", "import app.wsgi"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={"APP_ENV": "production", "FLASK_SKIP_DOTENV": "1"},
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("configuration error: SECRET_KEY: is required")


def test_development_key_is_logged_as_a_warning(make_app: AppFactory, read_logs: LogReader) -> None:
    """Running on the fixed development key says so in the log."""
    make_app(app_env="development")
    warnings = [line for line in read_logs() if line["level"] == "WARNING"]
    assert any("SECRET_KEY" in line["message"] for line in warnings)


def test_settings_reach_flask_config(make_app: AppFactory) -> None:
    """The secret and the body limit are what the settings say."""
    app = make_app(secret_key="k" * 40, max_content_length=123)
    assert app.config["SECRET_KEY"] == "k" * 40
    assert app.config["MAX_CONTENT_LENGTH"] == 123
    assert app.config["PROPAGATE_EXCEPTIONS"] is False


def _proxy_app(make_app: AppFactory, hops: int) -> Flask:
    app = make_app(proxy_fix_x_for=hops, proxy_fix_x_proto=hops, proxy_fix_x_host=hops)

    @app.get("/whoami")
    def whoami() -> ResponseReturnValue:
        return ok(
            {
                "remote_addr": request.remote_addr,
                "scheme": request.scheme,
                "host": request.host,
                "url": url_for("whoami", _external=True),
            }
        )

    return app


@pytest.mark.parametrize(
    ("hops", "headers", "expected"),
    [
        pytest.param(
            0,
            {},
            {"remote_addr": "10.0.0.9", "scheme": "http", "host": "app.internal"},
            id="0-no-headers",
        ),
        pytest.param(
            0,
            {
                "X-Forwarded-For": "1.2.3.4",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "evil.example",
            },
            {"remote_addr": "10.0.0.9", "scheme": "http", "host": "app.internal"},
            id="0-client-headers-ignored",
        ),
        pytest.param(
            1,
            {
                "X-Forwarded-For": "203.0.113.7",
                "X-Forwarded-Proto": "https",
                "X-Forwarded-Host": "api.example.com",
            },
            {"remote_addr": "203.0.113.7", "scheme": "https", "host": "api.example.com"},
            id="1-proxy-values-used",
        ),
        pytest.param(
            1,
            {"X-Forwarded-For": "6.6.6.6, 203.0.113.7", "X-Forwarded-Proto": "https"},
            {"remote_addr": "203.0.113.7", "scheme": "https", "host": "app.internal"},
            id="1-forged-left-most-ignored",
        ),
        pytest.param(
            1,
            {"X-Forwarded-Host": "evil.example, api.example.com"},
            {"remote_addr": "10.0.0.9", "scheme": "http", "host": "api.example.com"},
            id="1-forged-host-ignored",
        ),
    ],
)
def test_proxy_fix_trusts_only_the_configured_hops(
    make_app: AppFactory, hops: int, headers: dict[str, str], expected: dict[str, str]
) -> None:
    """Forwarded headers count only for as many proxies as the settings trust."""
    client = _proxy_app(make_app, hops).test_client()
    response = client.get(
        "/whoami",
        headers=headers,
        environ_base={"REMOTE_ADDR": "10.0.0.9"},
        base_url="http://app.internal",
    )
    assert response.json is not None
    data = response.json["data"]
    assert {k: data[k] for k in expected} == expected
    assert data["url"] == f"{expected['scheme']}://{expected['host']}/whoami"


def test_hooks_and_views_are_called_as_they_are_unless_flask_must_convert_them(
    app: Flask,
) -> None:
    """A plain function is used as it is (no coroutine check on every request); a coroutine
    function still takes Flask's own path, which here, without its `async` extra, refuses."""

    def plain() -> None:
        return None

    async def coroutine() -> None:
        return None

    assert app.ensure_sync(plain) is plain
    with pytest.raises(RuntimeError, match="async"):
        app.ensure_sync(coroutine)
