"""What a scrape of /metrics costs the store: ``Store.run_counts`` beside parked and ended runs.

Fills a fresh store through its own operations (runs created, claimed, then parked on
a signal or ended), then times ``run_counts`` (median of 7): the queued and running
counts, which must not read the ended runs, and the parked runs by wait kind.

    .venv/bin/python bench/metrics_reads.py [--parked 50000] [--ended 200000] [--database URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid

import orjson

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import temp_sqlite_url
from tarry.store import open_store
from tarry.store.base import NewRun, SignalWait, Store, WaitSpec

BATCH = 500


async def fill(store: Store, workflow: str, n: int, park: bool) -> None:
    for lo in range(0, n, BATCH):
        ids = [uuid.uuid4().hex for _ in range(min(BATCH, n - lo))]
        await asyncio.gather(*(store.create_run(NewRun(i, workflow, b"{}")) for i in ids))
        batch = await store.claim([workflow], BATCH, 3600)
        if park:
            await asyncio.gather(*(store.park(c.lease, _wait(c.run.id)) for c in batch.runs))
        else:
            await asyncio.gather(
                *(store.finish(c.lease, "completed", b"1", None) for c in batch.runs)
            )


def _wait(run_id: str) -> WaitSpec:
    key = f"k-{run_id}"
    shown = {"kind": "signal", "step": "wait", "key": key, "expires_at": None}
    return WaitSpec("wait", "signal", None, orjson.dumps(shown), (SignalWait(key),))


async def measure(url: str, parked: int, ended: int) -> None:
    store = open_store(url)
    await store.open()
    try:
        started = time.perf_counter()
        await fill(store, "parked", parked, park=True)
        await fill(store, "ended", ended, park=False)
        print(f"filled in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        took = []
        for _ in range(7):
            t0 = time.perf_counter()
            counts = await store.run_counts()
            took.append(time.perf_counter() - t0)
        groups = [(g.workflow, g.kind, g.count) for g in counts.parked]
        median = statistics.median(took) * 1000
        print(f"{url.split(':')[0]}: {parked:,} parked, {ended:,} ended: run_counts "
              f"{median:.1f} ms (median of 7); parked {groups}")  # fmt: skip
    finally:
        await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--parked", type=int, default=50_000)
    parser.add_argument("--ended", type=int, default=200_000)
    parser.add_argument("--database", default=None, help="default: a fresh SQLite file")
    args = parser.parse_args()
    if args.database:
        asyncio.run(measure(args.database, args.parked, args.ended))
        return
    with temp_sqlite_url() as (url, _):
        asyncio.run(measure(url, args.parked, args.ended))


if __name__ == "__main__":
    main()
