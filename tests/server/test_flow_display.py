"""Why a queued run waits, as the API, the dashboard's runs list and run page say it,
for the flow control reasons (``tarry.queued_reason``), on both stores."""

from __future__ import annotations

import asyncio
from typing import Any

import tarry

from .conftest import asgi_client


async def test_rate_limited_and_key_busy_runs_say_why(database_url: str) -> None:
    app = tarry.App(database_url, lease="2s")
    release = asyncio.Event()

    @app.workflow("partner", rate_limit=tarry.rate(1, per="1h"))
    async def partner(ctx: tarry.Context, step: Any) -> None:
        return None

    @app.workflow("per-customer", concurrency=tarry.limit(1, key="event.data.customer"))
    async def per_customer(ctx: tarry.Context, step: Any) -> None:
        await step.run("hold", release.wait)

    first = await app.start("partner")
    held = await app.start("partner")
    busy = await app.start("per-customer", {"customer": "customer-7"})
    behind = await app.start("per-customer", {"customer": "customer-7"})
    try:
        async with app.worker(), asgi_client(app) as client:
            await app.result(first, timeout=10)
            for _ in range(500):
                if (await app.get_run(busy)).status == "running":
                    break
                await asyncio.sleep(0.01)
            api = (await client.get(f"/api/v1/runs/{held}")).json()
            assert api["queued_reason"].startswith("rate-limited until ")
            api = (await client.get(f"/api/v1/runs/{behind}")).json()
            assert api["queued_reason"] == "concurrency key busy (customer-7: 1 of 1 executing)"
            listed = (await client.get("/")).text
            assert "rate-limited until " in listed
            assert "concurrency key busy (customer-7: 1 of 1 executing)" in listed
            page = (await client.get(f"/runs/{behind}")).text
            assert "concurrency key busy (customer-7: 1 of 1 executing)" in page
            release.set()
            await app.result(behind, timeout=10)
    finally:
        await app.close()
