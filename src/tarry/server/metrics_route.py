"""``GET /metrics``: the Prometheus text format, behind the API's bearer token.

The collector is made once, with the server (``install``), so this process's
figures count from the start and the store's operations are timed from then on.
An install without ``tarry[metrics]`` answers 404 with the command that brings
it, rather than a route that is simply missing.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from starlette.responses import Response

from ..app import App
from ..metrics import MetricsExtraMissing, collector, require_prometheus
from .api import authorized

router = APIRouter()

TEXT_FORMAT = "text/plain; version=0.0.4; charset=utf-8"
"""Prometheus's text exposition format (``prometheus_client.CONTENT_TYPE_LATEST``)."""


def install(server: FastAPI, app: App) -> None:
    """Serve ``app``'s metrics at ``/metrics`` on ``server``."""
    try:
        require_prometheus()
        server.state.metrics = collector(app)
    except MetricsExtraMissing as exc:
        server.state.metrics = exc
    server.include_router(router)


@router.get("/metrics", dependencies=[Depends(authorized)], include_in_schema=False)
async def metrics(request: Request) -> Response:
    found = request.app.state.metrics
    if isinstance(found, MetricsExtraMissing):
        raise HTTPException(404, f"{found} ({found.hint})")
    return Response(await found.exposition(), media_type=TEXT_FORMAT)
