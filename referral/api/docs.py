"""The API's documentation, as a sanic-ext extension: `/docs/openapi.json`, Swagger UI and ReDoc.

The document comes from the route declarations (`referral.api.openapi`): sanic-ext's own builder
keeps one operation per handler for all its methods, so it could not document GET's query apart
from POST's body. sanic-ext's own UI pages load both UIs from CDNs (blank pages offline), link
Google Fonts, and its Swagger `oauth2-redirect.html` handler downloads that page from a CDN,
synchronously, on request. So these pages take their place, with their assets read from installed
packages:

- Swagger UI from the PyPI package `swagger-ui-bundle` (in requirements.txt);
- ReDoc's `redoc.standalone.js` from the npm package `redoc`, which `make venv` unpacks into
  `<venv>/share/redoc/` (or point `SANIC_DOCS_REDOC_JS` at a copy).

A Content-Security-Policy keeps the pages on this origin (ReDoc's footer logo would otherwise be
fetched from its CDN).
"""

from __future__ import annotations

import html
import logging
import sys
from pathlib import Path
from typing import Any

import orjson
from sanic import Blueprint, Request, Sanic
from sanic.exceptions import NotFound
from sanic.response import HTTPResponse, file, raw, redirect
from sanic.response import html as html_response
from sanic_ext import Extension

from referral.api.openapi import openapi_document
from referral.api.problems import NOSNIFF

log = logging.getLogger("referral.docs")

DEFAULT_REDOC_JS = Path(sys.prefix) / "share" / "redoc" / "redoc.standalone.js"

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

SWAGGER_INIT_JS = """\
"use strict";
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.specUrl,
    dom_id: "#swagger-ui",
    deepLinking: true,
    layout: "BaseLayout",
    validatorUrl: null,
    tryItOutEnabled: false,
    displayRequestDuration: true,
    persistAuthorization: false
  });
});
"""

SWAGGER_PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} · Swagger UI</title>
  <link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
  <link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui" data-spec-url="{spec_url}"></div>
  <script src="{assets}/swagger-ui-bundle.js"></script>
  <script src="{assets}/swagger-init.js"></script>
</body>
</html>
"""

REDOC_PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title} · ReDoc</title>
  <link rel="icon" type="image/png" href="{assets}/favicon-32x32.png">
  <style>body {{ margin: 0; padding: 0; }}</style>
</head>
<body>
  <redoc spec-url="{spec_url}"></redoc>
  <script src="{assets}/redoc.standalone.js"></script>
</body>
</html>
"""

REDOC_MISSING_PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head><meta charset="utf-8"><title>{title} · ReDoc</title></head>
<body>
  <h1>ReDoc is not installed</h1>
  <p>Run <code>make venv</code> (it unpacks the npm package <code>redoc</code> into the virtualenv),
  or set <code>SANIC_DOCS_REDOC_JS</code> to a <code>redoc.standalone.js</code>.
  Meanwhile: <a href="{prefix}/swagger">Swagger UI</a>, <a href="{spec_url}">the OpenAPI document</a>.</p>
</body>
</html>
"""

PAGE_METHODS = ["GET", "HEAD"]  # HEAD: as GET, without the body (Sanic leaves it out)
MEDIA_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
}


def swagger_ui_dir() -> Path:
    from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

    return Path(str(swagger_ui_path))


def redoc_js(app: Sanic) -> Path:
    configured = app.config.get("DOCS_REDOC_JS")
    return Path(configured) if configured else DEFAULT_REDOC_JS


class ApiDocs(Extension):
    """Serves the document and both UIs under OAS_URL_PREFIX; OAS_UI_DEFAULT picks where `/docs` leads."""

    name = "docs"

    def startup(self, bootstrap: Any) -> None:
        self.app.blueprint(docs_blueprint(self.app, title=self.app.ctx.settings.service_name))

    def label(self) -> str:
        return str(self.app.config.get("OAS_URL_PREFIX", "/docs"))


def docs_blueprint(app: Sanic, *, title: str) -> Blueprint:
    default_ui = "redoc" if app.config.get("OAS_UI_DEFAULT") == "redoc" else "swagger"
    prefix = str(app.config.get("OAS_URL_PREFIX", "/docs")).rstrip("/")
    spec_url = f"{prefix}/openapi.json"
    assets_url = f"{prefix}/assets"
    swagger_dir = swagger_ui_dir()
    redoc_path = redoc_js(app)
    assets = {
        "swagger-ui-bundle.js": swagger_dir / "swagger-ui-bundle.js",
        "swagger-ui.css": swagger_dir / "swagger-ui.css",
        "favicon-32x32.png": swagger_dir / "favicon-32x32.png",
        "favicon-16x16.png": swagger_dir / "favicon-16x16.png",
        "redoc.standalone.js": redoc_path,
    }
    if not redoc_path.is_file():
        log.warning("ReDoc is not installed at %s: run `make venv`; /docs/redoc will say so", redoc_path)

    def render(template: str) -> str:
        return template.format(title=html.escape(title), assets=assets_url, spec_url=spec_url, prefix=prefix)

    bp = Blueprint("docs", url_prefix=prefix or "/")
    document: list[bytes] = []  # built on first request, once every route is registered

    @bp.route("/openapi.json", name="openapi", methods=PAGE_METHODS)
    async def openapi(request: Request) -> HTTPResponse:
        if not document:
            document.append(orjson.dumps(openapi_document(request.app, title=title)))
        return raw(document[0], content_type="application/json", headers=NOSNIFF)

    @bp.route("", name="index", methods=PAGE_METHODS)
    async def index(request: Request) -> HTTPResponse:
        return redirect(f"{prefix}/{default_ui}", headers=NOSNIFF)

    @bp.route("/swagger", name="swagger", methods=PAGE_METHODS)
    async def swagger(request: Request) -> HTTPResponse:
        return html_response(render(SWAGGER_PAGE), headers=PAGE_HEADERS)

    @bp.route("/redoc", name="redoc", methods=PAGE_METHODS)
    async def redoc(request: Request) -> HTTPResponse:
        template = REDOC_PAGE if redoc_path.is_file() else REDOC_MISSING_PAGE
        return html_response(render(template), headers=PAGE_HEADERS)

    @bp.route("/assets/<name:str>", name="asset", methods=PAGE_METHODS)
    async def asset(request: Request, name: str) -> HTTPResponse:
        headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
        if name == "swagger-init.js":
            return raw(SWAGGER_INIT_JS, content_type=MEDIA_TYPES[".js"], headers=headers)
        path = assets.get(name)
        if path is None or not path.is_file():
            raise NotFound("No such documentation asset.")
        return await file(path, mime_type=MEDIA_TYPES[path.suffix], headers=headers)

    return bp
