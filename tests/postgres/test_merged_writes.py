"""Starts and parks issued at once go out as set-based statements (postgres_merge):
each caller still gets its own answer, whatever else is in the set."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tarry.store import postgres_merge
from tarry.store.base import NewRun, SignalWait, WaitSpec
from tarry.store.postgres import PostgresStore


@pytest.fixture
def merged(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kinds of statement that went as a set."""
    kinds: list[str] = []
    plan = postgres_merge.plan

    def spy(queries: list[str], params: list[dict[str, Any]]) -> Any:
        sets, alone = plan(queries, params)
        kinds.extend(sets)
        return sets, alone

    monkeypatch.setattr(postgres_merge, "plan", spy)
    return kinds


@pytest.fixture
async def store(pg_url: str) -> AsyncIterator[PostgresStore]:
    s = PostgresStore(pg_url)
    await s.open()
    try:
        yield s
    finally:
        await s.close()


def wait_on(key: str, deadline: float | None = None) -> WaitSpec:
    return WaitSpec("w", "signal", deadline, b"{}", (SignalWait(key, on_conflict="fail"),))


async def test_starts_at_once_each_get_their_answer(
    store: PostgresStore, merged: list[str]
) -> None:
    ids = [f"r{n}" for n in range(50)]
    runs = [NewRun(i, "wf", b'{"n": 1}', trigger=b"{}" if n % 2 else None,
                   version="v1" if n % 3 else None) for n, i in enumerate(ids)]  # fmt: skip
    runs += [NewRun("r0", "wf", b"{}"), NewRun("r1", "wf", b"{}")]  # the same ids again
    answers = await asyncio.gather(*(store.create_run(run) for run in runs))
    assert answers[:50] == [(i, True) for i in ids]
    assert answers[50:] == [("r0", False), ("r1", False)]
    found = await store.get_runs(ids)
    assert sorted(r.id for r, _ in found) == sorted(ids)
    by_id = {r.id: r for r, _ in found}
    assert by_id["r1"].trigger == b"{}" and by_id["r0"].trigger is None
    assert by_id["r1"].version == "v1" and by_id["r0"].version is None
    assert all(r.status == "queued" for r in by_id.values())
    assert "insert_plain_run" in merged


async def test_parks_at_once_each_get_their_answer(store: PostgresStore, merged: list[str]) -> None:
    for n in range(40):
        await store.create_run(NewRun(f"r{n}", "wf", b"{}"))
    batch = await store.claim(["wf"], 40, 60)
    leases = {c.run.id: c.lease for c in sorted(batch.runs, key=lambda c: c.run.id)}
    assert len(leases) == 40
    await store.send_signal("key-r5", b'"early"', strict=False, retention_seconds=60)
    await store.release(leases["r7"])  # a lease lost: the park must not happen
    soon = time.time() + 30

    def spec(run_id: str) -> WaitSpec:
        if run_id in {"r10", "r11"}:
            return wait_on("shared")  # two runs on one key: one parks, one conflicts
        return wait_on(f"key-{run_id}", soon if run_id.endswith("3") else None)

    outcomes = await asyncio.gather(
        *(store.park(lease, spec(run_id)) for run_id, lease in leases.items()),
        return_exceptions=True,
    )
    assert "park_signal" in merged
    by_run = dict(zip(leases, outcomes, strict=True))
    assert by_run["r5"].outcome == "resolved"  # type: ignore[union-attr]
    assert isinstance(by_run["r7"], Exception)
    shared = sorted(by_run[r].outcome for r in ("r10", "r11"))  # type: ignore[union-attr]
    assert shared == ["conflict", "parked"]
    for run_id, result in by_run.items():
        if run_id not in {"r5", "r7", "r10", "r11"}:
            assert not isinstance(result, BaseException), (run_id, result)
            assert result.outcome == "parked", run_id
    found = {r.id: (r, steps) for r, steps in await store.get_runs(list(leases))}
    for run_id in leases.keys() - {"r7"}:
        run, steps = found[run_id]
        if by_run[run_id].outcome == "parked":  # type: ignore[union-attr]
            assert run.status == "waiting", run_id
            assert [(s.key, s.status) for s in steps] == [("w", "waiting")]
            if run_id.endswith("3"):
                assert run.due_at == soon
            else:
                assert run.due_at is None
    r7, _ = found["r7"]
    assert r7.status == "queued", "a park went through without its lease"
    sent = await store.send_signal("key-r23", b'"x"', strict=True, retention_seconds=60)
    assert sent.status == "delivered" and sent.run_id == "r23"


async def test_step_results_and_ends_at_once_each_get_their_answer(
    store: PostgresStore, merged: list[str]
) -> None:
    from tarry.errors import LeaseLost
    from tarry.store.base import StepRow

    for n in range(30):
        await store.create_run(NewRun(f"r{n}", "wf", b"{}", parent="p" if n == 4 else None))
    batch = await store.claim(["wf"], 30, 60)
    leases = {c.run.id: c.lease for c in batch.runs}
    await store.release(leases["r7"])  # a lease lost
    await store.cancel("r9", b'{"message": "stop"}')  # a cancel pending: the step still saves

    def step(run_id: str) -> StepRow:
        return StepRow("a", "run", "completed", output=run_id.encode(), attempts=1,
                       started_at=1.0, ended_at=2.0, pos=1)  # fmt: skip

    saved = await asyncio.gather(
        *(store.save_step(lease, step(run_id)) for run_id, lease in leases.items()),
        return_exceptions=True,
    )
    by_run = dict(zip(leases, saved, strict=True))
    assert isinstance(by_run.pop("r7"), LeaseLost)
    assert by_run.pop("r9") is True  # cancel requested
    assert set(by_run.values()) == {False}
    assert "save_step" in merged
    del leases["r7"]
    ends = await asyncio.gather(
        *(store.finish(lease, "completed", b"1", None) for lease in leases.values())
    )
    assert "finish_orphan" in merged
    assert dict(zip(leases, ends, strict=True)) == {
        run_id: "cancelled" if run_id == "r9" else "completed" for run_id in leases
    }
    for run, steps in await store.get_runs(list(leases)):
        assert run.status == ("cancelled" if run.id == "r9" else "completed"), run.id
        assert [(s.key, s.output) for s in steps] == [("a", run.id.encode())]


async def test_starts_at_once_of_a_workflow_with_cancel_on_take_the_full_path(
    store: PostgresStore, merged: list[str], pg_url: str
) -> None:
    from tarry.store.base import Filing, WorkflowConfig

    await store.sync_workflows([WorkflowConfig("guarded", cancel_on=(Filing("app/stop"),))])
    runs = [NewRun(f"g{n}", "guarded" if n % 2 else "wf", b"{}") for n in range(20)]
    answers = await asyncio.gather(*(store.create_run(run) for run in runs))
    assert answers == [(run.id, True) for run in runs]
    assert "insert_plain_run" in merged
    import psycopg

    with psycopg.connect(pg_url.split("?")[0]) as conn:
        rows = conn.execute(
            f'SELECT run_id FROM "{store.schema}".waiters WHERE kind = %s ORDER BY run_id',
            ("cancel",),
        ).fetchall()
    assert sorted(r[0] for r in rows) == sorted(run.id for run in runs if run.workflow == "guarded")


# Each value the set statements carry, at its edges: every byte, text that JSON must
# escape, floats that only a shortest round-trip writes back exactly.
EVERY_BYTE = bytes(range(256))
ESCAPED = 'quote " backslash \\ tab \t newline \n é 𝄞 {braces}, [brackets]'
FLOATS = [0.1 + 0.2, 1733223456.1234567, 5e-324, 1.7976931348623157e308, -0.0]


async def test_set_statements_store_each_value_exactly(
    store: PostgresStore, merged: list[str], pg_url: str
) -> None:
    import psycopg

    from tarry.store.base import StepRow

    ids = [f"v{n}" for n in range(len(FLOATS))]
    runs = [NewRun(i, "wf", EVERY_BYTE + i.encode(), trigger=EVERY_BYTE[::-1],
                   version=ESCAPED, trace=ESCAPED) for i in ids]  # fmt: skip
    assert await asyncio.gather(*(store.create_run(run) for run in runs)) == [
        (i, True) for i in ids
    ]
    assert "insert_plain_run" in merged
    batch = await store.claim(["wf"], len(ids), 60)
    leases = {c.run.id: c.lease for c in batch.runs}

    def step(n: int) -> StepRow:
        return StepRow(ESCAPED, "run", "completed", output=EVERY_BYTE * 3, error=b"\x00",
                       attempts=2**31 - 1, started_at=FLOATS[n], ended_at=FLOATS[-1 - n],
                       pos=n, spec=ESCAPED)  # fmt: skip

    await asyncio.gather(*(store.save_step(leases[i], step(n)) for n, i in enumerate(ids)))
    assert "save_step" in merged
    await asyncio.gather(*(store.finish(leases[i], "completed", EVERY_BYTE, None) for i in ids))
    assert "finish_orphan" in merged
    for run, steps in await store.get_runs(ids):
        n = ids.index(run.id)
        assert (run.payload, run.trigger) == (EVERY_BYTE + run.id.encode(), EVERY_BYTE[::-1])
        assert (run.version, run.output) == (ESCAPED, EVERY_BYTE)
        [saved] = steps
        assert saved == StepRow(ESCAPED, "run", "completed", output=EVERY_BYTE * 3,
                                error=b"\x00", attempts=2**31 - 1, started_at=FLOATS[n],
                                ended_at=FLOATS[-1 - n], pos=n, spec=ESCAPED)  # fmt: skip
        assert math.copysign(1, saved.ended_at if n == 0 else -0.0) == -1  # -0.0 kept
    with psycopg.connect(pg_url.split("?")[0]) as conn:
        traces = conn.execute(f'SELECT trace FROM "{store.schema}".runs').fetchall()
    assert traces == [(ESCAPED,)] * len(ids)


async def test_parks_in_a_set_store_each_value_exactly(
    store: PostgresStore, merged: list[str]
) -> None:
    ids = [f"w{n}" for n in range(len(FLOATS))]
    for i in ids:
        await store.create_run(NewRun(i, "wf", b"{}"))
    batch = await store.claim(["wf"], len(ids), 60)
    deadline = time.time() + 3600.123456789

    def spec(n: int) -> WaitSpec:
        return WaitSpec(ESCAPED, "signal", deadline, EVERY_BYTE,
                        (SignalWait(f"{ESCAPED} {n}", on_conflict="fail"),))  # fmt: skip

    by_id = {c.run.id: c.lease for c in batch.runs}
    parked = await asyncio.gather(*(store.park(by_id[i], spec(n)) for n, i in enumerate(ids)))
    assert "park_signal" in merged
    assert [p.outcome for p in parked] == ["parked"] * len(ids)
    for run, steps in await store.get_runs(ids):
        assert (run.status, run.due_at, run.waiting_for) == ("waiting", deadline, EVERY_BYTE)
        assert [(s.key, s.status) for s in steps] == [(ESCAPED, "waiting")]


def test_each_set_statement_reads_the_columns_its_merge_names() -> None:
    """The rows go as JSON objects: a column the statement does not declare would be
    dropped without a word, so the declared ones are held to ``Merge.rows``."""
    import re

    from tarry.store.sql import load_queries

    queries = load_queries("postgres")
    for merge in postgres_merge.MERGES.values():
        sql = queries[merge.query]
        declared = re.search(r"json_to_recordset\(.*?\)\s+AS p \((.*?)\)\n\)", sql, re.S)
        assert declared is not None, merge.query
        columns = tuple(c.split()[0] for c in declared.group(1).split(","))
        assert columns == merge.rows, merge.query
