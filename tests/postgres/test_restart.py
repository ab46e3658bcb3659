"""PostgreSQL restarts under load: workers and clients retry, every run completes."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

import tarry

from .conftest import ledger, worker_logs
from .helpers_pg import gather_in_chunks, wait_for_counts

RUNS = 400


def _restart_command() -> list[str] | None:
    if shutil.which("pg_ctlcluster") is None or not os.path.isdir("/etc/postgresql"):
        return None
    if os.environ.get("TARRY_TEST_POSTGRES") or os.geteuid() != 0:
        return None  # not our local cluster, or no right to restart it
    version = sorted(os.listdir("/etc/postgresql"))[0]
    return ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"]


async def _send_until_sent(client: tarry.App, key: str, data: Any) -> None:
    # A client's send_signal is not retried when the connection drops during its
    # COMMIT (it might buffer twice). Here a duplicate only leaves a spare buffered
    # signal, so sending again is fine.
    for _ in range(5):
        try:
            await client.send_signal(key, data)
            return
        except tarry.StoreError:
            await asyncio.sleep(0.5)
    raise AssertionError(f"could not send {key}")


@pytest.mark.slow
@pytest.mark.timeout(400)
async def test_runs_in_flight_complete_across_a_server_restart(
    pg_url: str, spawn_workers: Any, tmp_path: Path
) -> None:
    command = _restart_command()
    if command is None:
        pytest.skip("needs root and the local pg_ctlcluster to restart PostgreSQL")
    client = tarry.App(pg_url)
    workers = spawn_workers(pg_url, 2)
    try:
        ids = [f"restart-{n:04d}" for n in range(RUNS)]
        await gather_in_chunks(client.start("order", {"timeout": "1h"}, run_id=i) for i in ids)
        await wait_for_counts(pg_url, "waiting", RUNS // 4, timeout=60)

        async def send_all() -> None:
            # Spread over the restart: some before, some while down, some after.
            for n, run_id in enumerate(ids):
                await _send_until_sent(client, f"go:{run_id}", {"run": run_id})
                if n % 20 == 0:
                    await asyncio.sleep(0.05)

        sender = asyncio.create_task(send_all())
        await asyncio.sleep(0.3)
        down = time.monotonic()
        await asyncio.to_thread(subprocess.run, command, check=True, timeout=120)
        restarted_in = time.monotonic() - down
        await sender
        try:
            await wait_for_counts(pg_url, "completed", RUNS, timeout=180)
        except AssertionError:
            raise AssertionError(worker_logs(tmp_path)) from None
        logs = worker_logs(tmp_path)
        assert all(proc.poll() is None for proc in workers), logs
        assert "lost the LISTEN connection" in logs, "the restart did not reach the workers"

        runs = await gather_in_chunks(client.get_run(run_id) for run_id in ids)
        for run in runs:
            assert run.status == "completed", run
            assert run.output["data"] == {"run": run.id}
        effects = Counter(ledger(tmp_path))
        assert set(effects) == {(tag, i) for i in ids for tag in ("effect", "after")}
        repeated = {entry: n for entry, n in effects.items() if n > 1}
        # A step in flight is at-least-once; a restart must not make it common.
        assert len(repeated) <= RUNS // 20, repeated
        print(f"restart took {restarted_in:.1f}s; steps repeated: {len(repeated)}")
        print(logs)
    finally:
        await client.close()
