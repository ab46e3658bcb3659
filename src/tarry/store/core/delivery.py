"""Deliveries: a signal to the run waiting on its key, an event to every run whose
wait or ``cancel_on`` it matches, a message to a run's mailbox.

Each is decided inside one transaction, holding the locks the waits take too,
so two deliveries can never both win a waiter. A delivery made by a step
(``StepSender``) is fenced by its lease and stores the step in the same
transaction: it happens exactly once per run.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Literal

import orjson

from ...errors import PayloadInvalid, Violation
from ...ids import new_id
from ...models import ENDED_STATUSES, StepKind
from ...wait_schema import invalid_error, refused_signal
from ..base import (
    ClaimedRun,
    EventOutcome,
    Handoff,
    Lease,
    NewEvent,
    NewRun,
    SignalOutcome,
    StepRow,
    StepSender,
)
from ..matching import matches, residue, trigger_of, value_at
from ..rows import error_json, event_json, message_json, run_row
from .claims import step_summary, steps_of
from .ends import cancel_children, request_cancel
from .fence import fence, stored_step, upsert_step
from .port import Tx
from .runs import start_run
from .typed_waits import violations
from .waiters import event_value_lock, resolve_wait
from .waits import lock_signal_waiter

MessageStatus = Literal["delivered", "queued", "not_found", "finished"]


async def hand_off(tx: Tx, run_id: str, handoff: Handoff | None) -> None:
    """Lease the run this delivery woke to the sending process's worker, if it takes
    the run's workflow (``Handoff``): its claim is skipped."""
    if handoff is None:
        return
    handoff.taken = None  # a transaction run again decides afresh
    row = await tx.one(
        "lease_woken_run",
        {"id": run_id, "token": handoff.token, "now": tx.now,
         "lease_until": tx.now + handoff.lease_seconds,
         "workflows": tx.array(list(handoff.workflows))},
    )  # fmt: skip
    if row is None:
        return  # not due after all (a wait that needs more), a cancel pending, not taken
    lease = Lease(run_id, handoff.token)
    if handoff.asleep(run_id):  # the worker holds its steps: their summary will do
        summary = await step_summary(tx, run_id)
        handoff.taken = ClaimedRun(run_row(row), [], lease, tx.now, summary)
    else:
        steps = (await steps_of(tx, [run_id]))[run_id]
        handoff.taken = ClaimedRun(run_row(row), steps, lease, tx.now)


async def _sent_before(tx: Tx, sender: StepSender | None) -> tuple[bytes | None, bool]:
    """Fence a step's send: what it stored before, if an earlier attempt committed
    without hearing so, and whether the run's cancellation was requested."""
    if sender is None:
        return None, False
    cancel_requested = await fence(tx, sender.lease)
    if not tx.retried_unknown:
        return None, cancel_requested
    done = await stored_step(tx, sender.lease.run_id, sender.step_key)
    if done is not None and done.status == "completed" and done.output:
        return done.output, cancel_requested
    return None, cancel_requested


async def _store_send(tx: Tx, sender: StepSender, kind: StepKind, output: bytes) -> None:
    step = StepRow(
        sender.step_key, kind, "completed", output, None, 1, sender.started_at, tx.now, sender.pos
    )
    await upsert_step(tx, sender.lease.run_id, step)


async def send_signal(
    tx: Tx,
    key: str,
    data: bytes,
    *,
    strict: bool,
    retention_seconds: float,
    sender: StepSender | None,
    trace: str | None = None,
    handoff: Handoff | None = None,
) -> SignalOutcome:
    await tx.lock("signal", key)
    done, cancel_requested = await _sent_before(tx, sender)
    if done is not None:
        sent = orjson.loads(done)
        return SignalOutcome(sent["status"], sent["run_id"], cancel_requested)
    waiter = await lock_signal_waiter(tx, key)
    if waiter is not None:
        run_id, step_key, index, schema = waiter
        errors = violations(schema, data)
        if errors:
            invalid = refused_signal(key, run_id, errors)
            return await _refused(tx, sender, invalid, run_id, cancel_requested)
        await resolve_wait(tx, run_id, step_key, "completed", data, None, index, trace)
        await hand_off(tx, run_id, handoff)
        outcome = SignalOutcome("delivered", run_id, cancel_requested)
    elif strict:
        return SignalOutcome("not_found")
    else:
        expires_at = tx.now + retention_seconds
        await tx.run(
            "buffer_signal", {"key": key, "data": data, "now": tx.now, "expires_at": expires_at}
        )
        outcome = SignalOutcome("buffered", None, cancel_requested)
    if sender is not None:
        output = orjson.dumps({"status": outcome.status, "run_id": outcome.run_id})
        await _store_send(tx, sender, "send_signal", output)
    return outcome


