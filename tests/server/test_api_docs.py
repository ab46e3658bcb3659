"""``/api/v1/docs`` works offline: Swagger UI comes from the package, not a CDN."""

from __future__ import annotations

import re

import httpx


async def test_docs_load_swagger_ui_from_the_package(client: httpx.AsyncClient) -> None:
    page = await client.get("/api/v1/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "https://" not in page.text
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert set(assets) == {
        "/static/swagger-ui/swagger-ui-bundle.js",
        "/static/swagger-ui/swagger-ui.css",
        "/static/swagger-ui/favicon-32x32.png",
    }
    for asset in assets:
        served = await client.get(asset)
        assert served.status_code == 200 and len(served.content) > 500, asset
    assert "/api/v1/openapi.json" in page.text
    spec = await client.get("/api/v1/openapi.json")
    assert spec.status_code == 200 and spec.json()["info"]["title"] == "tarry"
    assert "/api/v1/docs" not in spec.json()["paths"]
    licence = await client.get("/static/swagger-ui/LICENSE")
    assert "Apache License" in licence.text
