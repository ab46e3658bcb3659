"""The HTTP API, the dashboard and (optionally) a worker, on one ASGI app.

``create_app(app, token=..., worker=True)`` is what ``tarry serve`` runs under
uvicorn: the worker runs in the server's own event loop, started and stopped by
the lifespan.

FastAPI, uvicorn and the rest come with ``tarry[server]``, not with the library:
importing this package needs none of them (the CLI reads ``strictjson`` from it),
and ``create_app`` says which extra to install when they are missing.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.resources import files
from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..app import App

__all__ = ["SERVER_EXTRA", "ServerExtraMissing", "create_app", "require_server"]

SERVER_EXTRA = "pip install 'tarry[server]'"

# What the API and dashboard import, by import name: any one missing is reported
# before the first of them is imported, so the error names the extra, not a module.
_SERVER_MODULES = ("fastapi", "starlette", "uvicorn", "jinja2", "itsdangerous", "pydantic")
_MULTIPART_MODULES = ("python_multipart", "multipart")  # the new name, then the old one


class ServerExtraMissing(ConfigError):
    """The API and dashboard were asked for in an install without ``tarry[server]``."""

    hint = f"install the server extra: {SERVER_EXTRA}"


def require_server() -> None:
    """Raise ``ServerExtraMissing`` unless every package the server needs imports."""
    missing = []
    for name in _SERVER_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if not any(_imports(name) for name in _MULTIPART_MODULES):
        missing.append("python-multipart")
    if missing:
        raise ServerExtraMissing(
            f"the HTTP API and dashboard need {', '.join(missing)}, which this install "
            f"of tarry lacks; {SERVER_EXTRA} brings them"
        )


def _imports(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


def create_app(
    app: App,
    *,
    token: str | None = None,
    worker: bool = False,
    concurrency: int = 32,
    max_body: int | None = None,
) -> FastAPI:
    """An ASGI app serving ``/api/v1``, the dashboard at ``/`` and ``/static``.

    ``token``: require ``Authorization: Bearer <token>`` on the API and a login on
    the dashboard. ``worker``: run ``app``'s worker while the server runs.
    ``max_body``: the largest request body accepted, in bytes (413 above it);
    default 4 MiB. Raises ``ServerExtraMissing`` without ``tarry[server]``.
    """
    require_server()
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles

    from .. import __version__
    from . import (
        api,
        api_ops,
        dashboard,
        dashboard_ops,
        docs,
        errors,
        metrics_route,
        tokens_route,
        webhooks_route,
    )
    from .auth import Guard
    from .limits import DEFAULT_MAX_BODY, BodyLimit

    if max_body is None:
        max_body = DEFAULT_MAX_BODY
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
        openapi_url=docs.OPENAPI_URL,
        docs_url=None,  # served by docs.router from the package, not from a CDN
        redoc_url=None,
        lifespan=lifespan,
    )
    server.state.tarry = app
    server.state.guard = Guard(token)
    errors.install(server)
    server.include_router(docs.router)
    server.include_router(api.router)
    server.include_router(api_ops.router)
    server.include_router(tokens_route.router)  # no bearer token: the link's signature
    server.include_router(dashboard_ops.router)
    server.include_router(dashboard.router)
    metrics_route.install(server, app)
    static = files("tarry.server").joinpath("static")
    server.mount("/static", StaticFiles(directory=str(static)), name="static")
    server.add_middleware(BodyLimit, max_body=max_body)
    webhooks_route.install(server, app)  # after BodyLimit: a webhook's own limit goes first
    return server
