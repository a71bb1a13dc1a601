"""``/docs`` (Swagger UI) and ``/redoc`` (ReDoc) served from vendored assets: no CDN.

FastAPI's own pages load both from a CDN and start Swagger UI with an inline script, which
neither works offline nor fits the pages' Content-Security-Policy. These pages load the
vendored bundles from ``/static/vendor`` and start Swagger UI from ``/static/docs``.
"""

from __future__ import annotations

from html import escape

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

__all__ = ["router"]

router = APIRouter(include_in_schema=False)


def _page(title: str, head: str, body: str) -> HTMLResponse:
    return HTMLResponse(
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title>{head}</head><body>{body}</body></html>"
    )


@router.get("/docs", response_class=HTMLResponse)
def swagger_ui(request: Request) -> HTMLResponse:
    """Interactive API documentation (Swagger UI)."""
    spec = escape(request.app.openapi_url or "/openapi.json")
    return _page(
        f"{request.app.title} - Swagger UI",
        "<link rel='stylesheet' href='/static/vendor/swagger-ui/swagger-ui.css'>",
        f"<div id='swagger-ui' data-spec='{spec}'></div>"
        "<script src='/static/vendor/swagger-ui/swagger-ui-bundle.js'></script>"
        "<script src='/static/docs/swagger-init.js'></script>",
    )


@router.get("/redoc", response_class=HTMLResponse)
def redoc(request: Request) -> HTMLResponse:
    """API reference (ReDoc)."""
    spec = escape(request.app.openapi_url or "/openapi.json")
    return _page(
        f"{request.app.title} - ReDoc",
        "",
        f"<redoc spec-url='{spec}' disable-search-fonts='true'></redoc>"
        "<script src='/static/vendor/redoc/redoc.standalone.js'></script>",
    )
