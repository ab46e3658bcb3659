"""The lease fence, and what an attempt writes behind it: its steps, its failed
attempts, the code version it runs.

Every write a worker makes for a run it holds is fenced by its lease: ``fence``
checks, under the run's row, that the lease still holds the run (else
``LeaseLost``, nothing written) and tells whether the run's cancellation was
requested. It is apart because the rest of the core (parking, a step's
deliveries, tokens, a run's end) writes behind it.
"""

from __future__ import annotations

from ...errors import LeaseLost
from ..base import Lease, StepRow
from ..rows import step_params, step_row
from .port import Tx


def lease_lost(lease: Lease) -> LeaseLost:
    return LeaseLost(
        f"the lease on run {lease.run_id!r} was taken over by another worker; "
        "this worker's write was rejected and the newer attempt is kept"
    )


async def fence(tx: Tx, lease: Lease) -> bool:
    """Check that ``lease`` still holds the run (else ``LeaseLost``, nothing written);
    whether its cancellation was requested. Where rows are locked, this locks the
    run's, so a claim that would take the run over waits or passes it by."""
    row = await tx.one("fence", {"now": tx.now, "run_id": lease.run_id, "token": lease.token})
    if row is None:
        raise lease_lost(lease)
    return bool(row[0])


async def stored_step(tx: Tx, run_id: str, key: str) -> StepRow | None:
    row = await tx.one("select_step", {"run_id": run_id, "key": key})
    return None if row is None else step_row(row)


async def upsert_step(tx: Tx, run_id: str, step: StepRow) -> None:
    await tx.run("upsert_step", step_params(run_id, step))


async def note_version(tx: Tx, lease: Lease, version: str) -> None:
    """The attempt holding ``lease`` runs code ``version``: the run's latest, and its
    first if it had none (a run started by an event, or by a process without it)."""
    await fence(tx, lease)
    await tx.run("note_version", {"run_id": lease.run_id, "version": version, "now": tx.now})


async def save_step(tx: Tx, lease: Lease, step: StepRow) -> bool:
    params = step_params(lease.run_id, step)
    params["token"] = lease.token
    if await tx.run("save_step_leased", params):
        if is_failed_attempt(step):
            await record_attempt(tx, lease.run_id, step)
        return False  # the common case, in one statement
    cancel_requested = await fence(tx, lease)  # the lease is gone, or a cancel is pending
    await tx.run("upsert_step", params)
    await record_attempt(tx, lease.run_id, step)
    return cancel_requested


def is_failed_attempt(step: StepRow) -> bool:
    return step.kind == "run" and step.status in ("failed", "retrying")


async def record_attempt(tx: Tx, run_id: str, step: StepRow) -> None:
    """Keep a failed attempt of a ``run`` step (its error and traceback) in the step's
    history, which outlives the step record's last word."""
    if is_failed_attempt(step):
        await tx.run("insert_step_attempt", step_params(run_id, step))
