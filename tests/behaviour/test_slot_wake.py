"""A slot that a concurrency key held, freed in one process, is taken at once in
another: the end of a keyed run wakes the other processes' workers (on PostgreSQL a
NOTIFY; SQLite notices every commit), rather than leaving them asleep until a lease
runs out. Two Apps on one store stand for two processes: each has its own
connections and its own wake-ups."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import tarry

KEYED = tarry.limit(1, key="event.data.k")


def gates() -> dict[str, threading.Event]:
    return {name: threading.Event() for name in ("first", "filler")}


async def until(check: Any, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s: {what}")
        await asyncio.sleep(0.02)


async def test_a_freed_key_is_taken_by_a_worker_of_another_process(database_url: str) -> None:
    held = gates()
    ran: dict[str, str] = {}  # run name -> the App that executed it

    def app_named(who: str, *, filler: bool) -> tarry.App:
        app = tarry.App(database_url, lease="30s", retry_base="10ms", retry_cap="50ms")

        def work(name: str) -> str:
            ran[name] = who
            gate = held.get(name)
            if gate is not None:
                gate.wait(30)
            return name

        @app.workflow("keyed", concurrency=KEYED)
        async def keyed(ctx: tarry.Context, step: tarry.Step) -> str:
            return str(await step.run("work", work, ctx.payload["name"]))

        if filler:  # only A serves it, and before a keyed run (priority)

            @app.workflow("filler", priority=10)
            async def fill(ctx: tarry.Context, step: tarry.Step) -> str:
                return str(await step.run("work", work, "filler"))

        return app

    a, b = app_named("A", filler=True), app_named("B", filler=False)
    try:
        async with a.worker(concurrency=1):
            first = await a.start("keyed", {"k": "x", "name": "first"})
            await until(lambda: ran.get("first") == "A", 10, "the first keyed run in A")
            async with b.worker(concurrency=4):
                second = await a.start("keyed", {"k": "x", "name": "second"})
                await a.start("filler")  # takes A's one slot when the first run ends
                await asyncio.sleep(0.5)  # B has looked: the key is busy, and it sleeps
                assert "second" not in ran
                held["first"].set()
                await until(lambda: "second" in ran, 5, "the second keyed run to start")
                # A's one slot went to the filler (claimed there as the first run ended,
                # which may be a moment after B took the key).
                await until(lambda: "filler" in ran, 5, "the filler to start")
                assert ran["second"] == "B" and ran["filler"] == "A"
                assert await b.result(second, timeout=10) == "second"
                assert await a.result(first, timeout=10) == "first"
                held["filler"].set()
    finally:
        for gate in held.values():
            gate.set()
        await a.close()
        await b.close()
