"""Settings: every variable declared once (`declarations`), the parsers they share
(`parsers`), what a production SECRET_KEY must be (`secret_key`), and one set per process
(`current`). Importing this package loads pydantic, never Flask or SQLAlchemy."""

from chassis.settings.current import (
    PYPROJECT,
    current_settings,
    development_secret_said,
    get_settings,
    say_development_secret,
    use_settings,
)
from chassis.settings.declarations import DEFAULT_MAX_CONTENT_LENGTH, ServerSettings, Settings
from chassis.settings.parsers import SettingsError, host_port, read_or_exit, tcp_port
from chassis.settings.secret_key import (
    DEVELOPMENT_SECRET_KEY,
    MIN_PRODUCTION_SECRET_LENGTH,
    PLACEHOLDER_SECRETS,
)

__all__ = [
    "DEFAULT_MAX_CONTENT_LENGTH",
    "DEVELOPMENT_SECRET_KEY",
    "MIN_PRODUCTION_SECRET_LENGTH",
    "PLACEHOLDER_SECRETS",
    "PYPROJECT",
    "ServerSettings",
    "Settings",
    "SettingsError",
    "current_settings",
    "development_secret_said",
    "get_settings",
    "host_port",
    "read_or_exit",
    "say_development_secret",
    "tcp_port",
    "use_settings",
]
