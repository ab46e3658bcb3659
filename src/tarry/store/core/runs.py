"""A run's life in the store: creation, the lease fence, ending, cancelling.

A cancellation has two halves. ``cancel`` asks for it; a run no worker holds
(queued, parked, sleeping, between retries) ends at once, while a leased run is
only flagged. Every fenced write then sees the flag: ``save_step`` reports it,
and ``finish``, ``park`` and ``retry_step`` end the run cancelled in their own
transaction instead of completing, parking or scheduling a retry.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any, Literal

import orjson

from ...errors import LeaseLost
from ...models import ENDED_STATUSES, EndStatus, WaiterKind
from ..base import (
    EventWait,
    Filing,
    InvokeWait,
    Lease,
    MessageWait,
    NewRun,
    RunRow,
    SignalWait,
    StepRow,
    WaitCondition,
    WorkflowConfig,
)
from ..flow_records import FlowRules
from ..matching import index_value, resolve_filing, trigger_of
from ..rows import child_json, error_json, indexed, run_row, step_params, step_row
from ..token_records import TokenWait
from . import flow
from .configs import WorkflowConfigs
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


async def run_trigger(tx: Tx, run_id: str) -> Any:
    found = await tx.one("run_trigger", {"id": run_id})
    return None if found is None else trigger_of(*found)


def event_value_lock(name: str, path: str, value: str) -> str:
    """The lock a wait on events named ``name`` with ``value`` at ``path`` shares
    with the senders of such events."""
    return f"{name}\n{path}\n{value}"


async def file_event_path(tx: Tx, name: str, path: str) -> None:
    """From now on, every event named ``name`` has its value at ``path`` indexed
    (``event_keys``): events find waits filed there, and lookbacks find events."""
    await tx.run("file_event_path", {"name": name, "path": path, "now": tx.now})


def waiter_key(cond: WaitCondition) -> str | None:
    """What a waiter is found by: the signal key, the event name, the message name
    (None: any), the child run's id, the token's id."""
    match cond:
        case SignalWait(key=key):
            return key
        case EventWait(filing=filing):
            return filing.event
        case MessageWait(name=name):
            return name
        case InvokeWait(child=child):
            return child.id
        case TokenWait(token_id=token_id):
            return token_id


async def insert_waiter(
    tx: Tx,
    run_id: str,
    step_key: str,
    cond: WaitCondition,
    expires_at: float | None,
    index: int | None = None,
    *,
    kind: WaiterKind | None = None,
    filed: dict[tuple[str, str], float] | None = None,
) -> None:
    """File one waiter; an event waiter's path is filed for its name unless ``filed``
    (what the caller read of ``event_paths``) says it is already."""
    filing = cond.filing if isinstance(cond, EventWait) else None
    path = None if filing is None else filing.path
    if (
        filing is not None
        and path is not None
        and (filed is None or (filing.event, path) not in filed)
    ):
        await file_event_path(tx, filing.event, path)
        if filed is not None:
            filed[filing.event, path] = tx.now
    await tx.run(
        "insert_waiter",
        {
            "run_id": run_id,
            "step_key": step_key,
            "kind": kind or cond.kind,
            "key": waiter_key(cond),
            "expires_at": expires_at,
            "path": filing.path if filing is not None else None,
            "value": index_value(filing.value) if filing and filing.value is not None else None,
            "expr": filing.expr if filing is not None else None,
            "idx": index,
            # A typed wait's JSON Schema, checked at delivery (typed_waits).
            "json_schema": getattr(cond, "schema", None),
        },
    )


async def insert_run(
    tx: Tx, run: NewRun, configs: WorkflowConfigs | None = None, *, debounced: bool = False
) -> bool:
    """Insert a queued run due now (or at its ``due_at``), with its flow keys and the
    waiters of its workflow's ``cancel_on`` (as ``configs`` remembers them, when
    given); an existing id is left as it is. Whether it was created. ``debounced``: a
    start its workflow's debounce gathers (``start_run``), due when the window closes;
    other runs (an invoked child, a fork) start without one."""
    cancel_on, rules = await stored_config(tx, run.workflow, configs)
    if rules is not None and rules.debounce is not None and not debounced:
        rules = replace(rules, debounce=None)
    due_at = flow.first_due(rules, max(tx.now, run.due_at or tx.now))
    priority = run.priority if run.priority is not None else rules.priority if rules else 0
    created = await tx.run(
        "insert_run",
        {
            "id": run.id,
            "workflow": run.workflow,
            "payload": run.payload,
            "trigger": run.trigger,
            "parent": run.parent,
            "version": run.version,
            "now": tx.now,
            "due_at": due_at,
            "trace": run.trace,
            "priority": priority,
        },
    )
    if not created:
        return False
    tx.wake()
    if rules is not None and rules.gated:
        await flow.file_keys(tx, run, rules)
    await file_cancel_on(tx, run.id, run.workflow, run.payload, run.trigger, configs, cancel_on)
    return True


async def start_run(
    tx: Tx, run: NewRun, configs: WorkflowConfigs | None = None
) -> tuple[str, bool]:
    """A run's start (``App.start``, an event's trigger): ``insert_run``, except that a
    start of a debounced workflow may be gathered into the run its key is gathering
    (``flow.gather``). The run's id and whether it was created."""
    _, rules = await stored_config(tx, run.workflow, configs)
    if rules is not None and rules.debounce is not None:
        gathered = await flow.gather(tx, run, rules)
        if gathered is not None:
            await tx.run("delete_run_waiters", {"run_id": gathered})  # refiled for the new data
            await file_cancel_on(tx, gathered, run.workflow, run.payload, run.trigger, configs)
            return gathered, False
    return run.id, await insert_run(tx, run, configs, debounced=True)


