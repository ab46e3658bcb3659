"""Workflows the server, CLI and browser tests serve: an approval, an inbox, a quick one,
one that fails until a file exists, and a parent that invokes an approval."""

from __future__ import annotations

import os
from typing import Any

import tarry

FAST: dict[str, Any] = {"lease": "2s", "retry_base": "10ms", "retry_cap": "50ms"}


def register(app: tarry.App) -> tarry.App:
    @app.workflow("approval")
    async def approval(ctx: tarry.Context, step: tarry.Step) -> Any:
        await step.run("prepare", lambda: {"order": ctx.payload.get("order")})
        decision = await step.wait_for_signal(
            "wait-approval", signal=f"approval:{ctx.payload.get('order')}", timeout="1h"
        )
        if not decision.get("approved"):
            step.bail(f"rejected by {decision.get('by')}")
        return {"approved_by": decision.get("by")}

    @app.workflow("inbox")
    async def inbox(ctx: tarry.Context, step: tarry.Step) -> Any:
        message = await step.wait_for_message("wait-message", name="decision", timeout="1h")
        return None if message is None else message.data

    @app.workflow("quick", on="test/quick")
    async def quick(ctx: tarry.Context, step: tarry.Step) -> Any:
        return await step.run("echo", lambda: ctx.payload)

    @app.workflow("fragile", retries=1)
    async def fragile(ctx: tarry.Context, step: tarry.Step) -> Any:
        """Fails at "charge" (twice: one retry) while the file ``payload["gate"]`` is missing."""
        await step.run("prepare", lambda: {"gate": ctx.payload.get("gate")})

        def charge() -> str:
            gate = ctx.payload.get("gate")
            if not gate or not os.path.exists(gate):
                raise ConnectionError(f"the gate {gate} is closed")
            return "charged"

        charged = await step.run("charge", charge)
        return await step.run("ship", lambda: {"charged": charged})

    @app.workflow("parent")
    async def parent(ctx: tarry.Context, step: tarry.Step) -> Any:
        return await step.invoke("child", "approval", {"order": ctx.payload.get("order")})

    return app
