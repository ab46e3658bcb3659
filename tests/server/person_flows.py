"""Workflows that wait on people with a schema: an approval (``tarry.Approval``), an
order sent as a message (a model with a number, a choice, an optional text, a yes/no,
a list and a nested object), a reply with a long text, a callback token with that
order's schema, and a wait on either an approval signal or an approval token.

Each returns what it got and the type the wait returned, so a test can tell that
the code received the model instance."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

import tarry


class Address(BaseModel):
    city: str
    postcode: str | None = None


class Order(BaseModel):
    quantity: int = Field(ge=1, le=100, description="how many, from 1 to 100")
    colour: Literal["red", "green", "blue"]
    note: str | None = None
    express: bool = False
    tags: list[str] = []
    address: Address | None = None


class Reply(BaseModel):
    text: str = Field(max_length=2000)


def register_people(app: tarry.App) -> tarry.App:
    @app.workflow("typed-approval")
    async def typed_approval(ctx: tarry.Context, step: tarry.Step) -> Any:
        key, timeout = f"approve:{ctx.payload['id']}", ctx.payload.get("timeout", "1h")
        decision = await step.wait_for_signal(
            "approve", signal=key, timeout=timeout, schema=tarry.Approval
        )
        return {"type": type(decision).__name__, "decision": decision.model_dump()}

    @app.workflow("typed-order")
    async def typed_order(ctx: tarry.Context, step: tarry.Step) -> Any:
        message = await step.wait_for_message(
            "order", name="order", timeout=ctx.payload.get("timeout"), schema=Order
        )
        return {"type": type(message.data).__name__, "order": message.data.model_dump()}

    @app.workflow("typed-reply")
    async def typed_reply(ctx: tarry.Context, step: tarry.Step) -> Any:
        message = await step.wait_for_message("reply", timeout="2h", schema=Reply)
        return {"type": type(message.data).__name__, "text": message.data.text}

    @app.workflow("typed-token")
    async def typed_token(ctx: tarry.Context, step: tarry.Step) -> Any:
        token = await step.create_token("order-form", timeout="1d", schema=Order)
        await step.run("link", lambda: token.url)
        order = await step.wait_for_token(token)
        return {"type": type(order).__name__, "order": order.model_dump()}

    @app.workflow("either-approval")
    async def either_approval(ctx: tarry.Context, step: tarry.Step) -> Any:
        token = await step.create_token("approve-link", timeout="3h", schema=tarry.Approval)
        woken = await step.wait_for_any(
            "decide",
            [
                tarry.signal(f"either:{ctx.payload['id']}", schema=tarry.Approval),
                tarry.token(token),
            ],
            timeout="3h",
        )
        return {"index": woken.index, "decision": woken.value.model_dump()}

    return app
