"""A ``tarry worker`` target whose one workflow returns its process's collector."""

from __future__ import annotations

import gc
from typing import Any

import tarry

app = tarry.App()


@app.workflow("collector")
async def collector(ctx: tarry.Context, step: tarry.Step) -> Any:
    return {"young": gc.get_threshold()[0], "frozen": gc.get_freeze_count()}
