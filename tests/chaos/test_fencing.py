"""Fencing, with the moment of the stale write under control, on both stores.

A worker is SIGSTOPped inside step ``b`` of a ``fence`` run, past its lease; a
second worker takes the run over and finishes it. The first worker's step ``b``
waits for a gate file of its own; the gate is opened while it is stopped, so the
first thing it does on SIGCONT is return from ``b`` and ask the store to save
``b``'s result with its old lease. The worker's ledger logs every fenced write
and its outcome (``worker.py``), so this proves the stale write was attempted
and rejected, not merely that the end state looks right.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

import tarry
from chaos.driver import pg_conninfo, read_ledger

from helpers import stop_processes

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("worker.py")


class Procs:
    def __init__(self, url: str, ledger_dir: Path) -> None:
        self.url = url
        self.ledger_dir = ledger_dir
        self.procs: list[tuple[subprocess.Popen[bytes], IO[bytes], Path]] = []

    def spawn(self, lease: str) -> subprocess.Popen[bytes]:
        log = self.ledger_dir.parent / f"worker-{len(self.procs)}.log"
        out = log.open("wb")
        cmd = [sys.executable, str(WORKER), "--db", self.url, "--ledger-dir"]
        proc = subprocess.Popen(
            [*cmd, str(self.ledger_dir), "--lease", lease, "--step-ms", "0"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        self.procs.append((proc, out, log))
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}:\n{log.read_text()}" for _, _, log in self.procs)

    def lines(self, pid: int) -> list[list[str]]:
        path = self.ledger_dir / f"ledger-{pid}.log"
        if not path.exists():
            return []
        return [line.split() for line in path.read_text().splitlines()]

    def close(self) -> None:
        stop_processes(self.procs)


@pytest.fixture
def procs(database_url: str, tmp_path: Path) -> Iterator[Procs]:
    ledger_dir = tmp_path / "ledger"
    ledger_dir.mkdir()
    p = Procs(database_url, ledger_dir)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[tarry.App]:
    app = tarry.App(database_url)
    try:
        yield app
    finally:
        await app.close()


async def eventually(check: Any, procs: Procs, what: str, timeout: float = 30.0) -> Any:
    give_up = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        for proc, _, _ in procs.procs:
            if proc.poll() is not None:
                raise AssertionError(f"a worker exited while waiting for {what}\n{procs.logs()}")
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out waiting for {what}\n{procs.logs()}")
        await asyncio.sleep(0.02)


def store_is_quiet(url: str) -> bool:
    """No other process has a store transaction open: a process stopped inside one
    would hold locks the takeover needs."""
    if url.startswith("sqlite:"):
        conn = sqlite3.connect(url[len("sqlite:///") :], timeout=0.1)
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("ROLLBACK")
            return True
        except sqlite3.OperationalError:
            return False
        finally:
            conn.close()
    import psycopg

    conninfo, schema = pg_conninfo(url)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
            "WHERE c.relnamespace = to_regnamespace(%s) AND l.pid <> pg_backend_pid()",
            (schema,),
        ).fetchone()
        return row is not None and row[0] == 0


def is_stopped(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] in ("T", "t")


def pause(proc: subprocess.Popen[bytes], url: str) -> None:
    for _ in range(100):
        os.kill(proc.pid, signal.SIGSTOP)
        while not is_stopped(proc.pid):
            time.sleep(0.001)
        if store_is_quiet(url):
            return
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError("the worker never paused outside a store transaction")


async def test_a_stopped_worker_s_late_step_result_is_rejected_by_the_store(
    procs: Procs, client: tarry.App, database_url: str
) -> None:
    run_id = await client.start("fence", {})
    first = procs.spawn("1s")
    await eventually(
        lambda: any(f[:3] == ["S", run_id, "b"] for f in procs.lines(first.pid)),
        procs,
        "the first worker to enter step b",
    )
    pause(first, database_url)
    paused_ns = time.time_ns()

    second = procs.spawn("1s")
    (procs.ledger_dir / f"gate-{second.pid}").touch()
    output = await client.result(run_id, timeout=60)
    done = await client.get_run(run_id)
    assert done.status == "completed"
    assert output["finished_by"] == second.pid

    # Open the first worker's gate while it is stopped, then let it run: it returns
    # from b and tries to store b's result under the lease it lost.
    (procs.ledger_dir / f"gate-{first.pid}").touch()
    os.kill(first.pid, signal.SIGCONT)
    late = await eventually(
        lambda: [f for f in procs.lines(first.pid) if f[:4] == ["W", run_id, "save_step", "b"]],
        procs,
        "the first worker's attempt to save step b",
    )
    await asyncio.sleep(1.5)  # time for anything else it might still try

    assert first.poll() is None, procs.logs()
    assert await client.get_run(run_id) == done  # not one byte changed

    first_lines = procs.lines(first.pid)
    # Its step b did finish, and its write of the result was made and refused.
    assert [f[0] for f in first_lines if f[1:3] == [run_id, "b"]] == ["S", "E"]
    assert [f[6] for f in late] == ["LeaseLost"]
    # Nothing it wrote after being stopped was accepted; it never got past b.
    after_pause = [f for f in first_lines if f[0] == "W" and int(f[7]) > paused_ns]
    assert after_pause and all(f[6] == "LeaseLost" for f in after_pause), after_pause
    assert not any(f[0] == "S" and f[2] == "c" for f in first_lines)
    # The first worker took the run once and never replayed it again.
    assert [f for f in first_lines if f[0] == "R"] == [f for f in first_lines[:1]]

    # The stored b is the second worker's execution, attempt 1.
    ledger = read_ledger(procs.ledger_dir)
    steps = {s.id: s for s in done.steps}
    b = steps["b"]
    assert (b.status, b.attempts) == ("completed", 1)
    assert b.output["by"] == second.pid
    winner = ledger.steps[(run_id, "b")][b.output["nonce"]]
    assert winner.pid == second.pid and winner.end is not None
    assert {e.pid for e in ledger.steps[(run_id, "b")].values()} == {first.pid, second.pid}
    assert steps["a"].output["by"] == first.pid  # stored before the pause: kept
    assert steps["c"].output["by"] == second.pid
    # Every write of the second worker landed.
    assert all(f[6] == "ok" for f in procs.lines(second.pid) if f[0] == "W")
