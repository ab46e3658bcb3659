"""Concurrency inside a run with real worker processes (``parallel_worker.py``) that are
SIGKILLed or SIGSTOPped, on both stores.

- ``wait_for_all``: one arrival, the worker killed, the second arrival before or after
  a new worker starts: both values, nothing lost; with the run parked at the first
  arrival (stored by the store as it came) or held by the worker (buffered, and the
  dead worker's lease left to expire).
- A parallel group (three ``step.run`` and a ``wait_for_signal`` side by side) killed
  while its slow step runs: the two fast steps ran once in all and their stored results
  are used, the slow one runs again (at least once while in flight).
- The same group with its worker SIGSTOPped while another takes over: the stopped
  worker's late writes are refused with LeaseLost and no completed step runs again.

Each process's ledger (see ``parallel_worker.py``) records every step execution and
every fenced store write with its outcome.
"""

from __future__ import annotations

import asyncio
import collections
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

import tarry
from chaos.driver import pg_conninfo

from helpers import stop_processes

pytestmark = pytest.mark.slow

WORKER = Path(__file__).with_name("parallel_worker.py")


class Procs:
    """Starts worker processes and always reaps them; reads their ledgers."""

    def __init__(self, url: str, tmp_path: Path) -> None:
        self.url = url
        self.dir = tmp_path / "ledger"
        self.dir.mkdir()
        self.tmp_path = tmp_path
        self.procs: list[tuple[subprocess.Popen[bytes], IO[bytes], Path]] = []

    def spawn(self, lease: str, *, gate: bool = True) -> subprocess.Popen[bytes]:
        """A worker; with ``gate`` its gated steps go straight through."""
        log = self.tmp_path / f"worker-{len(self.procs)}.log"
        out = log.open("wb")
        cmd = [sys.executable, str(WORKER), "--db", self.url, "--dir", str(self.dir)]
        proc = subprocess.Popen([*cmd, "--lease", lease], stdout=out, stderr=subprocess.STDOUT)
        self.procs.append((proc, out, log))
        if gate:
            self.open_gate(proc)
        return proc

    def open_gate(self, proc: subprocess.Popen[bytes]) -> None:
        (self.dir / f"gate-{proc.pid}").touch()

    def ready(self, proc: subprocess.Popen[bytes]) -> bool:
        return (self.dir / f"ready-{proc.pid}").exists()

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}:\n{log.read_text()}" for _, _, log in self.procs)

    def lines(self, pid: int | None = None) -> list[list[str]]:
        """Ledger records of one process, or of all (each record names its pid)."""
        paths = [self.dir / f"ledger-{pid}.log"] if pid else sorted(self.dir.glob("ledger-*"))
        found: list[list[str]] = []
        for path in paths:
            if path.exists():
                found.extend(line.split() for line in path.read_text().splitlines())
        return found

    def executions(self, run_id: str) -> collections.Counter[tuple[str, str, int]]:
        """(S or E, step, pid) -> how many times, for one run."""
        return collections.Counter(
            (f[0], f[2], int(f[3])) for f in self.lines() if f[0] in "SE" and f[1] == run_id
        )

    def close(self) -> None:
        stop_processes(self.procs)


@pytest.fixture
def procs(database_url: str, tmp_path: Path) -> Iterator[Procs]:
    p = Procs(database_url, tmp_path)
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


async def eventually(
    check: Callable[[], Any], procs: Procs, what: str, timeout: float = 15.0
) -> Any:
    """Poll ``check`` (a function or a coroutine function) until it returns something
    truthy; fail at once if a worker exits other than by our SIGKILL."""
    give_up = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        for proc, _, _ in procs.procs:
            if proc.poll() not in (None, -signal.SIGKILL):
                raise AssertionError(f"a worker exited while waiting for {what}\n{procs.logs()}")
        if time.monotonic() > give_up:
            raise AssertionError(f"timed out waiting for {what}\n{procs.logs()}")
        await asyncio.sleep(0.02)


