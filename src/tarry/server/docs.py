"""``/api/v1/docs``: the OpenAPI document in Swagger UI, with no internet needed.

FastAPI's own docs page loads Swagger UI from a CDN, which leaves it blank on a
machine without internet; this one loads the copy vendored under
``static/swagger-ui`` (swagger-ui-dist from npm, Apache-2.0, see its SOURCE file).
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse

OPENAPI_URL = "/api/v1/openapi.json"
DOCS_URL = "/api/v1/docs"
ASSETS = "/static/swagger-ui"

router = APIRouter()


@router.get(DOCS_URL, include_in_schema=False)
async def api_docs() -> HTMLResponse:
    return get_swagger_ui_html(
        openapi_url=OPENAPI_URL,
        title="tarry API",
        swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
    )
