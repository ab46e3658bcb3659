"""Crash safety with real worker processes (``worker_proc.py``) on both stores.

A ledger file, one line per execution of a step function, proves which steps
ran how many times and in which process.
"""

from __future__ import annotations

import asyncio
import collections
import inspect
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest

import tarry

from helpers import stop_processes

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("worker_proc.py")


class Workers:
    """Starts worker processes and always reaps them."""

    def __init__(self, database_url: str, tmp_path: Path) -> None:
        self.database_url = database_url
        self.tmp_path = tmp_path
        self.ledger = tmp_path / "ledger.txt"
        self.ledger.touch()
        self.procs: list[tuple[subprocess.Popen[bytes], IO[bytes], Path]] = []

    def spawn(self, *args: str) -> subprocess.Popen[bytes]:
        log = self.tmp_path / f"worker-{len(self.procs)}.log"
        out = log.open("wb")
        cmd = [sys.executable, str(WORKER), "--db", self.database_url, "--ledger"]
        proc = subprocess.Popen(
            [*cmd, str(self.ledger), *args], stdout=out, stderr=subprocess.STDOUT
        )
        self.procs.append((proc, out, log))
        return proc

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}:\n{log.read_text()}" for _, _, log in self.procs)

    def lines(self) -> list[tuple[str, str, int]]:
        """(what, run id, pid) per execution of a step function."""
        found = []
        for line in self.ledger.read_text().splitlines():
            what, run_id, pid = line.split()
            found.append((what, run_id, int(pid)))
        return found

    def close(self) -> None:
        stop_processes(self.procs)


