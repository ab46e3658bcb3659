"""A run's end in the store: finishing, cancelling, giving the lease up (a release,
a retry's backoff), and resuming the run that invoked it.

A cancellation has two halves. ``cancel`` asks for it; a run no worker holds
(queued, parked, sleeping, between retries) ends at once, while a leased run is
only flagged. Every fenced write then sees the flag: ``save_step`` reports it,
and ``finish``, ``park`` and ``retry_step`` end the run cancelled in their own
transaction instead of completing, parking or scheduling a retry.
"""

from __future__ import annotations

from typing import Any

import orjson

from ...models import ENDED_STATUSES, EndStatus
from ..base import Lease, RunRow, StepRow
from ..rows import child_json, error_json, run_row
from .fence import fence, record_attempt, upsert_step
from .port import Tx
from .waiters import resolve_wait


async def notify_parent(tx: Tx, run_id: str) -> None:
    """A run has ended: resume the run whose ``invoke`` waits for it, if any."""
    await tx.lock("invoke", run_id)
    waiter = await tx.one("invoke_waiter", {"key": run_id})
    if waiter is None:
        return
    waiter_id, parent_id, step_key, index = waiter
    await tx.one("lock_run", {"id": parent_id})
    if await tx.one("lock_waiter", {"id": waiter_id}) is None:
        return  # the wait was resolved otherwise (timed out, another condition) meanwhile
    found = await tx.one("select_run", {"id": run_id})
    assert found is not None
    child = run_row(found)
    result = child_json(child.status, child.output, child.error)
    await resolve_wait(tx, parent_id, step_key, "completed", result, None, index)


async def cancel_now(tx: Tx, run_id: str) -> None:
    """End the run cancelled with the reason its cancellation was requested with."""
    await tx.run("delete_run_waiters", {"run_id": run_id})
    await tx.run("cancel_waiting_steps", {"run_id": run_id, "now": tx.now})
    await tx.run("end_run_with_cancel_reason", {"run_id": run_id, "now": tx.now})
    await notify_parent(tx, run_id)


def is_leased(run: RunRow, now: float) -> bool:
    return run.status == "running" and run.due_at is not None and run.due_at > now


async def request_cancel(
    tx: Tx, run_id: str, reason: bytes | None = None
) -> tuple[RunRow | None, bool]:
    """Ask for the run's cancellation: a run no worker holds ends at once, a leased
    one is flagged to stop at its next step. No-op on an ended run. Returns the run
    as it was before (None: no such run) and whether it ended now."""
    found = await tx.one("lock_run", {"id": run_id})
    if found is None:
        return None, False
    run = run_row(found)
    if run.status in ENDED_STATUSES:
        return run, False
    if reason is not None or not run.cancel_requested:
        reason = reason or error_json("Cancelled", "cancelled by an event")
        await tx.run("request_cancel", {"reason": reason, "now": tx.now, "run_id": run_id})
    if is_leased(run, tx.now):
        return run, False
    await cancel_now(tx, run_id)
    return run, True


async def cancel(
    tx: Tx, run_id: str, reason: bytes | None, *, children: bool = True
) -> RunRow | None:
    """Cancel the run and, unless ``children`` is False, every run it invoked that has
    not ended, recursively. The invoked runs go first, deepest first: a child's end
    locks its parent after itself, and so does this, so the two never deadlock."""
    reason = reason or error_json("Cancelled", "cancelled")
    if children:
        await cancel_children(tx, run_id, reason)
    before, _ = await request_cancel(tx, run_id, reason)
    if before is None:
        return None
    after = await tx.one("select_run", {"id": run_id})
    assert after is not None
    return run_row(after)


async def cancel_children(tx: Tx, run_id: str, reason: bytes) -> list[str]:
    """Cancel every run ``run_id`` invoked that has not ended, recursively, deepest
    first; the ids of those that ended now (the others are flagged)."""
    tree: list[str] = []
    frontier = [run_id]
    while frontier:
        found = [
            row[0] for parent in frontier for row in await tx.all("live_children", {"id": parent})
        ]
        tree.extend(found)
        frontier = found
    message = (orjson.loads(reason) or {}).get("message", "cancelled")
    because = error_json("Cancelled", f"run {run_id!r}, which invoked it, was cancelled: {message}")
    ended = []
    for child in reversed(tree):
        _, now = await request_cancel(tx, child, because)
        if now:
            ended.append(child)
    return ended


async def finish(
    tx: Tx, lease: Lease, status: EndStatus, output: bytes | None, error: bytes | None
) -> EndStatus:
    params = end_params(lease, status, output, error, tx.now)
    if await tx.run("finish_orphan", params):
        # The common end, of a run nobody invoked and nobody asked to cancel, in one
        # statement; its waiters (its cancel_on) go with it.
        await tx.run("delete_run_waiters", params)
        return status
    return await finish_fenced(tx, lease, params)


def end_params(
    lease: Lease, status: EndStatus, output: bytes | None, error: bytes | None, now: float
) -> dict[str, Any]:
    return {"status": status, "output": output, "error": error, "now": now,
            "run_id": lease.run_id, "token": lease.token}  # fmt: skip


async def finish_fenced(tx: Tx, lease: Lease, params: dict[str, Any]) -> EndStatus:
    """The end ``finish_orphan`` could not make alone: a lost lease (``LeaseLost``),
    a pending cancel (which wins), or a parent to resume."""
    if await fence(tx, lease):
        await cancel_now(tx, lease.run_id)
        return "cancelled"
    await tx.run("delete_run_waiters", params)
    await tx.run("end_run", params)
    await notify_parent(tx, lease.run_id)
    status: EndStatus = params["status"]
    return status


async def honor_cancel(tx: Tx, lease: Lease) -> None:
    await fence(tx, lease)
    await cancel_now(tx, lease.run_id)


async def release(tx: Tx, lease: Lease) -> None:
    await fence(tx, lease)
    await requeue(tx, lease.run_id, tx.now)


async def requeue(tx: Tx, run_id: str, due_at: float) -> None:
    """Give the run up, queued and due at ``due_at``."""
    params = {"status": "queued", "due_at": due_at, "waiting_for": None, "now": tx.now}
    await tx.run("release_run", {**params, "run_id": run_id})
    tx.wake()


async def retry_step(tx: Tx, lease: Lease, step: StepRow, due_at: float) -> bool:
    cancel_requested = await fence(tx, lease)
    await upsert_step(tx, lease.run_id, step)
    await record_attempt(tx, lease.run_id, step)
    if cancel_requested:
        await cancel_now(tx, lease.run_id)
        return True
    await requeue(tx, lease.run_id, due_at)
    return False
