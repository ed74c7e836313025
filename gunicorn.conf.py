"""gunicorn configuration: `gunicorn -c gunicorn.conf.py` serves `app.wsgi:app`.

Plain assignments, each read from the environment with the default and the reason next to
it. `GUNICORN_CMD_ARGS` still overrides anything here (gunicorn applies it after this file).
"""

import os

from app.settings import Settings, SettingsError

# Validate the application's settings in the master, before any worker forks, so a bad value
# stops the server with one line naming the variable instead of a crash loop of workers.
try:
    Settings.from_env()
except SettingsError as exc:
    raise SystemExit(f"configuration error: {exc}") from None

# The WSGI application to serve (module:variable).
wsgi_app = "app.wsgi:app"

# Loopback by default, so a development server is never exposed by accident; containers
# set GUNICORN_BIND=0.0.0.0:8000 (or PORT, the name platforms such as Heroku set).
bind = [os.environ.get("GUNICORN_BIND") or f"127.0.0.1:{os.environ.get('PORT', '8000')}"]

# Worker processes; WEB_CONCURRENCY is the name hosting platforms already set.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))

# Logs go to stdout/stderr, where containers and systemd's journal collect them.
accesslog = "-"
errorlog = "-"

# gunicorn 25+ opens a control socket under $HOME by default; the kit manages the server
# with signals (as Docker, systemd and Kubernetes do), and a read-only container has no
# writable $HOME, so it stays off.
control_socket_disable = True
