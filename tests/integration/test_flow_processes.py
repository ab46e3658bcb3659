"""Keyed concurrency across worker processes on PostgreSQL: two processes claiming the
same workflow never execute two runs of one key at once (``flow_worker.py``), as the
ledger of their step executions (real wall-clock times, one machine) shows."""

from __future__ import annotations

import asyncio
import collections
import itertools
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import tarry

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("flow_worker.py")


async def test_two_processes_keep_one_run_per_key(database_url: str, tmp_path: Path) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("processes on one SQLite file are serialised anyway; this is PostgreSQL's")
    ledger = tmp_path / "ledger.log"
    # The client registers the workflow as the workers do: the keys of a run are filed
    # when it is created, by the rules the store holds then.
    client = tarry.App(database_url)
    limit = tarry.limit(1, key="event.data.customer")
    client.workflow("keyed", concurrency=limit)(lambda ctx, step: None)
    await client._open()  # the rules stored before any worker runs
    procs = []
    outs = []
    try:
        for n in range(2):
            outs.append((tmp_path / f"worker-{n}.log").open("wb"))
            cmd = [sys.executable, str(WORKER), "--db", database_url, "--ledger", str(ledger)]
            procs.append(subprocess.Popen(cmd, stdout=outs[-1], stderr=subprocess.STDOUT))
        give_up = time.monotonic() + 60
        while len(list(tmp_path.glob("ledger.log.ready-*"))) < 2 and time.monotonic() < give_up:
            await asyncio.sleep(0.05)
        ids = [await client.start("keyed", {"customer": f"c{i % 5}"}) for i in range(50)]
        await client.close()
        app = tarry.App(database_url)
        give_up = time.monotonic() + 120
        while time.monotonic() < give_up:
            runs = (await app.list_runs(workflow="keyed", limit=100)).items
            if sum(run.status == "completed" for run in runs) == len(ids):
                break
            await asyncio.sleep(0.2)
        await app.close()
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            proc.wait(timeout=30)
        for out in outs:
            out.close()
    logs = "\n".join(p.read_text() for p in sorted(tmp_path.glob("worker-*.log")))
    lines = [line.split() for line in ledger.read_text().splitlines()]
    starts = {run_id: (customer, float(t), pid) for what, customer, run_id, t, pid in lines
              if what == "start"}  # fmt: skip
    ends = {run_id: float(t) for what, _, run_id, t, _ in lines if what == "end"}
    assert set(starts) == set(ids) == set(ends), logs
    spans: dict[str, list[tuple[float, float]]] = collections.defaultdict(list)
    for run_id, (customer, began, _) in starts.items():
        spans[customer].append((began, ends[run_id]))
    for customer, each in spans.items():
        each.sort()
        for earlier, later in itertools.pairwise(each):
            assert later[0] >= earlier[1], f"two runs of {customer} executed at once"
    assert len({pid for _, _, pid in starts.values()}) == 2, "both processes claimed runs"
