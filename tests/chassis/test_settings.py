"""Settings are read from a mapping, validated at boot, and name the variable on error."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import ValidationError

from chassis.database.engine import build_engine
from chassis.settings import DEVELOPMENT_SECRET_KEY, ServerSettings, Settings, SettingsError
from harness.processes import ROOT, base_env
from template.settings_docs import ENV_EXAMPLE, README, documented

# 64 hex digits, the shape `secrets.token_hex(32)` produces.
GOOD_KEY = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
PRODUCTION = {"APP_ENV": "production", "SECRET_KEY": GOOD_KEY}


def test_empty_environment_gives_development_defaults() -> None:
    """An empty environment is a working development setup."""
    settings = Settings.from_env({})
    assert settings.app_env == "development"
    assert settings.log_format == "text"
    assert settings.log_level == "INFO"
    assert settings.tracking_id_header == "X-Tracking-ID"
    assert settings.max_content_length == 1024 * 1024
    assert settings.uses_development_secret is True
    assert settings.secret_key == DEVELOPMENT_SECRET_KEY


def test_proxy_fix_hop_counts_default_to_zero() -> None:
    """No proxy headers are trusted unless a hop count is configured."""
    settings = Settings.from_env({})
    counts = [
        settings.proxy_fix_x_for,
        settings.proxy_fix_x_proto,
        settings.proxy_fix_x_host,
        settings.proxy_fix_x_port,
        settings.proxy_fix_x_prefix,
    ]
    assert counts == [0, 0, 0, 0, 0]


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param(PRODUCTION, id="production"),
        pytest.param({"APP_ENV": "test"}, id="test"),
    ],
)
def test_log_format_defaults_to_json_outside_development(environ: dict[str, str]) -> None:
    """Production and test write JSON lines unless LOG_FORMAT says otherwise."""
    assert Settings.from_env(environ).log_format == "json"


@pytest.mark.parametrize(
    ("environ", "name"),
    [
        pytest.param({"APP_ENV": "staging"}, "APP_ENV", id="unknown-app-env"),
        pytest.param({"LOG_LEVEL": "verbose"}, "LOG_LEVEL", id="unknown-log-level"),
        pytest.param({"LOG_FORMAT": "xml"}, "LOG_FORMAT", id="unknown-log-format"),
        pytest.param({"PROXY_FIX_X_FOR": "-1"}, "PROXY_FIX_X_FOR", id="negative-x-for"),
        pytest.param({"PROXY_FIX_X_PROTO": "one"}, "PROXY_FIX_X_PROTO", id="word-x-proto"),
        pytest.param({"PROXY_FIX_X_HOST": "1.5"}, "PROXY_FIX_X_HOST", id="fraction-x-host"),
        pytest.param({"PROXY_FIX_X_PORT": "x"}, "PROXY_FIX_X_PORT", id="letter-x-port"),
        pytest.param({"PROXY_FIX_X_PREFIX": "-2"}, "PROXY_FIX_X_PREFIX", id="negative-x-prefix"),
        pytest.param({"MAX_CONTENT_LENGTH": "0"}, "MAX_CONTENT_LENGTH", id="zero-body-limit"),
        pytest.param({"MAX_CONTENT_LENGTH": "abc"}, "MAX_CONTENT_LENGTH", id="word-body-limit"),
        pytest.param({"TRACKING_ID_HEADER": "X Bad"}, "TRACKING_ID_HEADER", id="header-space"),
        pytest.param(
            {"TRACKING_ID_HEADER": "X-Id\r\nX-Evil: 1"}, "TRACKING_ID_HEADER", id="header-crlf"
        ),
        pytest.param({"DATABASE_URL": "mysql://u@h/db"}, "DATABASE_URL", id="mysql-url"),
        pytest.param({"DATABASE_URL": "not a url"}, "DATABASE_URL", id="not-a-url"),
        pytest.param({"DATABASE_URL": "sqlite:///:memory:"}, "DATABASE_URL", id="sqlite-memory"),
        pytest.param({"DB_POOL_SIZE": "0"}, "DB_POOL_SIZE", id="zero-pool"),
        pytest.param({"DB_MAX_OVERFLOW": "-1"}, "DB_MAX_OVERFLOW", id="negative-overflow"),
        pytest.param({"DB_POOL_TIMEOUT": "soon"}, "DB_POOL_TIMEOUT", id="word-pool-timeout"),
        pytest.param({"DB_POOL_TIMEOUT": "nan"}, "DB_POOL_TIMEOUT", id="nan-pool-timeout"),
        pytest.param({"DB_POOL_RECYCLE": "0"}, "DB_POOL_RECYCLE", id="zero-recycle"),
        pytest.param({"DB_CONNECT_TIMEOUT": "0"}, "DB_CONNECT_TIMEOUT", id="zero-connect"),
        pytest.param({"SCHEDULER_ENABLED": "maybe"}, "SCHEDULER_ENABLED", id="scheduler-maybe"),
        pytest.param(
            {"SCHEDULER_HISTORY_DAYS": "0"}, "SCHEDULER_HISTORY_DAYS", id="zero-history-days"
        ),
        pytest.param(
            {"DB_STATEMENT_TIMEOUT_MS": "-5"}, "DB_STATEMENT_TIMEOUT_MS", id="negative-statement"
        ),
        pytest.param({"APP_ENV": "production"}, "SECRET_KEY", id="production-no-key"),
        pytest.param(
            {"APP_ENV": "production", "SECRET_KEY": " " * 40}, "SECRET_KEY", id="blank-key"
        ),
        pytest.param(
            {"APP_ENV": "production", "SECRET_KEY": "changeme"}, "SECRET_KEY", id="changeme"
        ),
        pytest.param({"APP_ENV": "production", "SECRET_KEY": "dev"}, "SECRET_KEY", id="dev"),
        pytest.param({"APP_ENV": "production", "SECRET_KEY": "secret"}, "SECRET_KEY", id="secret"),
        pytest.param(
            {"APP_ENV": "production", "SECRET_KEY": "a1b2c3d4e5f6a7b8c9d0"},
            "SECRET_KEY",
            id="production-short-key",
        ),
    ],
)
def test_bad_environment_is_refused_naming_the_variable(environ: dict[str, str], name: str) -> None:
    """Each bad value raises SettingsError with a one-line message that starts with its name."""
    with pytest.raises(SettingsError) as excinfo:
        Settings.from_env(environ)
    message = str(excinfo.value)
    assert excinfo.value.name == name
    assert message.startswith(f"{name}:")
    assert "\n" not in message


def test_secret_key_error_never_shows_the_secret() -> None:
    """A refused SECRET_KEY is named in the error, its value is not."""
    with pytest.raises(SettingsError) as excinfo:
        Settings.from_env({"APP_ENV": "production", "SECRET_KEY": "Zq7-unique-k3y"})
    assert "Zq7-unique-k3y" not in str(excinfo.value)


def test_random_key_is_accepted_in_production() -> None:
    """A 64-hex-digit key passes the production checks and is used as given."""
    settings = Settings.from_env(PRODUCTION)
    assert settings.app_env == "production"
    assert settings.secret_key == GOOD_KEY
    assert settings.uses_development_secret is False


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        # The three an attacker's report found accepted with APP_ENV=production.
        pytest.param("changeme" * 4, "is a placeholder value", id="changeme-x4"),
        pytest.param("a" * 32, "is too repetitive", id="a-x32"),
        pytest.param(
            DEVELOPMENT_SECRET_KEY[:25] + DEVELOPMENT_SECRET_KEY[26:],
            "is a placeholder value",
            id="development-key-less-one",
        ),
        pytest.param(DEVELOPMENT_SECRET_KEY[1:], "is a placeholder value", id="less-the-first"),
        # Close to the development key, containing none of the placeholder words.
        pytest.param(
            "devel0pment-0nly-s3cret-k3y-never-use-in-pr0duction",
            "is a placeholder value",
            id="development-key-respelt",
        ),
        pytest.param(
            "Orders-API-Super-SECRET-for-Prod-2024", "is a placeholder value", id="has-secret"
        ),
        pytest.param("Zq7!" * 16, "is too repetitive", id="unit-of-4-x16"),
        pytest.param("0123456789abcde" * 3, "is too repetitive", id="unit-of-15-x3"),
        pytest.param("b" * 64, "is too repetitive", id="b-x64"),
        pytest.param("Zq7-unique-k3y", "must be at least 32 characters", id="short"),
    ],
)
def test_weak_secret_key_is_refused_in_production(key: str, reason: str) -> None:
    """A placeholder, something close to one or holding one, a short key and a run or a short
    unit repeated are each refused with one line naming SECRET_KEY and why, and quoting no
    part of the key."""
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"APP_ENV": "production", "SECRET_KEY": key})
    message = str(refused.value)
    assert message.startswith(f"SECRET_KEY: {reason}")
    assert "\n" not in message
    # Not eight characters of the key in a row: not even which placeholder it holds.
    assert [key[at : at + 8] for at in range(len(key) - 7) if key[at : at + 8] in message] == []


@pytest.mark.parametrize(
    ("generate", "size"),
    [
        pytest.param(secrets.token_hex, 32, id="token_hex-32"),
        pytest.param(secrets.token_urlsafe, 32, id="token_urlsafe-32"),
        pytest.param(secrets.token_hex, 16, id="token_hex-16-the-shortest"),
    ],
)
def test_generated_keys_are_accepted_in_production(
    generate: Callable[[int], str], size: int
) -> None:
    """Keys made the way the error message says, or with token_urlsafe, pass, 300 of each;
    so does 32 hex digits, the shortest length. (A urlsafe key spelling a placeholder word
    by chance is refused: about one in 27 million, chassis/settings/secret_key.py.)"""
    for _ in range(300):
        key = generate(size)
        assert Settings(app_env="production", secret_key=key).secret_key == key


@pytest.mark.parametrize("app_env", ["development", "test"])
def test_given_secret_key_is_kept_outside_production(app_env: str) -> None:
    """A SECRET_KEY set in development or test replaces the development key."""
    settings = Settings.from_env({"APP_ENV": app_env, "SECRET_KEY": "local-key"})
    assert settings.secret_key == "local-key"
    assert settings.uses_development_secret is False


def test_log_level_is_case_insensitive() -> None:
    """LOG_LEVEL=debug is read as DEBUG."""
    assert Settings.from_env({"LOG_LEVEL": "debug"}).log_level == "DEBUG"


def test_app_env_is_case_insensitive() -> None:
    """APP_ENV=Test is read as test."""
    assert Settings.from_env({"APP_ENV": "Test"}).app_env == "test"


def test_settings_are_frozen() -> None:
    """Settings cannot be changed after boot."""
    settings = Settings()
    with pytest.raises(ValidationError, match="frozen"):
        settings.app_env = "production"


def test_direct_construction_is_validated_too() -> None:
    """Settings(app_env="production") with the development key is refused, not only from_env."""
    with pytest.raises(SettingsError) as excinfo:
        Settings(app_env="production")
    assert excinfo.value.name == "SECRET_KEY"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        pytest.param(
            "postgres://u:p@db/app", "postgresql+psycopg2://u:p@db/app", id="heroku-style"
        ),
        pytest.param("postgresql://u@db/app", "postgresql+psycopg2://u@db/app", id="no-driver"),
        pytest.param("sqlite:///data/x.db", "sqlite:///data/x.db", id="sqlite-file"),
    ],
)
def test_database_url_is_normalised_to_an_explicit_driver(given: str, expected: str) -> None:
    """postgres:// and postgresql:// both mean psycopg2; SQLite files pass through."""
    assert Settings.from_env({"DATABASE_URL": given}).database_url == expected


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        # Passed, then failed at start with a TypeError traceback (the engine's pool options).
        pytest.param("sqlite:///:memory:?cache=shared", "not :memory:", id="memory-shared"),
        pytest.param("sqlite://", "not :memory:", id="no-path"),
        pytest.param("sqlite:///%3Amemory%3A", "not :memory:", id="memory-percent-encoded"),
        pytest.param("sqlite:///?cache=shared", "not :memory:", id="only-a-query"),
        pytest.param(
            "sqlite:///file:app?mode=memory&cache=shared&uri=true", "not a file: URI", id="uri"
        ),
        pytest.param("sqlite:///file:data/app.db?uri=true", "not a file: URI", id="uri-file"),
        pytest.param("sqlite:///file:app.db", "not a file: URI", id="file-prefix"),
        pytest.param("sqlite:///data/app.db?mode=ro", "takes no query string", id="mode-ro"),
        pytest.param("sqlite:///data/app.db?timeout=1", "takes no query string", id="timeout"),
        pytest.param("sqlite://data/app.db", "three slashes", id="two-slashes"),
        pytest.param("sqlite:///data/", "not a folder", id="folder"),
    ],
)
def test_sqlite_url_the_engine_cannot_use_is_refused(url: str, reason: str) -> None:
    """A SQLite URL that is not a plain file is refused with one line naming DATABASE_URL
    and its form, before anything starts."""
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({"DATABASE_URL": url})
    message = str(refused.value)
    assert message.startswith("DATABASE_URL: ")
    assert reason in message
    assert "\n" not in message


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("sqlite:///data/app.db", id="relative"),
        pytest.param("sqlite:///{folder}/app.db", id="absolute"),
        pytest.param("sqlite+pysqlite:///app%20copy.db", id="driver-and-escape"),
    ],
)
def test_accepted_sqlite_url_opens_with_the_chassis_engine(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each SQLite form the settings accept is a file the chassis's engine opens."""
    monkeypatch.chdir(tmp_path)
    engine = build_engine(Settings.from_env({"DATABASE_URL": url.format(folder=tmp_path)}))
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT 1").scalar() == 1
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("environ", "line"),
    [
        pytest.param(
            {"DATABASE_URL": "sqlite:///:memory:?cache=shared"},
            "DATABASE_URL: must name a SQLite file, not :memory:",
            id="memory-database",
        ),
        pytest.param(
            {"APP_ENV": "production", "SECRET_KEY": "a" * 32},
            "SECRET_KEY: is too repetitive",
            id="repetitive-key",
        ),
    ],
)
def test_entry_point_refuses_in_one_line(environ: dict[str, str], line: str) -> None:
    """`python -m chassis.settings`, which the make targets run before anything slow, exits
    1 with one line on stderr and no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "chassis.settings"],
        cwd=ROOT, env=base_env(**environ), capture_output=True, text=True, check=False,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith(f"configuration error: {line}")
    assert result.stderr.count("\n") == 1


def test_database_url_error_does_not_echo_the_password() -> None:
    """A refused URL is named by its scheme only, never with its credentials."""
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({"DATABASE_URL": "mysql://user:hunter2@db/app"})
    assert "hunter2" not in str(caught.value)


def test_scheduler_is_off_unless_enabled() -> None:
    """No environment variable: no scheduler, the kit's jobs, 30 days of history."""
    settings = Settings.from_env({})
    assert (settings.scheduler_enabled, settings.scheduler_jobs) == (False, "app.jobs:jobs")
    assert settings.scheduler_history_days == 30
    enabled = Settings.from_env({"SCHEDULER_ENABLED": "true", "SCHEDULER_JOBS": "my.jobs:jobs"})
    assert (enabled.scheduler_enabled, enabled.scheduler_jobs) == (True, "my.jobs:jobs")


