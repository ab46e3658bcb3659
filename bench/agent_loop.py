"""An agent loop: a run that waits for a message and runs one step per turn.

Each turn is a resume of a run whose history grows by two steps (the message
wait and the reply). The figure is the time from ``send_message`` to the turn's
reply step starting, at turns 10, 100, 500 and 1,000 (median of the 5 turns
around each), and its sum over all turns (``wall_s`` also counts the driver
waiting for each park, which reads the whole run). Flat resumes keep turn 1,000 close
to turn 10; a replay of the whole history from the store makes it grow with
the turn. SQLite file by default; ``--postgres URL`` for PostgreSQL (a fresh
schema is made and dropped).

    .venv/bin/python bench/agent_loop.py [--turns 1000] [--postgres URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import tarry
from _common import AGENT_LOOP_MARKS, agent_loop_figures, machine_info, temp_sqlite_url, write_json


async def parked(app: tarry.App, run_id: str) -> None:
    while (await app.list_runs(status="waiting", limit=1)).items == []:
        await asyncio.sleep(0.0005)


async def measure(url: str, turns: int) -> dict[str, float]:
    app = tarry.App(url)
    replied: dict[int, float] = {}
    turn_seen = asyncio.Event()

    async def reply(i: int) -> int:
        replied[i] = time.perf_counter()
        turn_seen.set()
        return i

    @app.workflow("agent")
    async def agent(ctx: tarry.Context, step: tarry.Step) -> int:
        total = 0
        for _ in range(turns):
            message = await step.wait_for_message("next", timeout="1d")
            assert message is not None
            total += await step.run("reply", reply, message.data["i"])
        return total

    sent: dict[int, float] = {}
    async with app.worker(concurrency=4):
        run_id = await app.start("agent")
        began = time.perf_counter()
        for i in range(turns):
            turn_seen.clear()
            await parked(app, run_id)  # a resume, not a message taken on the way in
            sent[i] = time.perf_counter()
            await app.send_message(run_id, "next", {"i": i})
            while i not in replied:
                await asyncio.wait_for(turn_seen.wait(), 30)
                turn_seen.clear()
        total = time.perf_counter() - began
        await app.result(run_id, timeout=30)
    await app.close()
    return agent_loop_figures(sent, replied, turns, total)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--postgres", default=None, help="a PostgreSQL URL (fresh schema)")
    args = parser.parse_args()
    if args.postgres:
        import psycopg

        schema = f"t_bench_{uuid.uuid4().hex[:8]}"
        sep = "&" if "?" in args.postgres else "?"
        try:
            figures = await measure(f"{args.postgres}{sep}schema={schema}", args.turns)
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        store = "postgres"
    else:
        with temp_sqlite_url() as (url, _path):
            figures = await measure(url, args.turns)
        store = "sqlite"
    print(f"agent loop on {store}, {args.turns} turns")
    for name, value in figures.items():
        print(f"  {name:14} {value:10.2f}")
    marks = [f"turn_{m}_ms" for m in AGENT_LOOP_MARKS if f"turn_{m}_ms" in figures]
    if len(marks) >= 2:
        ratio = figures[marks[-1]] / figures[marks[0]]
        print(f"  {marks[-1]} / {marks[0]} = {ratio:.2f} (target <= 1.5)")
    write_json(f"agent_loop_{store}", {"machine": machine_info(), "figures": figures})


if __name__ == "__main__":
    asyncio.run(main())
