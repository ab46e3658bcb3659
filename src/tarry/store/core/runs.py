"""A run's creation in the store: inserting it, a start a debounce may gather, the
workflow configuration it is created with, and syncing that configuration.

A new run gets its flow keys and the waiters of its workflow's ``cancel_on`` in
the transaction that inserts it; a retry files its ``cancel_on`` again
(``file_cancel_on``). How a run ends is in ``ends``, what an attempt writes in
``fence``, its waiters in ``waiters``.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Literal

import orjson

from ..base import EventWait, Filing, Lease, NewRun, RunRow, WorkflowConfig
from ..flow_records import FlowRules
from ..matching import resolve_filing, trigger_of
from ..rows import run_row
from . import flow
from .configs import WorkflowConfigs
from .port import Tx
from .waiters import insert_waiter


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
    created = await tx.run("insert_run", {**_inserted(tx, run, rules), "due_at": due_at})
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


async def start_leased(
    tx: Tx, run: NewRun, lease: Lease, lease_seconds: float, configs: WorkflowConfigs | None = None
) -> tuple[str, bool, RunRow | None]:
    """A start taken at once by a worker of the starting process (``App.start``): the
    run inserted already leased with ``lease``, its record as a claim returns it, and
    no wake-up (no other worker is to claim it). A workflow with flow rules (keyed
    limits, a rate, a debounce) is started as any other (``start_run``): its gate
    decides when it runs. Also returns the run's id and whether it was created."""
    cancel_on, rules = await stored_config(tx, run.workflow, configs)
    if rules is not None and rules.gated:
        run_id, created = await start_run(tx, run, configs)
        return run_id, created, None
    lease_until = tx.now + lease_seconds
    row = await tx.one(
        "insert_leased_run",
        {**_inserted(tx, run, rules), "lease_until": lease_until, "token": lease.token},
    )
    if row is None:
        return run.id, False, None  # the id exists: left as it is
    await file_cancel_on(tx, run.id, run.workflow, run.payload, run.trigger, configs, cancel_on)
    return run.id, True, run_row(row)


def _inserted(tx: Tx, run: NewRun, rules: FlowRules | None) -> dict[str, object]:
    """The values a new run's row is inserted with, queued or leased."""
    priority = run.priority if run.priority is not None else rules.priority if rules else 0
    return {
        "id": run.id,
        "workflow": run.workflow,
        "payload": run.payload,
        "trigger": run.trigger,
        "parent": run.parent,
        "version": run.version,
        "now": tx.now,
        "trace": run.trace,
        "priority": priority,
    }


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
