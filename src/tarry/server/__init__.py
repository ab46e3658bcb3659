"""The HTTP API, the dashboard and (optionally) a worker, on one ASGI app.

``create_app(app, token=..., worker=True)`` is what ``tarry serve`` runs under
uvicorn: the worker runs in the server's own event loop, started and stopped by
the lifespan.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from .. import __version__
from ..app import App
from . import api, api_ops, dashboard, dashboard_ops, errors
from .auth import Guard
from .limits import DEFAULT_MAX_BODY, BodyLimit

__all__ = ["DEFAULT_MAX_BODY", "create_app"]


def create_app(
    app: App,
    *,
    token: str | None = None,
    worker: bool = False,
    concurrency: int = 32,
    max_body: int = DEFAULT_MAX_BODY,
) -> FastAPI:
    """An ASGI app serving ``/api/v1``, the dashboard at ``/`` and ``/static``.

    ``token``: require ``Authorization: Bearer <token>`` on the API and a login on
    the dashboard. ``worker``: run ``app``'s worker while the server runs.
    ``max_body``: the largest request body accepted, in bytes (413 above it).
    """
    if max_body < 1:
        raise ValueError(f"max_body must be a positive number of bytes, got {max_body!r}")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        try:
            if worker:
                async with app.worker(concurrency=concurrency):
                    yield
            else:
                yield
        finally:
            await app.close()

    server = FastAPI(
        title="tarry",
        version=__version__,
        description="Start runs, send signals, events and messages, and inspect runs.",
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    server.state.tarry = app
    server.state.guard = Guard(token)
    errors.install(server)
    server.include_router(api.router)
    server.include_router(api_ops.router)
    server.include_router(dashboard_ops.router)
    server.include_router(dashboard.router)
    static = files("tarry.server").joinpath("static")
    server.mount("/static", StaticFiles(directory=str(static)), name="static")
    server.add_middleware(BodyLimit, max_body=max_body)
    return server