async def _refused(
    tx: Tx,
    sender: StepSender | None,
    invalid: PayloadInvalid,
    run_id: str,
    cancel_requested: bool,
) -> SignalOutcome:
    """Data that does not fit the wait's schema: nothing delivered or buffered. A
    client is told by the error; a step's send is stored as failed with it, so a
    replay raises the same error rather than send again."""
    if sender is None:
        raise invalid
    step = StepRow(
        sender.step_key, "send_signal", "failed", None, invalid_error(invalid), 1,
        sender.started_at, tx.now, sender.pos,
    )  # fmt: skip
    await upsert_step(tx, sender.lease.run_id, step)
    return SignalOutcome("invalid", run_id, cancel_requested, tuple(invalid.errors))


async def send_event(
    tx: Tx, event: NewEvent, *, dedupe_seconds: float, sender: StepSender | None
) -> EventOutcome:
    done, cancel_requested = await _sent_before(tx, sender)
    if done is not None:
        return EventOutcome(orjson.loads(done)[0], True, cancel_requested=cancel_requested)
    outcome = await _deliver_event(tx, event, dedupe_seconds)
    if sender is not None:
        await _store_send(tx, sender, "send_event", orjson.dumps([outcome.event_id]))
    return replace(outcome, cancel_requested=cancel_requested)


async def _deliver_event(tx: Tx, event: NewEvent, dedupe_seconds: float) -> EventOutcome:
    await tx.lock("event", event.name, shared=True)
    now = tx.now
    if event.dedupe:
        await tx.lock("event-id", event.id)
        seen = await tx.one("event_by_id", {"id": event.id})
        if seen is not None:
            if seen[0] > now - dedupe_seconds:
                return EventOutcome(event.id, duplicate=True)
            await tx.run("delete_event_keys", {"id": event.id})
            await tx.run("delete_event", {"id": event.id})
    params = {"id": event.id, "name": event.name, "data": event.data, "ts": now}
    inserted = await tx.one("insert_event", params)
    assert inserted is not None
    incoming = {"name": event.name, "data": orjson.loads(event.data), "id": event.id, "ts": now}
    incoming_json = event_json(event.name, event.data, event.id, now)
    started: list[str] = []
    workflows: dict[str, str] = {}
    for workflow, expr in await tx.all("triggers_for_event", {"event": event.name}):
        if expr is None or matches(None, None, expr, incoming, incoming):
            run = NewRun(new_id(now), workflow, event.data, incoming_json, trace=event.trace)
            run_id, created = await start_run(tx, run)
            if created or run_id not in started:  # gathered by a debounce: that run
                started.append(run_id)
                workflows[run_id] = workflow
    candidates = sorted((await _candidates(tx, inserted[0], incoming)).items())
    triggers = await _triggers(
        tx, sorted({run_id for _, (run_id, _, _, expr, _) in candidates if expr is not None})
    )
    matched = [
        (waiter_id, candidate)
        for waiter_id, candidate in candidates
        if candidate[0] not in started
        and (candidate[3] is None or matches(None, None, candidate[3], triggers.get(candidate[0]),
                                             incoming))
    ]  # fmt: skip
    if any(kind == "cancel" for _, (_, _, kind, _, _) in matched):
        resumed, cancelled = await _deliver_each(tx, event, matched, incoming_json)
    else:
        resumed, cancelled = await _deliver_all(tx, matched, incoming_json, event.trace), []
    if cancelled:
        rows = await tx.all("select_runs_by_ids", {"ids": tx.array(cancelled)})
        workflows.update((row[1], row[2]) for row in rows)
    return EventOutcome(
        event.id, False, tuple(started), tuple(resumed), tuple(cancelled), workflows=workflows
    )


Candidate = tuple[str, str, str, str | None, int | None]
Matched = list[tuple[int, Candidate]]


async def _triggers(tx: Tx, run_ids: list[str]) -> dict[str, Any]:
    """What the CEL conditions of these runs' waits see as their trigger, in one read."""
    if not run_ids:
        return {}
    rows = await tx.all("run_triggers", {"ids": tx.array(run_ids)})
    return {row[0]: trigger_of(row[1], row[2], row[3]) for row in rows}


async def _deliver_all(
    tx: Tx, matched: Matched, incoming_json: bytes, trace: str | None
) -> list[str]:
    """An event that resumes waits only (no ``cancel_on``), in set-based statements:
    ``deliver_waits`` locks the runs, then their waiters (runs before waiters, each
    in order), keeps the first waiter still there of each run and, where the store
    can in the same statement (PostgreSQL), resolves the plain ones; ``resolve_waits``
    resolves those it left (SQLite, the only store with one). Only a wait for several
    conditions (its output names the one that fired, or counts arrivals) takes its own
    statements."""
    if not matched:
        return []
    params = {"ids": tx.array([str(waiter_id) for waiter_id, _ in matched]),
              "run_ids": tx.array(sorted({candidate[0] for _, candidate in matched})),
              "output": incoming_json, "now": tx.now, "trace": trace}  # fmt: skip
    chosen = await tx.all("deliver_waits", params)
    plain = [(run_id, key) for run_id, key, index, resolved, *_ in chosen
             if index is None and not resolved]  # fmt: skip
    if plain:
        await tx.run(
            "resolve_waits",
            {"run_ids": tx.array([run_id for run_id, _ in plain]),
             "keys": tx.array([key for _, key in plain]),
             "pairs": tx.array([orjson.dumps(pair).decode() for pair in plain]),
             "output": incoming_json, "now": tx.now, "trace": trace},
        )  # fmt: skip
    if any(row[2] is None for row in chosen):
        tx.wake()
    for run_id, step_key, index, *_ in chosen:
        if index is not None:
            await resolve_wait(tx, run_id, step_key, "completed", incoming_json, None, index, trace)
    return [row[0] for row in chosen]


