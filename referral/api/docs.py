"""Swagger UI and ReDoc served from the service itself, so the docs work behind a firewall.

sanic-ext's own pages load both UIs from CDNs (blank pages offline), link Google Fonts, and its
Swagger `oauth2-redirect.html` handler downloads that page from a CDN, synchronously, on request.
So its UIs are switched off and these pages take their place, with their assets read from
installed packages:

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

from sanic import Blueprint, Request, Sanic
from sanic.response import HTTPResponse, file, raw, redirect
from sanic.response import html as html_response
from sanic_ext.extensions.openapi import openapi

from referral.errors import NotFound

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


def configure_docs_ui(app: Sanic, *, title: str) -> None:
    """Turn off sanic-ext's CDN pages and serve ours under OAS_URL_PREFIX (before the first `app.ext`)."""
    default_ui = "redoc" if app.config.get("OAS_UI_DEFAULT") == "redoc" else "swagger"
    app.config.OAS_UI_SWAGGER = False
    app.config.OAS_UI_REDOC = False
    app.config.OAS_UI_DEFAULT = None
    app.blueprint(docs_blueprint(app, title=title, default_ui=default_ui))


def docs_blueprint(app: Sanic, *, title: str, default_ui: str = "swagger") -> Blueprint:
    prefix = str(app.config.get("OAS_URL_PREFIX", "/docs")).rstrip("/")
    spec_url = f"{prefix}/{str(app.config.get('OAS_URI_TO_JSON', '/openapi.json')).lstrip('/')}"
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

    @bp.get("", name="index")
    @openapi.exclude()
    async def index(request: Request) -> HTTPResponse:
        return redirect(f"{prefix}/{default_ui}")

    @bp.get("/swagger", name="swagger")
    @openapi.exclude()
    async def swagger(request: Request) -> HTTPResponse:
        return html_response(render(SWAGGER_PAGE), headers=PAGE_HEADERS)

    @bp.get("/redoc", name="redoc")
    @openapi.exclude()
    async def redoc(request: Request) -> HTTPResponse:
        template = REDOC_PAGE if redoc_path.is_file() else REDOC_MISSING_PAGE
        return html_response(render(template), headers=PAGE_HEADERS)

    @bp.get("/assets/<name:str>", name="asset")
    @openapi.exclude()
    async def asset(request: Request, name: str) -> HTTPResponse:
        headers = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}
        if name == "swagger-init.js":
            return raw(SWAGGER_INIT_JS, content_type=MEDIA_TYPES[".js"], headers=headers)
        path = assets.get(name)
        if path is None or not path.is_file():
            raise NotFound("No such documentation asset.")
        return await file(path, mime_type=MEDIA_TYPES[path.suffix], headers=headers)

    return bp
