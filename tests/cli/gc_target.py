"""A ``tarry worker`` target whose one workflow returns its process's collector."""

from __future__ import annotations

import gc
import sys
from typing import Any

import tarry

app = tarry.App()


@app.workflow("collector")
async def collector(ctx: tarry.Context, step: tarry.Step) -> Any:
    fastapi = sys.modules.get("fastapi")  # loaded by serve and dev only
    servers = [o for o in gc.get_objects() if fastapi and isinstance(o, fastapi.FastAPI)]
    return {
        "young": gc.get_threshold()[0],
        "frozen": gc.get_freeze_count(),
        "servers_scanned": len(servers),  # a frozen object is in no generation
    }
