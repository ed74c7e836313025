"""WSGI middleware, each in werkzeug's `middleware/` shape."""
