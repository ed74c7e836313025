"""`python -m chassis.settings`: validate every setting, the app's and the server's, from
the environment, and exit 0, or 1 with one line naming the first bad variable.

The make targets run it before anything slow (migrations, a server's start), so a bad value
is reported in a second instead of after the migrations ran.
"""

from chassis.settings import ServerSettings, current_settings, read_or_exit

read_or_exit(current_settings)
read_or_exit(ServerSettings.from_env)
