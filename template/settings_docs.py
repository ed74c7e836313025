"""`make settings-docs`: write `.env.example`'s settings part and the README's table of
variables from the declarations (chassis/settings/declarations.py). A test fails when the
files and the declarations disagree. Not part of the running service.
"""

from __future__ import annotations

import textwrap
import types
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from chassis.settings.declarations import ServerSettings, Settings

# Read by other programs, not by the service; listed in the documentation beside the rest.
# Each: (what it accepts, why).
OTHER_VARIABLES = {
    "GUNICORN_CMD_ARGS": (
        "gunicorn flags",
        "Extra gunicorn command-line flags; applied after gunicorn.conf.py, so they win.",
    ),
    "OTEL_SERVICE_NAME": (
        "any text",
        "With TRACING_ENABLED, the service name on every span; OpenTelemetry's SDK reads it "
        "and its other OTEL_ variables (sampler, batching, an OTLP exporter's endpoint).",
    ),
}


def accepted(field: FieldInfo) -> str:
    """The values a field accepts, in words."""
    said = _extra(field, "accepts")
    if said is not None:
        return said
    kind = field.annotation
    if get_origin(kind) in {Union, types.UnionType}:
        kind = next(arg for arg in get_args(kind) if arg is not type(None))
    if get_origin(kind) is Literal:
        return ", ".join(str(arg) for arg in get_args(kind))
    if kind is bool:
        return "true, false"
    bounds = {
        name: getattr(rule, name)
        for rule in field.metadata
        for name in ("ge", "le")
        if getattr(rule, name, None) is not None
    }
    noun = "whole number" if kind is int else "number" if kind is float else "any text"
    if "le" in bounds:
        return f"{noun} from {bounds['ge']} to {bounds['le']}"
    return f"{noun} >= {bounds['ge']}" if "ge" in bounds else noun


def _extra(field: FieldInfo, key: str) -> str | None:
    extra = field.json_schema_extra
    return str(extra[key]) if isinstance(extra, dict) and key in extra else None


def _plain(value: Any) -> str:
    """A default as it is written in an environment file."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def shown_default(field: FieldInfo) -> str:
    """The default as the documentation states it."""
    shown = _extra(field, "shown")
    if shown is not None:
        return shown
    if field.default is PydanticUndefined or field.default is None:
        return ""
    return _plain(field.default)


def env_example() -> str:
    """The settings part of `.env.example`: each variable commented out at its default."""
    lines: list[str] = []
    sections: tuple[tuple[str, type[Settings | ServerSettings]], ...] = (
        ("Application (chassis/settings/declarations.py: Settings)", Settings),
        (
            "gunicorn (gunicorn.conf.py; chassis/settings/declarations.py: ServerSettings)",
            ServerSettings,
        ),
    )
    for title, declared in sections:
        lines += ["", f"# --- {title} ".ljust(92, "-")]
        for name, field in declared.variables():
            why = f"{accepted(field)}. {field.description}"
            if _extra(field, "shown") is not None:
                why += f" Default: {shown_default(field)}."
            lines += ["", *textwrap.wrap(why, 90, initial_indent="# ", subsequent_indent="# ")]
            default = "" if field.default is None else _plain(field.default)
            lines.append(f"# {name}={default}")
    for name, (_, why) in OTHER_VARIABLES.items():
        lines += ["", *textwrap.wrap(why, 90, initial_indent="# ", subsequent_indent="# ")]
        lines.append(f"# {name}=")
    return "\n".join(lines) + "\n"


def readme_table() -> str:
    """The README's table of variables."""
    rows = ["| Variable | Default | Accepts | What it does |", "| --- | --- | --- | --- |"]
    for declared in (Settings, ServerSettings):
        for name, field in declared.variables():
            default = shown_default(field)
            if _extra(field, "shown") is None and default:
                default = f"`{default}`"
            why = str(field.description).split(". ")[0].removesuffix(".")
            rows.append(f"| `{name}` | {default} | {accepted(field)} | {why} |")
    for name, (accepts, why) in OTHER_VARIABLES.items():
        rows.append(f"| `{name}` | | {accepts} | {why.split('; ')[0]} |")
    return "\n".join(rows) + "\n"


# `.env.example` keeps its head and its docker compose part; between them it is written here.
ENV_EXAMPLE = ".env.example"
ENV_EXAMPLE_TAIL = "# --- docker compose"
README = "README.md"
README_BEGIN = (
    "<!-- settings: written from chassis/settings/declarations.py by `make settings-docs` -->"
)
README_END = "<!-- /settings -->"


def documented(env_example_text: str, readme_text: str) -> tuple[str, str]:
    """Both files with their settings parts written from the declarations."""
    head, _, rest = env_example_text.partition("\n\n# --- ")
    tail = rest[rest.index(ENV_EXAMPLE_TAIL) :] if ENV_EXAMPLE_TAIL in rest else ""
    env_text = f"{head}\n{env_example()}\n{tail}"
    before, _, rest = readme_text.partition(README_BEGIN)
    _, _, after = rest.partition(README_END)
    readme = f"{before}{README_BEGIN}\n{readme_table()}{README_END}{after}"
    return env_text, readme


def write_docs() -> None:
    """`make settings-docs`, from the project root: rewrite both files."""
    env_file, readme_file = Path(ENV_EXAMPLE), Path(README)
    env_text, readme = documented(env_file.read_text(), readme_file.read_text())
    env_file.write_text(env_text)
    readme_file.write_text(readme)


if __name__ == "__main__":
    write_docs()
