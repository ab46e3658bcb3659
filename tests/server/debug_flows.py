"""Workflows for the dashboard's debugging views: a wait on an event with a match, a
wait for any of three conditions, and a workflow an event starts."""

from __future__ import annotations

import asyncio
from typing import Any

import tarry


def register_debug(app: tarry.App) -> tarry.App:
    @app.workflow("onboarding")
    async def onboarding(ctx: tarry.Context, step: tarry.Step) -> Any:
        done = await step.wait_for_event(
            "wait-done", event="app/done", match="data.user", timeout="1h"
        )
        return None if done is None else done.data

    @app.workflow("first-of")
    async def first_of(ctx: tarry.Context, step: tarry.Step) -> Any:
        user = ctx.payload.get("user")
        woken = await step.wait_for_any(
            "first",
            [
                tarry.signal(f"go:{user}"),
                tarry.event("app/ping", if_=f'async.data.user == "{user}"'),
                tarry.message(name="poke"),
            ],
            timeout="1h",
        )
        return None if woken is None else woken.index

    @app.workflow("checkout", retries=3)
    async def checkout(ctx: tarry.Context, step: tarry.Step) -> Any:
        """Steps, a charge that fails twice before it goes through, a pause, and a wait
        for a person's approval: every kind of bar the waterfall draws."""
        order = ctx.payload.get("order")

        async def reserve() -> dict[str, Any]:
            await asyncio.sleep(0.15)
            return {"order": order, "reserved": True}

        async def charge() -> str:
            await asyncio.sleep(0.1)
            if ctx.attempt < 3:
                raise ConnectionError(f"payment gateway timed out (attempt {ctx.attempt})")
            return f"charge-{order}"

        await step.run("reserve", reserve)
        await step.run("charge", charge)
        await step.sleep("cool-off", "300ms")
        decision = await step.wait_for_signal(
            "wait-approval", signal=f"checkout:{order}", timeout="1d"
        )
        return {"approved": bool(decision and decision.get("approved"))}

    @app.workflow("welcome", on="app/signup")
    async def welcome(ctx: tarry.Context, step: tarry.Step) -> Any:
        return await step.run("greet", lambda: f"hello {ctx.payload.get('user')}")

    return app
