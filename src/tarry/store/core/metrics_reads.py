"""The counts ``/metrics`` reads from the store at each scrape.

Both are answered by indexes that hold no ended run (see queries.sql): a store
with millions of ended runs costs a scrape no more than one with none. Runs that
ended are counted where they end, in the process's own counters.
"""

from __future__ import annotations

from ..metrics_records import ParkedGroup, RunCounts
from .port import Tx


async def run_counts(tx: Tx) -> RunCounts:
    open_runs: dict[tuple[str, str], int] = {}
    for workflow, queued, running in await tx.all("metrics_open_runs", {}):
        open_runs[(str(workflow), "queued")] = int(queued)
        open_runs[(str(workflow), "running")] = int(running)
    parked = [
        ParkedGroup(str(workflow), "unknown" if kind is None else str(kind), int(n), float(at))
        for kind, workflow, n, at in await tx.all("metrics_parked_runs", {})
    ]
    return RunCounts(open_runs, parked, tx.now)
