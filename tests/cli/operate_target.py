"""A ``tarry worker`` target for the operating commands: a run that fails until it is
fixed (a file named ``fixed`` in the worker's directory), a run that waits, and a
parent that invokes a waiting child."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tarry

app = tarry.App(lease="2s", retry_base="10ms", retry_cap="50ms")


@app.workflow("charge", retries=1)
async def charge(ctx: tarry.Context, step: tarry.Step) -> Any:
    order = await step.run("load", lambda: {"order": ctx.payload.get("order")})

    def pay() -> Any:
        if not Path("fixed").exists():
            raise RuntimeError(f"card declined for {order['order']}")
        return {"paid": order["order"]}

    paid = await step.run("pay", pay)
    return await step.run("receipt", lambda: {"receipt": paid["paid"]})


@app.workflow("hold")
async def hold(ctx: tarry.Context, step: tarry.Step) -> Any:
    return await step.wait_for_signal("wait", signal=f"hold:{ctx.payload.get('n')}", timeout="1h")


@app.workflow("parent")
async def parent(ctx: tarry.Context, step: tarry.Step) -> Any:
    return await step.invoke("call-child", "hold", {"n": ctx.payload.get("n")})
