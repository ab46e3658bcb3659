"""Four worker processes share one PostgreSQL database: every run completes once,
every step's side effect happens once."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import tarry

from .conftest import ledger, worker_logs
from .helpers_pg import gather_in_chunks, wait_for_counts

RUNS = 2000


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_four_workers_complete_2000_runs_exactly_once(
    pg_url: str, spawn_workers: Any, tmp_path: Path
) -> None:
    client = tarry.App(pg_url)
    try:
        ids = [f"order-{n:05d}" for n in range(RUNS)]
        early, late = ids[::2], ids[1::2]
        # Half the signals are sent before their runs exist: buffered, then consumed
        # by the wait. The other half find their run parked: delivered.
        sent = await gather_in_chunks(
            client.send_signal(f"go:{run_id}", {"run": run_id}) for run_id in early
        )
        assert {result.status for result in sent} == {"buffered"}

        spawn_workers(pg_url, 4)
        started = time.monotonic()
        await gather_in_chunks(
            client.start("order", {"timeout": "1h"}, run_id=run_id) for run_id in ids
        )
        try:
            await wait_for_counts(pg_url, "waiting", len(late), timeout=180)
        except AssertionError:
            raise AssertionError(worker_logs(tmp_path)) from None
        sent = await gather_in_chunks(
            client.send_signal(f"go:{run_id}", {"run": run_id}) for run_id in late
        )
        assert {(r.status, r.run_id) for r in sent} == {("delivered", i) for i in late}
        try:
            await wait_for_counts(pg_url, "completed", RUNS, timeout=180)
        except AssertionError:
            raise AssertionError(worker_logs(tmp_path)) from None
        elapsed = time.monotonic() - started

        runs = await gather_in_chunks(client.get_run(run_id) for run_id in ids)
        pids = Counter()
        for run in runs:
            assert run.status == "completed", run
            assert run.output["data"] == {"run": run.id}
            assert [(s.id, s.status) for s in run.steps] == [
                ("effect", "completed"),
                ("approve", "completed"),
                ("after", "completed"),
            ]
            pids[run.output["pid"]] += 1
        assert len(pids) >= 2, f"one process did all the work: {pids}"

        effects = Counter(ledger(tmp_path))
        expected = {(tag, run_id) for run_id in ids for tag in ("effect", "after")}
        assert set(effects) == expected
        repeated = {entry: n for entry, n in effects.items() if n != 1}
        assert not repeated, f"side effects repeated: {repeated}"
        print(f"{RUNS} runs on 4 processes in {elapsed:.1f}s; runs per process: {dict(pids)}")
    finally:
        await client.close()
