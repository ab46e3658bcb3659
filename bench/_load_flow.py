"""The workflow of ``bench/load.py``, importable by its worker processes:

    TARRY_DATABASE_URL=... tarry worker bench/_load_flow.py

Each run loops on one ``wait_for_any`` (its own signal key, an event matched on
``data.target``, a ``poke`` message, a ``stop`` message) and records what woke it
in a ``seen`` step, whose output (kind, delivery id, worker pid) the driver reads
back from the store: step outputs are stored exactly once per run. A ``stop``
message ends the run with the number of wakes it recorded.
"""

from __future__ import annotations

import os
from typing import Any

import tarry

WORKFLOW = "load"
EVENT = "load/poke"
KINDS = ("signal", "event", "message")
"""What index 0, 1 and 2 of the wait stand for; index 3 is ``stop``."""


def signal_key(run_id: str) -> str:
    return f"sig:{run_id}"


async def record(kind: str, uid: str) -> dict[str, Any]:
    """The ledger row of one wake, stored as the ``seen`` step's output."""
    return {"kind": kind, "id": uid, "by": os.getpid()}


def register(app: tarry.App) -> tarry.App:
    @app.workflow(WORKFLOW)
    async def load(ctx: tarry.Context, step: tarry.Step) -> dict[str, int]:
        conditions = [
            tarry.signal(signal_key(ctx.run_id)),
            tarry.event(EVENT, match="data.target"),
            tarry.message("poke"),
            tarry.message("stop"),
        ]
        wakes = 0
        while True:
            woken = await step.wait_for_any("w", conditions, timeout=None)
            assert woken is not None  # no timeout
            if woken.index == 3:
                return {"wakes": wakes}
            value = woken.value  # signal data, or an Event / Message
            data = value if woken.index == 0 else value.data
            await step.run("seen", record, KINDS[woken.index], data["id"])
            wakes += 1

    return app


app = register(tarry.App())  # $TARRY_DATABASE_URL
