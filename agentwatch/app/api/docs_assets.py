"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) served from installed packages, so they render without internet.

FastAPI's own pages load Swagger UI and ReDoc from a CDN. The built bundles come from the ``fastapi-offline``
package (its ``static`` folder, package data); the pages are FastAPI's, pointed at them. ReDoc's bundle also
fetches a logo from Redocly's CDN for its sidebar footer, unconditionally: it is served with that one URL emptied
(the image then hides itself), so the pages ask nothing of any other host.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS = Path(str(files("fastapi_offline") / "static"))
ASSETS_URL = "/docs-assets"
REDOC_BUNDLE = "redoc.standalone.js"
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"


@cache
def redoc_bundle() -> bytes:
    """ReDoc's bundle without its one outside URL (read once)."""
    return (ASSETS / REDOC_BUNDLE).read_bytes().replace(REDOC_LOGO, b"")


def install_offline_docs(app: FastAPI) -> None:
    """Add /docs, its OAuth2 redirect, /redoc and their assets to an app made with docs_url=None, redoc_url=None."""
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(f"{ASSETS_URL}/{REDOC_BUNDLE}", include_in_schema=False)
    def redoc_js() -> Response:
        return Response(redoc_bundle(), media_type="text/javascript")

    # Mounted after the route above, so that the route answers for ReDoc's bundle and the folder for the rest.
    app.mount(ASSETS_URL, StaticFiles(directory=ASSETS), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}", title=f"{app.title} - Swagger UI", oauth2_redirect_url=OAUTH2_REDIRECT,
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css", swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters)

    @app.get(OAUTH2_REDIRECT, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/{REDOC_BUNDLE}", redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False)