@pytest.fixture
def workers(database_url: str, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(database_url, tmp_path)
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
async def client(database_url: str) -> AsyncIterator[tarry.App]:
    app = tarry.App(database_url)
    try:
        yield app
    finally:
        await app.close()


async def eventually(
    check: Callable[[], Awaitable[Any] | Any], workers: Workers, what: str, timeout: float = 30.0
) -> Any:
    """Poll ``check`` until it returns something truthy."""
    give_up = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        for proc, _, _ in workers.procs:
            if proc.poll() not in (None, -signal.SIGKILL):
                raise AssertionError(f"a worker exited while waiting for {what}\n{workers.logs()}")
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out waiting for {what}\n{workers.logs()}")
        await asyncio.sleep(0.02)


def _pg_conninfo(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    schema = query.pop("schema")[0]
    return urlunsplit(parts._replace(query=urlencode(query, doseq=True))), schema


def store_is_quiet(url: str) -> bool:
    """No transaction of another process is open on the store right now: a process
    stopped inside one would hold locks the takeover needs."""
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

    conninfo, schema = _pg_conninfo(url)
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
    """SIGSTOP the process at a moment it holds no store transaction open."""
    for _ in range(100):
        os.kill(proc.pid, signal.SIGSTOP)
        while not is_stopped(proc.pid):
            time.sleep(0.001)
        if store_is_quiet(url):
            return
        os.kill(proc.pid, signal.SIGCONT)
        time.sleep(0.01)
    raise AssertionError("the worker never paused outside a store transaction")


def read_stats(path: Path) -> dict[str, int] | None:
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, json.JSONDecodeError):
        return None


async def steady_stats(path: Path, workers: Workers) -> dict[str, int]:
    """The worker's stats once it is idle, no run is asleep in it, and they stay the
    same for several samples."""
    seen: list[dict[str, int]] = []

    def settled() -> dict[str, int] | None:
        stats = read_stats(path)
        if stats is None or stats["active"] != 0 or stats.get("asleep", 0) != 0:
            seen.clear()
            return None
        if not seen or stats["sample"] != seen[-1]["sample"]:
            seen.append(stats)
        recent = seen[-5:]
        same = {(s["tasks"], s["threads"]) for s in recent}
        return recent[-1] if len(recent) == 5 and len(same) == 1 else None

    result: dict[str, int] = await eventually(settled, workers, "steady worker stats")
    return result


# -- (1) a worker killed mid-step ------------------------------------------------------------


async def test_a_killed_worker_s_run_is_finished_by_another_process(
    workers: Workers, client: tarry.App
) -> None:
    run_ids = [await client.start("crash", {}) for _ in range(3)]
    first = workers.spawn("--hang", "60", "--lease", "1s")
    await eventually(
        lambda: {r for what, r, _ in workers.lines() if what == "b-start"} == set(run_ids),
        workers,
        "every run to be inside step b",
    )
    os.kill(first.pid, signal.SIGKILL)
    first.wait()

    second = workers.spawn("--hang", "0", "--lease", "1s")
    for run_id in run_ids:
        output = await client.result(run_id, timeout=60)
        assert output == {
            "a": f"a-by-{first.pid}",
            "b": f"b-by-{second.pid}",
            "c": f"c-by-{second.pid}",
            "finished_by": str(second.pid),
        }

    executions = collections.Counter(workers.lines())
    for run_id in run_ids:
        assert {(what, pid): n for (what, r, pid), n in executions.items() if r == run_id} == {
            ("a", first.pid): 1,  # completed before the crash: never again
            ("b-start", first.pid): 1,  # in flight at the crash: runs again
            ("b-start", second.pid): 1,
            ("b-end", second.pid): 1,
            ("c", second.pid): 1,
        }
        run = await client.get_run(run_id)
        assert run.status == "completed"
        assert [(s.id, s.status, s.attempts) for s in run.steps] == [
            ("a", "completed", 1),
            ("b", "completed", 1),
            ("c", "completed", 1),
        ]


# -- (2) a paused worker is fenced ------------------------------------------------------------


async def test_a_paused_worker_cannot_write_after_its_lease_was_taken_over(
    workers: Workers, client: tarry.App, database_url: str, tmp_path: Path
) -> None:
    run_id = await client.start("crash", {})
    stats = tmp_path / "first.stats"
    first = workers.spawn("--hang", "0.5", "--lease", "1s", "--stats", str(stats))
    await eventually(
        lambda: ("b-start", run_id, first.pid) in workers.lines(), workers, "step b to start"
    )
    pause(first, database_url)
    paused_at = time.monotonic()

    second = workers.spawn("--hang", "0", "--lease", "1s")
    output = await client.result(run_id, timeout=60)
    assert output == {
        "a": f"a-by-{first.pid}",
        "b": f"b-by-{second.pid}",
        "c": f"c-by-{second.pid}",
        "finished_by": str(second.pid),
    }
    done = await client.get_run(run_id)
    assert done.status == "completed"
    # The first worker's step b has long finished sleeping: it returns as soon as the
    # process runs again, and tries to store its result with its old lease.
    await asyncio.sleep(max(0.0, paused_at + 0.6 - time.monotonic()))

    os.kill(first.pid, signal.SIGCONT)
    await eventually(
        lambda: ("b-end", run_id, first.pid) in workers.lines(),
        workers,
        "the paused worker's step b to finish",
    )
    await steady_stats(stats, workers)  # its attempt has ended
    await asyncio.sleep(0.5)

    assert await client.get_run(run_id) == done
    steps = {s.id: s for s in done.steps}
    assert steps["b"].output == f"b-by-{second.pid}"
    assert (steps["b"].status, steps["b"].attempts) == ("completed", 1)
    assert collections.Counter(workers.lines()) == {
        ("a", run_id, first.pid): 1,
        ("b-start", run_id, first.pid): 1,
        ("b-end", run_id, first.pid): 1,  # its late result was produced, and rejected
        ("b-start", run_id, second.pid): 1,
        ("b-end", run_id, second.pid): 1,
        ("c", run_id, second.pid): 1,  # the fenced worker never got past b
    }
    assert first.poll() is None, workers.logs()


# -- (3) parked runs hold nothing ---------------------------------------------------------------


async def test_300_parked_runs_hold_no_tasks_or_threads(
    workers: Workers, client: tarry.App, tmp_path: Path
) -> None:
    stats = tmp_path / "worker.stats"
    # A parked run's handler may stay asleep in its worker for a window (here 1 s) to
    # resume without a replay; once that has passed, it holds nothing.
    workers.spawn("--lease", "2s", "--stats", str(stats), "--sticky-for", "1s")

    # Warm up with one run end to end, so fixed, lazily made resources exist.
    warm = await client.start("parked", {"i": -1})
    await eventually(lambda: _status(client, warm, "waiting"), workers, "the warm-up run to park")
    assert (await client.send_signal("park:-1", {"ok": -1})).status == "delivered"
    assert await client.result(warm, timeout=30) == {"i": -1, "got": {"ok": -1}}
    baseline = await steady_stats(stats, workers)

    run_ids = await asyncio.gather(*(client.start("parked", {"i": i}) for i in range(300)))

    async def all_waiting() -> bool:
        page = await client.list_runs(status="waiting", workflow="parked", limit=1000)
        return len(page.items) == 300

    await eventually(all_waiting, workers, "300 runs to park", timeout=90)
    parked = await steady_stats(stats, workers)
    assert (parked["tasks"], parked["threads"]) == (baseline["tasks"], baseline["threads"])

    results = await asyncio.gather(
        *(client.send_signal(f"park:{i}", {"ok": i}) for i in range(300))
    )
    assert [(r.status, r.run_id) for r in results] == [("delivered", rid) for rid in run_ids]
    outputs = await asyncio.gather(*(client.result(rid, timeout=90) for rid in run_ids))
    assert outputs == [{"i": i, "got": {"ok": i}} for i in range(300)]
    after = await steady_stats(stats, workers)
    assert (after["tasks"], after["threads"]) == (baseline["tasks"], baseline["threads"])


async def _status(client: tarry.App, run_id: str, status: str) -> bool:
    return (await client.get_run(run_id)).status == status