async def _deliver_each(
    tx: Tx, event: NewEvent, matched: Matched, incoming_json: bytes
) -> tuple[list[str], list[str]]:
    """An event that cancels runs too, one waiter at a time in the order they were
    filed: a cancel reaches the runs its run invoked, whose waiters then go."""
    resumed: list[str] = []
    cancelled: list[str] = []
    done: set[str] = set()
    for waiter_id, (run_id, step_key, kind, _, index) in matched:
        if run_id in done:
            continue
        # Lock the run, then make sure its waiter is still there: a timeout, a
        # cancel or another event may have taken it since it was read.
        await tx.one("lock_run", {"id": run_id})
        if await tx.one("lock_waiter", {"id": waiter_id}) is None:
            continue
        done.add(run_id)
        if kind == "event":
            await resolve_wait(
                tx, run_id, step_key, "completed", incoming_json, None, index, event.trace
            )
            resumed.append(run_id)
        else:
            _, ended = await request_cancel(tx, run_id)
            if ended:
                cancelled.append(run_id)
            reason = error_json("Cancelled", f"cancelled by event {event.name!r}")
            cancelled.extend(await cancel_children(tx, run_id, reason))
    return resumed, cancelled


async def _candidates(tx: Tx, seq: int, incoming: dict[str, Any]) -> dict[int, Candidate]:
    """The waiters filed under a (path, value) the event has, plus those with no
    indexable equality: never a scan of all waiters. On the way, the event's value
    at each filed path goes into the index that lookbacks read."""
    name, found = incoming["name"], {}
    keys: list[tuple[str, str]] = []
    for (path,) in await tx.all("event_paths_of", {"name": name}):
        value = value_at(incoming, path)
        if value is not None:
            keys.append((path, value))
    keys.sort()
    # The waits on these very values hold these locks alone while they look back
    # and file their waiters (waits.lock_for_park): each sees the other's commit.
    for path, value in keys:
        await tx.lock("event-value", event_value_lock(name, path, value), shared=True)
    for path, value in keys:
        await tx.run(
            "insert_event_key",
            {"event_seq": seq, "name": name, "path": path, "value": value,
             "ts": incoming["ts"]},
        )  # fmt: skip
        params = {"name": name, "path": path, "value": value}
        for row in await tx.all("waiters_by_value", params):
            # Found here, a ``match=`` wait matches: no CEL on a possibly large event.
            found[row[0]] = (row[1], row[2], row[3], residue(path, row[4]), row[5])
    for row in await tx.all("waiters_unindexed", {"name": name}):
        found[row[0]] = (row[1], row[2], row[3], row[4], row[5])
    return found


async def send_message(
    tx: Tx,
    run_id: str,
    name: str,
    data: bytes,
    trace: str | None = None,
    handoff: Handoff | None = None,
) -> MessageStatus:
    # The run's row lock orders this send with the run's own park, which looks for
    # a queued message while it holds the same lock.
    row = await tx.one("lock_run", {"id": run_id})
    if row is None:
        return "not_found"
    if row[3] in ENDED_STATUSES:
        return "finished"
    waiter = await _message_waiter(tx, run_id, name, data)
    params = {"run_id": run_id, "name": name, "data": data, "now": tx.now}
    inserted = await tx.one("insert_message", params)
    assert inserted is not None
    if waiter is None:
        return "queued"
    step_key, index = waiter
    await tx.run("consume_message", {"seq": inserted[0], "step_key": step_key, "now": tx.now})
    message = message_json(name, data, tx.now)
    await resolve_wait(tx, run_id, step_key, "completed", message, None, index, trace)
    await hand_off(tx, run_id, handoff)
    return "delivered"


async def _message_waiter(
    tx: Tx, run_id: str, name: str, data: bytes
) -> tuple[str, int | None] | None:
    """The waiter of the run that takes a message named ``name`` with ``data``: the
    first filed whose schema, if any, the data fits. ``PayloadInvalid`` when some
    wait would take the name but none the data (nothing is stored then)."""
    rows = await tx.all("message_waiters", {"run_id": run_id, "name": name})
    first_errors: list[Violation] = []
    for step_key, index, schema in rows:
        errors = violations(None if schema is None else bytes(schema), data)
        if not errors:
            return step_key, index
        first_errors = first_errors or errors
    if rows:
        what = f"the data of message {name!r} (to run {run_id!r}, step {rows[0][0]!r})"
        raise PayloadInvalid(first_errors, what)
    return None