def kill(proc: subprocess.Popen[bytes]) -> int:
    """SIGKILL the worker; the time it died, in ns."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return time.time_ns()


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
    with psycopg.connect(conninfo, autocommit=True) as pg:
        row = pg.execute(
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


def stored(run: tarry.Run) -> dict[str, tarry.StepRecord]:
    return {s.id: s for s in run.steps}


async def parked_on(client: tarry.App, run_id: str, step_id: str, arrived: list[int]) -> bool:
    """The run is parked with ``step_id`` waiting and ``arrived`` stored for it."""
    run = await client.get_run(run_id)
    if run.status != "waiting" or run.waiting_for is None:
        return False
    return run.waiting_for.step == step_id and run.waiting_for.arrived == arrived


# -- (1) wait_for_all across a killed worker -------------------------------------------------


@pytest.mark.parametrize("second_arrives", ["before_restart", "after_restart"])
@pytest.mark.parametrize("first_arrives", ["parked", "running"])
async def test_wait_for_all_loses_no_arrival_when_its_worker_is_killed(
    procs: Procs, client: tarry.App, first_arrives: str, second_arrives: str
) -> None:
    """``parked``: the run waits on ``wait_for_all`` alone, so the first signal is stored
    by the store as an arrival while no worker holds the run. ``running``: a gated step
    beside the wait keeps the run leased by the worker, so the first signal is buffered
    (the wait is not filed yet) and the worker dies holding the lease."""
    held = first_arrives == "running"
    run_id = await client.start("all", {"hold": held})
    first = procs.spawn("2s", gate=not held)
    if held:
        await eventually(
            lambda: ["S", run_id, "hold", str(first.pid)] in [f[:4] for f in procs.lines()],
            procs,
            "the first worker to enter step hold",
        )
    else:
        await eventually(lambda: parked_on(client, run_id, "both", []), procs, "the run to park")

    one = await client.send_signal(f"one:{run_id}", {"n": 1})
    assert (one.status, one.run_id) == (("buffered", None) if held else ("delivered", run_id))
    if not held:
        run = await client.get_run(run_id)
        assert run.status == "waiting" and run.waiting_for is not None
        assert run.waiting_for.arrived == [0]  # stored as it came
        assert stored(run)["both"].output == [{"index": 0, "value": {"n": 1}}]
    kill(first)

    if second_arrives == "before_restart":
        two = await client.send_signal(f"two:{run_id}", {"n": 2})
        assert two.status == ("buffered" if held else "delivered")
        second = procs.spawn("2s")
    else:
        second = procs.spawn("2s")
        await eventually(lambda: procs.ready(second), procs, "the second worker to start")
        # Held: the second worker takes the run over once the lease expires, and
        # parks it with the buffered first signal stored as an arrival.
        await eventually(
            lambda: parked_on(client, run_id, "both", [0]), procs, "the run to park again"
        )
        two = await client.send_signal(f"two:{run_id}", {"n": 2})
        assert (two.status, two.run_id) == ("delivered", run_id)

    output = await client.result(run_id, timeout=20)
    assert output["values"] == [{"n": 1}, {"n": 2}]
    assert output["finished_by"] == second.pid
    run = await client.get_run(run_id)
    assert run.status == "completed"
    steps = stored(run)
    assert steps["both"].status == "completed"
    assert sorted(steps["both"].output, key=lambda e: e["index"]) == [
        {"index": 0, "value": {"n": 1}},
        {"index": 1, "value": {"n": 2}},
    ]
    expected = {("S", "after", second.pid): 1, ("E", "after", second.pid): 1}
    if held:
        # In flight at the kill: run again by the second worker, whose result is stored.
        expected |= {
            ("S", "hold", first.pid): 1,
            ("S", "hold", second.pid): 1,
            ("E", "hold", second.pid): 1,
        }
        assert (steps["hold"].status, steps["hold"].attempts) == ("completed", 1)
        assert steps["hold"].output["by"] == second.pid
    assert procs.executions(run_id) == expected
    assert [s.id for s in run.steps if s.status != "completed"] == []


# -- (2) a parallel group killed in the middle ----------------------------------------------


@pytest.mark.parametrize("signal_at", ["before_kill", "after_takeover"])
async def test_a_parallel_group_killed_mid_way_keeps_its_stored_results(
    procs: Procs, client: tarry.App, signal_at: str
) -> None:
    run_id = await client.start("group", {})
    first = procs.spawn("2s", gate=False)

    def fast_steps_saved_and_c_running() -> bool:
        lines = [f[:6] for f in procs.lines(first.pid)]
        saved = {f[3] for f in lines if f[:3] == ["W", run_id, "save_step"] and f[5] == "ok"}
        c_started = any(f[:3] == ["S", run_id, "c"] for f in lines)
        return {"a", "b"} <= saved and c_started

    await eventually(fast_steps_saved_and_c_running, procs, "a and b stored, c running")
    run = await client.get_run(run_id)
    assert run.status == "running"
    assert {s.id: s.status for s in run.steps} == {"a": "completed", "b": "completed"}
    if signal_at == "before_kill":
        sent = await client.send_signal(f"approve:{run_id}", {"ok": True})
        assert sent.status == "buffered"  # its wait is not filed while c runs
    killed_ns = kill(first)

    second = procs.spawn("2s")
    if signal_at == "after_takeover":
        await eventually(
            lambda: parked_on(client, run_id, "approve", []), procs, "the second worker to park"
        )
        sent = await client.send_signal(f"approve:{run_id}", {"ok": True})
        assert (sent.status, sent.run_id) == ("delivered", run_id)

    output = await client.result(run_id, timeout=20)
    executions = procs.executions(run_id)
    first_nonce = {f[2]: f[4] for f in procs.lines(first.pid) if f[0] == "E" and f[1] == run_id}
    assert output["a"] == {"step": "a", "by": first.pid, "nonce": first_nonce["a"]}
    assert output["b"] == {"step": "b", "by": first.pid, "nonce": first_nonce["b"]}
    assert output["c"]["by"] == second.pid
    assert output["approved"] == {"ok": True}
    assert output["finished_by"] == second.pid
    assert executions == {
        ("S", "a", first.pid): 1,  # stored before the crash: never again
        ("E", "a", first.pid): 1,
        ("S", "b", first.pid): 1,
        ("E", "b", first.pid): 1,
        ("S", "c", first.pid): 1,  # in flight at the crash: runs again
        ("S", "c", second.pid): 1,
        ("E", "c", second.pid): 1,
        ("S", "d", second.pid): 1,
        ("E", "d", second.pid): 1,
    }
    # The second worker took the run over only once the dead worker's lease (2 s,
    # renewed every 2/3 s) had run out.
    [c_again] = [f for f in procs.lines(second.pid) if f[:3] == ["S", run_id, "c"]]
    assert (int(c_again[5]) - killed_ns) / 1e9 > 1.0
    run = await client.get_run(run_id)
    assert run.status == "completed"
    assert [(s.id, s.status, s.attempts) for s in sorted(run.steps, key=lambda s: s.id)] == [
        ("a", "completed", 1),
        ("approve", "completed", 1),
        ("b", "completed", 1),
        ("c", "completed", 1),
        ("d", "completed", 1),
    ]


# -- (3) a parallel group whose worker is stopped while another takes over ------------------


@pytest.mark.parametrize("late", ["after_the_run_ended", "while_the_new_owner_runs_c"])
async def test_a_stopped_worker_s_late_writes_in_a_parallel_group_are_refused(
    procs: Procs, client: tarry.App, database_url: str, late: str
) -> None:
    """``after_the_run_ended``: the stopped worker comes back once the run has completed.
    ``while_the_new_owner_runs_c``: it comes back while the second worker is still inside
    its own c (c not stored yet) and the signal waits in the buffer: its result for c
    and its park of the sibling wait (which could take the buffered signal) must both
    be refused, and the run must still complete with that signal."""
    ended_first = late == "after_the_run_ended"
    run_id = await client.start("group", {})
    first = procs.spawn("1s", gate=False)

    def fast_steps_saved_and_c_running() -> bool:
        lines = [f[:6] for f in procs.lines(first.pid)]
        saved = {f[3] for f in lines if f[:3] == ["W", run_id, "save_step"] and f[5] == "ok"}
        return {"a", "b"} <= saved and any(f[:3] == ["S", run_id, "c"] for f in lines)

    await eventually(fast_steps_saved_and_c_running, procs, "a and b stored, c running")
    pause(first, database_url)
    paused_ns = time.time_ns()

    second = procs.spawn("1s", gate=ended_first)
    if ended_first:
        await eventually(
            lambda: parked_on(client, run_id, "approve", []), procs, "the second worker to park"
        )
        sent = await client.send_signal(f"approve:{run_id}", {"ok": True})
        assert (sent.status, sent.run_id) == ("delivered", run_id)
        await client.result(run_id, timeout=20)
        before = await client.get_run(run_id)
        assert before.status == "completed"
    else:
        await eventually(
            lambda: ["S", run_id, "c", str(second.pid)] in [f[:4] for f in procs.lines()],
            procs,
            "the second worker to take the run over and enter c",
        )
        sent = await client.send_signal(f"approve:{run_id}", {"ok": True})
        assert sent.status == "buffered"  # the run is held, its wait not filed
        before = await client.get_run(run_id)
        assert before.status == "running"
        assert {s.id for s in before.steps} == {"a", "b"}

    # Open the stopped worker's gate, then let it run: its step c returns and it asks
    # the store to save c's result under the lease it lost.
    procs.open_gate(first)
    os.kill(first.pid, signal.SIGCONT)
    stale = await eventually(
        lambda: [f for f in procs.lines(first.pid) if f[:4] == ["W", run_id, "save_step", "c"]],
        procs,
        "the stopped worker's attempt to save step c",
    )
    await asyncio.sleep(1.0)  # time for anything else it might still try
    assert first.poll() is None, procs.logs()
    assert [f[5] for f in stale] == ["LeaseLost"]
    first_lines = procs.lines(first.pid)
    after_pause = [f for f in first_lines if f[0] == "W" and int(f[6]) > paused_ns]
    assert after_pause and all(f[5] == "LeaseLost" for f in after_pause), after_pause
    assert await client.get_run(run_id) == before  # not one byte changed

    if not ended_first:
        procs.open_gate(second)
    output = await client.result(run_id, timeout=20)
    done = await client.get_run(run_id)
    assert done.status == "completed" and output["finished_by"] == second.pid
    assert output["approved"] == {"ok": True}
    # Every write of the second worker landed.
    assert all(f[5] == "ok" for f in procs.lines(second.pid) if f[0] == "W")

    assert procs.executions(run_id) == {
        ("S", "a", first.pid): 1,  # completed before the pause: never again
        ("E", "a", first.pid): 1,
        ("S", "b", first.pid): 1,
        ("E", "b", first.pid): 1,
        ("S", "c", first.pid): 1,  # finished late, its result refused
        ("E", "c", first.pid): 1,
        ("S", "c", second.pid): 1,
        ("E", "c", second.pid): 1,
        ("S", "d", second.pid): 1,  # the stopped worker never got past the group
        ("E", "d", second.pid): 1,
    }
    steps = stored(done)
    assert {k: (s.status, s.attempts) for k, s in steps.items()} == {
        "a": ("completed", 1),
        "b": ("completed", 1),
        "c": ("completed", 1),
        "approve": ("completed", 1),
        "d": ("completed", 1),
    }
    assert steps["a"].output["by"] == steps["b"].output["by"] == first.pid
    assert steps["c"].output["by"] == second.pid
