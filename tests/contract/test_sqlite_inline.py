"""A run's brief writes on SQLite commit on the caller's event loop (``sqlite_inline``):
one transaction per turn of the loop, in order, beside a writer thread at work and
another process holding the write lock, and never left waiting by a close."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

import tarry
from tarry.errors import StoreError
from tarry.store.sqlite import SQLiteStore
from tarry.store.sqlite_inline import Op
from tarry.store.sqlite_writer import GroupCommitWriter

from helpers import wait_for_status


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[GroupCommitWriter]:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'inline.db'}")
    await store.open()
    await store._io.call(lambda conn: conn.execute("CREATE TABLE log (n INTEGER)"))
    try:
        yield store._io
    finally:
        await store.close()


def _logged(path: str) -> list[int]:
    with sqlite3.connect(path) as conn:
        return [int(n) for (n,) in conn.execute("SELECT n FROM log ORDER BY rowid")]


def _append(n: int, threads: list[int] | None = None) -> Callable[[sqlite3.Connection], int]:
    """An operation that logs ``n`` (and the thread it ran on)."""

    def op(conn: sqlite3.Connection) -> int:
        if threads is not None:
            threads.append(threading.get_ident())
        conn.execute("INSERT INTO log VALUES (?)", (n,))
        return n

    return op


async def test_brief_writes_of_one_turn_share_one_commit_on_the_loops_thread(
    writer: GroupCommitWriter,
) -> None:
    commits: list[str] = []
    assert writer._conn is not None
    writer._conn.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)
    threads: list[int] = []
    try:
        made = (writer.call(_append(n, threads), brief=True) for n in range(50))
        results = await asyncio.gather(*made)
    finally:
        writer._conn.set_trace_callback(None)
    assert results == list(range(50))
    assert set(threads) == {threading.get_ident()}  # on this loop, not the writer thread
    assert _logged(writer.path) == list(range(50))  # in the order they were made
    assert commits == ["COMMIT"]  # one transaction


async def test_a_failing_brief_write_spoils_none_of_its_neighbours(
    writer: GroupCommitWriter,
) -> None:
    def fails(conn: sqlite3.Connection) -> None:
        conn.execute("INSERT INTO log VALUES (99)")
        raise ValueError("this write is refused")

    outcome = await asyncio.gather(
        writer.call(_append(1), brief=True),
        writer.call(fails, brief=True),
        writer.call(_append(2), brief=True),
        return_exceptions=True,
    )
    assert outcome[0] == 1 and outcome[2] == 2
    assert isinstance(outcome[1], ValueError)
    assert _logged(writer.path) == [1, 2]  # 99 rolled back alone


async def test_brief_writes_wait_behind_the_busy_writer_thread_in_order(
    writer: GroupCommitWriter,
) -> None:
    """The thread holds the connection through a long operation: the loop's writes
    are handed to it rather than block the loop, and keep their order."""
    busy = asyncio.ensure_future(writer.call(lambda conn: time.sleep(0.5)))
    await asyncio.sleep(0.05)  # the writer thread is inside that operation now
    threads: list[int] = []
    first = asyncio.ensure_future(writer.call(_append(1, threads), brief=True))
    await asyncio.sleep(0)  # its flush has run: handed to the thread
    later = [asyncio.ensure_future(writer.call(_append(n, threads), brief=True)) for n in (2, 3)]
    ticks = 0
    while not busy.done():
        await asyncio.sleep(0.01)
        ticks += 1
    assert ticks >= 10  # the loop went on meanwhile
    assert await first == 1 and [await f for f in later] == [2, 3]
    assert _logged(writer.path) == [1, 2, 3]
    assert threads[0] != threading.get_ident()  # the first went to the thread
    await busy


async def test_another_processs_write_lock_does_not_stall_the_loop(
    writer: GroupCommitWriter,
) -> None:
    other = sqlite3.connect(writer.path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's write transaction
    try:
        write = asyncio.ensure_future(writer.call(_append(7), brief=True))
        started = time.monotonic()
        for _ in range(30):
            await asyncio.sleep(0.01)
        # A loop stuck in SQLite's busy wait would run these only once the lock is
        # let go below, or the 30 s busy timeout ends.
        assert time.monotonic() - started < 5
        assert not write.done()  # it waits for the lock, in the writer thread
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert await asyncio.wait_for(write, 10) == 7
    assert _logged(writer.path) == [7]


async def test_brief_writes_from_loops_in_several_threads_all_commit(
    writer: GroupCommitWriter,
) -> None:
    main_loop = asyncio.get_running_loop()

    def in_thread(base: int) -> list[int]:
        async def writes() -> list[int]:
            return list(
                await asyncio.gather(
                    *(writer.call(_append(base + n), brief=True) for n in range(100))
                )
            )

        return asyncio.run(writes())

    done = await asyncio.gather(
        *(main_loop.run_in_executor(None, in_thread, base) for base in (1000, 2000, 3000)),
        *(writer.call(_append(n), brief=True) for n in range(100)),
    )
    assert done[0] == list(range(1000, 1100))
    logged = _logged(writer.path)
    assert sorted(logged) == sorted(
        [*range(100), *range(1000, 1100), *range(2000, 2100), *range(3000, 3100)]
    )
    for base in (1000, 2000, 3000):  # each loop's writes in the order it made them
        mine = [n for n in logged if base <= n < base + 100]
        assert mine == list(range(base, base + 100))


async def test_a_brief_write_made_as_the_store_closes_is_refused_not_left_waiting(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(f"sqlite:///{tmp_path / 'closing.db'}")
    await store.open()
    io = store._io
    busy = asyncio.ensure_future(io.call(lambda conn: time.sleep(0.3)))
    await asyncio.sleep(0.05)
    write = asyncio.ensure_future(io.call(lambda conn: 1, brief=True))
    await asyncio.sleep(0)  # handed to the busy thread
    closing = asyncio.ensure_future(store.close())
    await busy
    await closing
    # Handed to the thread before the stop: it ran, and its caller heard.
    assert await asyncio.wait_for(write, 5) == 1
    with pytest.raises(StoreError, match="not open"):
        await io.call(lambda conn: 1, brief=True)


async def test_a_runs_writes_are_brief_and_everything_else_is_not(tmp_path: Path) -> None:
    """A run's start, claim, steps, park, the signal that wakes it and its end go to
    the loop's batches; reads (and the purge) to the writer thread."""
    app = tarry.App(database=f"sqlite:///{tmp_path / 'hot.db'}")

    async def double(x: int) -> int:
        return 2 * x

    @app.workflow("hot")
    async def hot(ctx: tarry.Context, step: tarry.Step) -> int:
        x = await step.run("double", double, 21)
        await step.wait_for_signal("go", signal=f"go:{ctx.run_id}", timeout=None)
        return int(await step.run("again", double, x))

    brief: set[str] = set()
    threaded: set[str] = set()

    def name(op: Op) -> str:
        body = op.fn.args[0]  # type: ignore[attr-defined]  # partial(_run_on, body, ...)
        return str(getattr(body, "func", body).__name__)

    async with app.worker():
        io = app._store._io  # type: ignore[attr-defined]
        add_brief, run_batch = io._add_brief, io._run_batch

        def in_thread(conn: sqlite3.Connection, items: list[object]) -> None:
            threaded.update(name(item) for item in items if isinstance(item, Op))
            run_batch(conn, items)

        io._add_brief = lambda op: (brief.add(name(op)), add_brief(op))
        io._run_batch = in_thread
        run_id = await app.start("hot", {})
        await wait_for_status(app, run_id, "waiting")
        await app.send_signal(f"go:{run_id}", {"ok": True})
        assert await app.result(run_id, timeout=10) == 84
    await app.close()
    assert {"start_run", "claim", "save_step", "park", "send_signal", "finish"} <= brief
    assert "get_run" in threaded and not threaded & brief
