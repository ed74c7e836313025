"""The API's documentation page, Swagger UI at /docs, from files in a pinned Python package.

Swagger UI's script and style come from `offapi` (pinned in uv.lock, the same files
spectree's `offline` extra uses), served here with the version in their URL: the page loads
nothing from a CDN and works with no network but the server's. Its own start-up code is a
file too, so a Content-Security-Policy of `script-src 'self'` lets it run. "Try it out" sends
requests to this server; Swagger UI's online validator badge is off (it would call
validator.swagger.io with the document).
"""

from __future__ import annotations

import functools
from importlib import resources

import offapi.__version__
from flask import Blueprint, Response, abort, current_app, url_for

# URL name -> (file in the offapi package, content type).
ASSETS = {
    "swagger-ui.css": ("swagger_style.css", "text/css"),
    "swagger-ui-bundle.js": ("swagger_bundle.js", "text/javascript"),
}
VERSION = offapi.__version__.__version__
# The asset URLs carry the package version, so a browser may keep them for a day.
ASSET_MAX_AGE_S = 86_400

bp = Blueprint("apidocs", __name__, url_prefix="/docs")

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>API documentation</title>
<link rel="stylesheet" href="{css}">
</head>
<body>
<div id="swagger-ui" data-spec-url="{spec}"></div>
<script src="{bundle}"></script>
<script src="{init}"></script>
</body>
</html>
"""

# Swagger UI on the document named by the page; BaseLayout has no top bar to load another.
INIT = """window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    domNode: root,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
    validatorUrl: null,
    deepLinking: true
  });
});
"""


@bp.get("")
def page() -> Response:
    """Serve the documentation page."""
    html = PAGE.format(
        css=url_for("apidocs.asset", name="swagger-ui.css", v=VERSION),
        bundle=url_for("apidocs.asset", name="swagger-ui-bundle.js", v=VERSION),
        init=url_for("apidocs.init", v=VERSION),
        spec=url_for("openapi.openapi_json"),
    )
    response = current_app.response_class(html, mimetype="text/html")
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/swagger-init.js")
def init() -> Response:
    """Serve the page's start-up script."""
    return _cached(current_app.response_class(INIT, mimetype="text/javascript"))


@bp.get("/<name>")
def asset(name: str) -> Response:
    """Serve one of Swagger UI's files from the offapi package."""
    if name not in ASSETS:
        abort(404)
    filename, mimetype = ASSETS[name]
    return _cached(current_app.response_class(_read(filename), mimetype=mimetype))


@functools.cache
def _read(filename: str) -> bytes:
    return (resources.files("offapi") / filename).read_bytes()


def _cached(response: Response) -> Response:
    response.headers["Cache-Control"] = f"public, max-age={ASSET_MAX_AGE_S}"
    return response
