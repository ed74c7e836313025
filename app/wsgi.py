"""The WSGI entry point, `app.wsgi:app`: the only module that builds an app at import."""

from app import create_app
from chassis.settings import read_or_exit

# A bad setting: one line naming the variable, exit status 1, not a traceback.
app = read_or_exit(create_app)
