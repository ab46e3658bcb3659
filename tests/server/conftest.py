"""An App with the test workflows on a fresh SQLite file, served over ASGI in-process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

import tarry
from tarry.server import create_app

from .flows import FAST, register

TOKEN = "s3cret-token"


@pytest.fixture
async def tarry_app(sqlite_url: str) -> AsyncIterator[tarry.App]:
    app = register(tarry.App(sqlite_url, **FAST))
    async with app.worker():
        yield app
    await app.close()


def asgi_client(app: tarry.App, **options: Any) -> httpx.AsyncClient:
    server = create_app(app, **options)
    transport = httpx.ASGITransport(app=server)
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
async def client(tarry_app: tarry.App) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(tarry_app) as c:
        yield c


@pytest.fixture
def make_client(tarry_app: tarry.App) -> Callable[..., httpx.AsyncClient]:
    return lambda **options: asgi_client(tarry_app, **options)


async def wait_run(
    client: httpx.AsyncClient, run_id: str, *statuses: str, timeout: float = 10, **kw: Any
) -> dict[str, Any]:
    give_up = time.monotonic() + timeout
    while True:
        response = await client.get(f"/api/v1/runs/{run_id}", **kw)
        assert response.status_code == 200, response.text
        run: dict[str, Any] = response.json()
        if run["status"] in statuses:
            return run
        if time.monotonic() > give_up:
            raise AssertionError(f"run {run_id} still {run['status']}: {run}")
        await asyncio.sleep(0.02)
