"""Workflows the server, CLI and browser tests serve: an approval, an inbox, a quick one."""

from __future__ import annotations

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

    return app
