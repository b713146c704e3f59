"""The interactive API documentation, served from the package: ``/docs`` (Swagger UI)
and ``/redoc`` (ReDoc), with their scripts, style sheet and icon under
``/docs/assets/``. No CDN is asked at run time (the machine serving may have no
internet), and each page carries a ``Content-Security-Policy`` that lets it load
nothing from anywhere else.

The Swagger UI and ReDoc bundles come from the ``fastapi-offline`` distribution, which
ships them as package data; the page and the script that starts Swagger UI are ours
(no inline script, so the policy need not allow one).
"""

from __future__ import annotations

from html import escape
from importlib import resources
from pathlib import Path
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, Response

from api.problems import problem_response

DOCS_PATH: Final = "/docs"
REDOC_PATH: Final = "/redoc"
ASSETS_PATH: Final = "/docs/assets"
ASSETS_MAX_AGE_S: Final = 24 * 3600

CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        # Swagger UI and ReDoc set styles inline as they render.
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "connect-src 'self'",
        # ReDoc searches in a worker it starts from a blob.
        "worker-src 'self' blob:",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)


def _bundled(name: str) -> Path:
    return Path(str(resources.files("fastapi_offline").joinpath("static", name)))


def _ours(name: str) -> Path:
    return Path(str(resources.files("prep_es").joinpath("docs_assets", name)))


ASSETS: Final[dict[str, tuple[Path, str]]] = {
    "swagger-ui-bundle.js": (_bundled("swagger-ui-bundle.js"), "text/javascript"),
    "swagger-ui.css": (_bundled("swagger-ui.css"), "text/css"),
    "redoc.standalone.js": (_bundled("redoc.standalone.js"), "text/javascript"),
    "favicon.png": (_bundled("favicon.png"), "image/png"),
    "swagger-init.js": (_ours("swagger-init.js"), "text/javascript"),
}
"""Every file the pages load, by the name they ask for (nothing else is served)."""

router = APIRouter(include_in_schema=False)


def missing_assets() -> list[str]:
    """Assets whose file is not installed (none, unless the installation is broken)."""
    return [name for name, (path, _) in ASSETS.items() if not path.is_file()]


def _page(title: str, head: str, body: str) -> HTMLResponse:
    html = (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(title)}</title>\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"{head}</head>\n<body>\n{body}</body>\n</html>\n"
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY})


def _urls(request: Request) -> tuple[str, str]:
    """The assets' and the OpenAPI document's URLs, under the application's root path."""
    root = str(request.scope.get("root_path", "")).rstrip("/")
    openapi_url = request.app.openapi_url or "/openapi.json"
    return escape(root + ASSETS_PATH), escape(root + openapi_url)


@router.get(DOCS_PATH)
async def swagger_ui(request: Request) -> HTMLResponse:
    assets, openapi = _urls(request)
    return _page(
        f"{request.app.title} – API",
        f'<link rel="stylesheet" href="{assets}/swagger-ui.css">\n'
        f'<link rel="icon" type="image/png" href="{assets}/favicon.png">\n',
        f'<div id="swagger-ui" data-openapi-url="{openapi}"></div>\n'
        f'<script src="{assets}/swagger-ui-bundle.js"></script>\n'
        f'<script src="{assets}/swagger-init.js"></script>\n',
    )


@router.get(REDOC_PATH)
async def redoc(request: Request) -> HTMLResponse:
    assets, openapi = _urls(request)
    return _page(
        f"{request.app.title} – API reference",
        f'<link rel="icon" type="image/png" href="{assets}/favicon.png">\n',
        f'<redoc spec-url="{openapi}"></redoc>\n'
        f'<script src="{assets}/redoc.standalone.js"></script>\n',
    )


@router.get(ASSETS_PATH + "/{name}", response_model=None)
async def asset(request: Request, name: str) -> Response:
    found = ASSETS.get(name)
    if found is None:
        return problem_response(request, status=404, code="not_found", detail=f"no asset {name}")
    path, media_type = found
    return FileResponse(
        path,
        media_type=media_type,
        headers={"Cache-Control": f"public, max-age={ASSETS_MAX_AGE_S}"},
    )
