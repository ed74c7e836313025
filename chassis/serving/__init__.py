"""Serving: gunicorn's hooks and logger, the gevent worker, the development server, and the
container's health probe. Importing this package imports nothing, so a server may patch with
gevent before anything else loads."""
