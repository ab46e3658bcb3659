"""Workflows parked on several things at once, for the server, CLI and browser tests:
two branches side by side, a wait for all of two conditions, a 2-of-3 quorum."""

from __future__ import annotations

import asyncio
from typing import Any

import tarry


def register_parallel(app: tarry.App) -> tarry.App:
    @app.workflow("paired")
    async def paired(ctx: tarry.Context, step: tarry.Step) -> Any:
        order = ctx.payload.get("order")
        contract, payment = await asyncio.gather(
            step.wait_for_signal("contract", signal=f"contract:{order}", timeout="7d"),
            step.wait_for_message("payment", name="payment", timeout="1d"),
        )
        return {"contract": contract, "payment": None if payment is None else payment.data}

    @app.workflow("documents")
    async def documents(ctx: tarry.Context, step: tarry.Step) -> Any:
        order = ctx.payload.get("order")
        return await step.wait_for_all(
            "docs", [tarry.signal(f"contract:{order}"), tarry.message("payment")], timeout="7d"
        )

    @app.workflow("review")
    async def review(ctx: tarry.Context, step: tarry.Step) -> Any:
        order = ctx.payload.get("order")
        votes = await step.wait_for_any(
            "votes",
            [tarry.signal(f"review:{order}:{who}") for who in ("ann", "bob", "cy")],
            timeout="3d",
            count=2,
        )
        return [vote.index for vote in votes]

    return app
