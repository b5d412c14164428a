"""GET /ui: the web page (app/api/ui/), and /docs and /redoc with their assets served from the
package (fastapi-offline's copies of Swagger UI and ReDoc): all of it works with no internet."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

UI_DIR = Path(__file__).resolve().parent.parent / "ui"
DOCS_ASSETS = "/docs-static"

# The page runs only its own script file (no inline script, none from elsewhere), loads its own
# style sheet, shows pictures the API answered (as blob: URLs), talks only to this server, and
# cannot be framed: a category or figure that smuggles in markup has nothing to run
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": PAGE_CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


class PageFiles(StaticFiles):
    """The page's script and style sheet, with the page's headers."""

    def file_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        response = super().file_response(*args, **kwargs)
        response.headers.update(PAGE_HEADERS)
        return response


router = APIRouter(include_in_schema=False)


@router.get("/ui")
async def page() -> HTMLResponse:
    """The page is a static shell: every figure on it comes from the API, with the API key the
    visitor gives it when the server has one."""
    return HTMLResponse((UI_DIR / "index.html").read_text(), headers=PAGE_HEADERS)


def install(app: FastAPI) -> None:
    """The page's routes and assets, and offline /docs and /redoc."""
    app.include_router(router)
    app.mount("/ui/static", PageFiles(directory=UI_DIR), name="ui-static")
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(files("fastapi_offline") / "static")), name="docs-static")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} - API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} - ReDoc",
            redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )
