"""Operating ended runs: retry in place, fork from a step, find by filter, purge.

A retry reopens a failed or cancelled run: the steps that failed, were cancelled
or wait to be retried go (their failed attempts stay in ``step_attempts``), the
completed ones stay, and the run is queued with its ``cancel_on`` filed again.
A fork is a new run of the same workflow holding copies of the original's steps
recorded before the chosen one (by ``pos``, the order the handler reached them),
so it runs anew from there. Both note what was done in ``run_changes``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ...errors import RunStateError
from ...models import ENDED_STATUSES
from ..base import AttemptRow, ChangeRow, NewRun, RunFilter, RunHistory, RunRow
from ..rows import run_row, step_row
from .fence import upsert_step
from .port import Tx
from .runs import file_cancel_on, insert_run


async def note_change(tx: Tx, run_id: str, action: str, detail: bytes) -> None:
    await tx.run(
        "insert_run_change", {"run_id": run_id, "now": tx.now, "action": action, "detail": detail}
    )


async def run_history(tx: Tx, run_id: str) -> RunHistory:
    attempts = [
        AttemptRow(*row) for row in await tx.all("select_step_attempts", {"run_id": run_id})
    ]
    changes = [ChangeRow(*row) for row in await tx.all("select_run_changes", {"run_id": run_id})]
    return RunHistory(attempts, changes)


async def retry_run(tx: Tx, run_id: str, detail: bytes) -> RunRow | None:
    found = await tx.one("lock_run", {"id": run_id})
    if found is None:
        return None
    run = run_row(found)
    if run.status not in ("failed", "cancelled"):
        hint = {
            "completed": "it completed; fork it to run it again",
        }.get(run.status, "it has not ended; cancel it first to start it over")
        raise RunStateError(
            f"run {run_id!r} is {run.status}: only a failed or cancelled run can be "
            f"retried ({hint})"
        )
    await tx.run("delete_unfinished_steps", {"run_id": run_id})
    await tx.run("delete_run_waiters", {"run_id": run_id})
    await tx.run("reopen_run", {"run_id": run_id, "now": tx.now})
    await file_cancel_on(tx, run_id, run.workflow, run.payload, run.trigger)
    await note_change(tx, run_id, "retried", detail)
    tx.wake()
    after = await tx.one("select_run", {"id": run_id})
    assert after is not None
    return run_row(after)


async def fork_run(
    tx: Tx, run_id: str, from_step: str, new: NewRun, detail: bytes
) -> RunRow | None:
    found = await tx.one("select_run", {"id": run_id})
    if found is None:
        return None
    run = run_row(found)
    if run.status not in ENDED_STATUSES:
        raise RunStateError(
            f"run {run_id!r} is {run.status}: only an ended run can be forked; wait for it "
            "to end or cancel it"
        )
    steps = sorted(
        (step_row(row) for row in await tx.all("select_all_steps", {"run_id": run_id})),
        key=lambda s: (s.pos is None, s.pos or 0, s.key),
    )
    cut = next((s for s in steps if s.key == from_step), None)
    if cut is None:
        recorded = [s.key for s in steps]
        raise ValueError(
            f"run {run_id!r} recorded no step {from_step!r}; its steps, in order: {recorded}"
        )
    if cut.pos is None:
        raise ValueError(
            f"step {from_step!r} of run {run_id!r} was recorded before tarry kept the order "
            "of steps; fork this run from its first step instead"
        )
    if not await insert_run(tx, new):
        raise ValueError(f"a run {new.id!r} exists already; fork under another run_id")
    for step in steps:
        if step.pos is not None and step.pos < cut.pos:
            await upsert_step(tx, new.id, step)
    await note_change(tx, new.id, "forked", detail)
    after = await tx.one("select_run", {"id": new.id})
    assert after is not None
    return run_row(after)


async def find_runs(tx: Tx, where: RunFilter, after: int, limit: int) -> list[tuple[int, str]]:
    rows = await tx.all("find_runs", {**where.params(), "after": after, "limit": limit})
    return [(int(seq), str(run_id)) for seq, run_id in rows]


async def count_runs(tx: Tx, where: RunFilter) -> int:
    row = await tx.one("count_runs", where.params())
    return int(row[0]) if row else 0


async def purge_runs(
    tx: Tx,
    *,
    cutoffs: Mapping[str, float] | None,
    before: float | None,
    workflow: str | None,
    only: Sequence[str] | None,
    limit: int,
    dry_run: bool,
) -> list[str]:
    await tx.lock("purge", "runs")  # one purger at a time: N workers do not race
    ids: list[str] = []
    if only is not None:
        ids = list(only)
    elif cutoffs is not None:
        for name, cutoff in sorted(cutoffs.items()):
            left = limit - len(ids)
            if left <= 0:
                break
            params = {"workflow": name, "cutoff": cutoff, "limit": left}
            ids.extend(row[0] for row in await tx.all("expired_runs", params))
    elif before is not None:
        params = {"workflow": workflow, "cutoff": before, "limit": limit}
        ids.extend(row[0] for row in await tx.all("old_runs", params))
    if ids and not dry_run:
        await tx.run("delete_runs", {"ids": tx.array(ids)})
    return ids
