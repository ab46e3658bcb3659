"""DBOS side of agent_loop.py: a workflow that waits for a message and runs one step
per turn, N turns; the time from ``DBOS.send_async`` to the turn's step starting.

One process, a PostgreSQL system database (``--database URL``; a fresh database is
made and dropped): DBOS wakes a waiting ``recv`` through LISTEN/NOTIFY there. On a
SQLite system database DBOS polls every waiting ``recv`` once a second, so a turn
would measure the poll (see dbos_signal.py). As in agent_loop.py, the driver sends
each message only once the workflow waits for it (the step of the last turn has run,
then the workflow has reached the line before ``recv_async``, plus 10 ms for recv to
register its wait), so every turn is a wake of a waiting workflow. DBOS keeps the
workflow in memory between turns: nothing is replayed, which is what tarry's sticky
execution is measured against.

    /tmp/dbosvenv/bin/python bench/dbos_agent_loop.py --database URL [--turns 1000] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from dbos import DBOS, SetWorkflowID

from _common import agent_loop_figures
from _dbos_common import config, finish, system_database

TOPIC = "next"


async def measure(url: str, turns: int) -> dict[str, float]:
    DBOS(config=config(url))
    loop = asyncio.get_running_loop()
    replied: dict[int, float] = {}
    waiting: asyncio.Queue[int] = asyncio.Queue()
    turn_done: asyncio.Queue[int] = asyncio.Queue()

    def tell(queue: asyncio.Queue[int], value: int) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, value)

    @DBOS.step(name="reply")
    async def reply(i: int) -> int:
        replied[i] = time.perf_counter()
        tell(turn_done, i)
        return i

    @DBOS.workflow(name="agent")
    async def agent(n: int) -> int:
        total = 0
        for turn in range(n):
            tell(waiting, turn)
            message = await DBOS.recv_async(TOPIC, timeout_seconds=86400)
            assert message is not None
            total += await reply(message["i"])
        return total

    DBOS.launch()
    sent: dict[int, float] = {}
    try:
        with SetWorkflowID("agent-1"):
            handle = await DBOS.start_workflow_async(agent, turns)
        began = time.perf_counter()
        for i in range(turns):
            assert await asyncio.wait_for(waiting.get(), 30) == i
            await asyncio.sleep(0.01)  # let recv_async register its wait
            sent[i] = time.perf_counter()
            await DBOS.send_async("agent-1", {"i": i}, TOPIC)
            assert await asyncio.wait_for(turn_done.get(), 30) == i
        total = time.perf_counter() - began
        await handle.get_result()
    finally:
        DBOS.destroy(destroy_registry=True)
    return agent_loop_figures(sent, replied, turns, total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--database", required=True, help="PostgreSQL server URL")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with system_database(args.database) as url:
        figures: dict[str, Any] = asyncio.run(measure(url, args.turns))
    if not args.json:
        print(f"DBOS agent loop on postgres, {args.turns} turns")
        for name, value in figures.items():
            print(f"  {name:14} {value:10.2f}")
    finish("dbos_agent_loop_postgres", args.json, {"params": vars(args), "figures": figures})


if __name__ == "__main__":
    main()