def test_env_example_and_readme_are_written_from_the_declarations() -> None:
    """`.env.example` and the README's table are what `make settings-docs` writes now: a
    setting added, removed or changed without rewriting them fails here."""
    env_example = (ROOT / ENV_EXAMPLE).read_text()
    readme = (ROOT / README).read_text()
    assert documented(env_example, readme) == (env_example, readme), "run `make settings-docs`"


def test_every_value_in_env_example_is_accepted_and_is_the_default() -> None:
    """Each `# NAME=value` of the declared settings, uncommented, reads back as the default."""
    for declared in (Settings, ServerSettings):
        names = dict(declared.variables())
        lines = re.findall(r"^# ([A-Z_]+)=(.*)$", (ROOT / ENV_EXAMPLE).read_text(), re.M)
        listed = {name: value for name, value in lines if name in names}
        assert list(listed) == list(names)
        for name, value in listed.items():
            read = getattr(declared.from_env({name: value}), name.lower())
            assert read == getattr(declared.from_env({}), name.lower()), name


def test_from_env_never_reads_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given a mapping, only the mapping counts, never the environment or a `.env` file;
    direct construction reads nothing."""
    (tmp_path / ".env").write_text("LOG_LEVEL=WARNING\nLOG_FORMAT=json\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOG_LEVEL", "ERROR")
    monkeypatch.delenv("FLASK_SKIP_DOTENV", raising=False)
    assert (Settings.from_env({}).log_level, Settings.from_env({}).log_format) == ("INFO", "text")
    assert (Settings().log_level, Settings().log_format) == ("INFO", "text")
    assert (Settings.from_env().log_level, Settings.from_env().log_format) == ("ERROR", "json")


@pytest.mark.parametrize(
    ("skip", "read"),
    [
        pytest.param(None, ("WARNING", "json", "X-Request-ID"), id="env-over-flaskenv"),
        pytest.param("0", ("WARNING", "json", "X-Request-ID"), id="skip-0-reads"),
        pytest.param("1", ("INFO", "text", "X-Tracking-ID"), id="skip-1-reads-neither"),
    ],
)
def test_from_env_reads_the_env_files_the_flask_command_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, skip: str | None, read: tuple[str, ...]
) -> None:
    """From the process environment, the nearest `.flaskenv` and `.env` from the working
    directory up fill in what it leaves unset, `.env` over `.flaskenv`, as `flask` loads
    them; variables no declaration names (compose's) are left alone; FLASK_SKIP_DOTENV
    turns both files off as it does for `flask`."""
    (tmp_path / ".flaskenv").write_text("LOG_LEVEL=DEBUG\nLOG_FORMAT=json\n")
    (tmp_path / ".env").write_text(
        "log_level=WARNING\nTRACKING_ID_HEADER=X-Request-ID\nPOSTGRES_PASSWORD=x\nAPP_ENV=test\n"
    )
    (tmp_path / "below").mkdir()
    monkeypatch.chdir(tmp_path / "below")
    for name in ("LOG_LEVEL", "LOG_FORMAT", "TRACKING_ID_HEADER", "FLASK_SKIP_DOTENV"):
        monkeypatch.delenv(name, raising=False)
    if skip is not None:
        monkeypatch.setenv("FLASK_SKIP_DOTENV", skip)
    monkeypatch.setenv("APP_ENV", "development")
    settings = Settings.from_env()
    assert settings.app_env == "development"
    assert (settings.log_level, settings.log_format, settings.tracking_id_header) == read


def test_for_greenlets_sizes_the_pool_unless_it_was_set() -> None:
    """Under gevent the pool is the worker's connections with no overflow, unless either
    variable was given; the process environment is left alone."""
    assert Settings.from_env({}).for_greenlets(20).db_pool_size == 20
    assert Settings.from_env({}).for_greenlets(20).db_max_overflow == 0
    kept = Settings.from_env({"DB_MAX_OVERFLOW": "3"}).for_greenlets(20)
    assert (kept.db_pool_size, kept.db_max_overflow) == (20, 3)
    kept = Settings.from_env({"DB_POOL_SIZE": "7"}).for_greenlets(20)
    assert (kept.db_pool_size, kept.db_max_overflow) == (7, 0)


def test_secrets_stay_out_of_the_repr() -> None:
    """A logged or printed Settings never shows the secret key or the database password."""
    settings = Settings.from_env({**PRODUCTION, "DATABASE_URL": "postgresql://app:hunter2@db/app"})
    assert GOOD_KEY not in repr(settings)
    assert "hunter2" not in repr(settings)