async def stored_config(
    tx: Tx, workflow: str, configs: WorkflowConfigs | None = None
) -> tuple[bytes | None, FlowRules | None]:
    """The workflow's stored ``cancel_on`` and flow rules (as ``configs`` remembers
    them, when given and fresh)."""
    known = None if configs is None else configs.stored(workflow)
    if known is not None:
        return known
    found = await tx.one("workflow_cancel_on", {"id": workflow})
    cancel_on = None if found is None else bytes(found[0])
    rules = None if found is None or found[1] is None else FlowRules.from_json(bytes(found[1]))
    if configs is not None:
        configs.remember(workflow, cancel_on, rules)
    return cancel_on, rules


async def file_cancel_on(
    tx: Tx,
    run_id: str,
    workflow: str,
    payload: bytes | None,
    trigger: bytes | None,
    configs: WorkflowConfigs | None = None,
    cancel_on: bytes | Literal[False] | None = False,
) -> None:
    """File the waiters of the workflow's ``cancel_on`` (read unless given) for a run
    starting (or starting again: a retry)."""
    if cancel_on is False:
        cancel_on, _ = await stored_config(tx, workflow, configs)
    if cancel_on is not None and cancel_on != b"[]":
        run_trigger = trigger_of(workflow, payload, trigger)
        for item in orjson.loads(cancel_on):
            filing = resolve_filing(Filing(**item), run_trigger)
            await insert_waiter(tx, run_id, "", EventWait(filing), None, kind="cancel")


async def sync_workflows(tx: Tx, configs: list[WorkflowConfig]) -> None:
    for config in sorted(configs, key=lambda c: c.id):
        cancel_on = orjson.dumps([asdict(f) for f in config.cancel_on])
        rules = None if config.flow is None else config.flow.to_json()
        await tx.run("upsert_workflow", {"id": config.id, "cancel_on": cancel_on, "flow": rules,
                                         "now": tx.now})  # fmt: skip
        await tx.run("delete_workflow_triggers", {"workflow": config.id})
        for event, expr in config.triggers:
            await tx.run("insert_trigger", {"workflow": config.id, "event": event, "expr": expr})


async def resolve_wait(
    tx: Tx,
    run_id: str,
    step_key: str,
    status: str,
    output: bytes | None,
    error: bytes | None,
    index: int | None = None,
    trace: str | None = None,
) -> None:
    """Deliver to one wait: its waiters go (not the run's ``cancel`` ones), its step
    gets ``output`` (as ``{"index", "value"}`` for the condition ``index`` of a
    wait_for_any) and the sender's ``trace``, and the run is due now. The caller
    holds the run's row."""
    if index is not None and status == "completed":
        stored = await stored_step(tx, run_id, step_key)
        if stored is not None and stored.need is not None:
            await _arrive(tx, run_id, stored, index, output or b"null", trace)
            return
        output = indexed(index, output or b"null")
    await tx.run(
        "resolve_wait",
        {
            "status": status,
            "output": output,
            "error": error,
            "now": tx.now,
            "run_id": run_id,
            "key": step_key,
            "trace": trace,
        },
    )
    tx.wake()


async def _arrive(
    tx: Tx, run_id: str, stored: StepRow, index: int, value: bytes, trace: str | None
) -> None:
    """One arrival for a wait that needs several (wait_for_all, a quorum): kept as it
    comes, its condition's waiters gone; the wait resolves (and its other waiters go)
    with the arrival that completes it."""
    arrived = orjson.loads(stored.output) if stored.output else []
    arrived.append({"index": index, "value": orjson.loads(value)})
    output = orjson.dumps(arrived)
    if len(arrived) >= (stored.need or 1):
        await resolve_wait(tx, run_id, stored.key, "completed", output, None, trace=trace)
        return
    await tx.run("delete_condition_waiters", {"run_id": run_id, "key": stored.key, "idx": index})
    await tx.run("update_step_output", {"run_id": run_id, "key": stored.key, "output": output})


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


async def note_version(tx: Tx, lease: Lease, version: str) -> None:
    """The attempt holding ``lease`` runs code ``version``: the run's latest, and its
    first if it had none (a run started by an event, or by a process without it)."""
    await fence(tx, lease)
    await tx.run("note_version", {"run_id": lease.run_id, "version": version, "now": tx.now})


async def save_step(tx: Tx, lease: Lease, step: StepRow) -> bool:
    params = step_params(lease.run_id, step)
    if await tx.run("save_step_leased", {**params, "token": lease.token}):
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


async def retry_step(tx: Tx, lease: Lease, step: StepRow, due_at: float) -> bool:
    cancel_requested = await fence(tx, lease)
    await upsert_step(tx, lease.run_id, step)
    await record_attempt(tx, lease.run_id, step)
    if cancel_requested:
        await cancel_now(tx, lease.run_id)
        return True
    await requeue(tx, lease.run_id, due_at)
    return False
