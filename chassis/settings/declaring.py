"""How a declaration is made and read: `setting()` declares one variable with its reason,
and `Declared` reads a mapping of variables with pydantic-settings' environment source,
turning pydantic's errors into one `SettingsError` line naming the variable.

One meaning for `.env`: every entry point reads it, under the process environment. Why all
and not none: Flask's `flask` command loads `.flaskenv` and `.env` into the environment
before it imports the app whenever python-dotenv is installed, and pydantic-settings
requires python-dotenv. Short of replacing Flask's command, gunicorn, `make dev`, the
migrations and `flask` agree only if the others read the same files the same way
(`dotenv_files`). A variable set in the environment wins over the files; FLASK_SKIP_DOTENV=1
(Flask's own switch) turns them off everywhere, as the test suite does. The image never
contains a `.env` (.dockerignore).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Self

from pydantic import Field, JsonValue, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources import PydanticBaseSettingsSource

from chassis.settings.parsers import SettingsError


def setting(
    default: Any, why: str, *, shown: str | None = None, accepts: str | None = None, **rules: Any
) -> Any:
    """Declare one variable: its default, why it is what it is, and its bounds (`ge`...).

    `shown` is the default as the documentation states it, when the value in code (None,
    or one worked out from other settings) would not say it; `accepts` says what a text
    value may be (the type and bounds say it for the rest)."""
    extra: dict[str, JsonValue] = {
        key: value for key, value in (("shown", shown), ("accepts", accepts)) if value
    }
    return Field(default, description=" ".join(why.split()), json_schema_extra=extra, **rules)


class Declared(BaseSettings):
    """Read from an environment mapping by pydantic-settings' own environment source:
    names case-insensitive, an empty value means the default."""

    model_config = SettingsConfigDict(
        frozen=True,
        case_sensitive=False,
        env_ignore_empty=True,
        # Surrounding space is a copy-paste accident, never meant: " 8 " is 8.
        str_strip_whitespace=True,
        validate_default=True,
    )

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise _first_error(exc) from None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what the caller passes: `from_env` reads the environment it is given, so a
        # test's Settings(...) never picks up the test runner's own variables.
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Read and validate from `environ` (default: `os.environ` over the `.env` files)."""
        source = EnvSettingsSource(cls, case_sensitive=False, env_ignore_empty=True)
        if environ is None:
            files = DotEnvSettingsSource(cls, env_file=dotenv_files(), case_sensitive=False)
            # Keys lowered as the case-insensitive lookup expects, so the environment's
            # LOG_LEVEL replaces the file's log_level; a bare `NAME` line sets nothing.
            variables = {name: value for name, value in files.env_vars.items() if value is not None}
            variables |= {name.lower(): value for name, value in os.environ.items()}
        else:
            variables = {name.lower(): value for name, value in environ.items()}
        # The source reads os.environ when built; it reads `variables` instead, blank values
        # left out (as empty ones are).
        source.env_vars = {name: value for name, value in variables.items() if value.strip()}
        return cls(**source())

    @classmethod
    def variables(cls) -> Iterator[tuple[str, FieldInfo]]:
        """(NAME, declaration) for each variable, in declaration order."""
        for name, field in cls.model_fields.items():
            yield name.upper(), field


def dotenv_files() -> list[Path]:
    """The files the `flask` command loads (flask.cli.load_dotenv, Flask 3.1): the nearest
    `.flaskenv` and `.env` from the working directory up, `.env` last so that it wins; none
    when FLASK_SKIP_DOTENV is set to anything but 0, false or no."""
    skip = os.environ.get("FLASK_SKIP_DOTENV", "")
    if skip and skip.lower() not in ("0", "false", "no"):
        return []
    here = Path.cwd()
    found = (
        next((folder / name for folder in (here, *here.parents) if (folder / name).is_file()), None)
        for name in (".flaskenv", ".env")
    )
    return [path for path in found if path is not None]


def _first_error(exc: ValidationError) -> SettingsError:
    """The first problem, as today's one line: `NAME: must be ... (got ...)`."""
    error = exc.errors(include_url=False)[0]
    name = str(error["loc"][0]).upper() if error["loc"] else "SETTINGS"
    kind, ctx, given = error["type"], error.get("ctx", {}), error.get("input")
    if kind == "value_error":  # our own validators: their message says it all
        return SettingsError(name, str(ctx.get("error", error["msg"])))
    problem = {
        "int_parsing": "must be a whole number",
        "int_from_float": "must be a whole number",
        "float_parsing": "must be a number",
        "finite_number": "must be a finite number",
        "bool_parsing": "must be one of 1, true, yes, on, 0, false, no, off",
        "greater_than_equal": f"must be at least {ctx.get('ge')}",
        "less_than_equal": f"must be at most {ctx.get('le')}",
        "literal_error": "must be one of "
        + str(ctx.get("expected", "")).replace(" or ", ", ").replace("'", ""),
    }.get(kind, error["msg"][:1].lower() + error["msg"][1:])
    return SettingsError(name, f"{problem} (got {given!r})")
