"""The WSGI entry point, `app.wsgi:app`: the only module that builds an app at import."""

from app import create_app
from chassis.settings import SettingsError

try:
    app = create_app()
except SettingsError as exc:
    # One line naming the variable, not a traceback; exit status 1.
    raise SystemExit(f"configuration error: {exc}") from None
