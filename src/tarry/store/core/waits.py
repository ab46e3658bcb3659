"""Parking a run: a wait satisfied at once, a conflict on a signal key, or waiters.

Every lock a park needs is taken before the run's row (the fence), in a fixed
order of kinds, which is the order every sender takes them in: a signal sent
while a run parks is either buffered and then consumed by the wait, or
delivered to the waiter; never lost, never both.
"""

from __future__ import annotations

import orjson

from ...models import ENDED_STATUSES, StepStatus
from ..base import (
    EventWait,
    InvokeWait,
    Lease,
    MessageWait,
    ParkResult,
    SignalWait,
    StepRow,
    WaitCondition,
    WaitSpec,
)
from ..matching import MISSING, index_value, matches, residue, value_at
from ..rows import child_json, error_json, event_json, indexed, message_json, run_row
from ..token_records import TokenWait
from .ends import cancel_now
from .fence import fence, stored_step, upsert_step
from .port import Row, Tx
from .runs import insert_run
from .tokens import completed_data
from .typed_waits import first_fitting_message, first_fitting_signal, with_schemas
from .waiters import event_value_lock, file_event_path, insert_waiter, resolve_wait, run_trigger

Filed = dict[tuple[str, str], float]
"""(event name, path) -> since when the index holds that path: what a park has read
of ``event_paths``, so that it asks once."""
COVERED = -1.0
"""The index holds every stored event at the path (``event_path_covered``)."""


class Refused(Exception):
    """A condition that can never be this wait's: the step fails with ``error``."""

    def __init__(self, error: bytes) -> None:
        super().__init__(error.decode())
        self.error = error


async def lock_signal_waiter(tx: Tx, key: str) -> tuple[str, str, int | None, bytes | None] | None:
    """The run waiting on ``key`` with its run row and waiter row locked (run first,
    as everywhere), or None: its run id, step key, condition index and JSON Schema.
    The caller holds the key's lock, so no new waiter can appear; one found may
    vanish (timed out, cancelled) until locked."""
    found = await tx.one("lock_signal_waiter_run", {"key": key})
    if found is None:
        return None
    locked = await tx.one("lock_signal_waiter", {"key": key, "run_id": found[0]})
    if locked is None:
        return None
    return locked[0], locked[1], locked[2], None if locked[3] is None else bytes(locked[3])


async def look_back(tx: Tx, run_id: str, wait: EventWait, filed: Filed) -> bytes | None:
    """The oldest stored event that satisfies the wait, if any: the lookback. A wait
    filed under an equality reads the events with that value at that path through
    the index, so its cost does not grow with other runs' events; only a wait with
    no equality reads the events of its name in full."""
    filing = wait.filing
    assert wait.since is not None
    if filing.value == MISSING:
        return None  # an equality against a value the trigger does not have
    if filing.path is not None and filing.value is not None:
        await cover_event_path(tx, filing.event, filing.path, wait.since, filed)
        params = {"name": filing.event, "path": filing.path,
                  "value": index_value(filing.value), "since": wait.since}  # fmt: skip
        return await _first_match(tx, run_id, wait, await tx.all("events_by_key", params))
    params = {"name": filing.event, "since": wait.since}
    return await _first_match(tx, run_id, wait, await tx.all("events_since", params))


async def cover_event_path(tx: Tx, name: str, path: str, since: float, filed: Filed) -> None:
    """Make the index hold every stored event named ``name`` received from ``since``
    on at ``path``. A path filed after events of its name were stored has them
    added once, here; from then on each event is added as it is sent. The caller
    holds the name's lock alone (``lock_for_park`` decides so), so no sender adds
    keys for the path meanwhile."""
    indexed_since = filed.get((name, path))
    if indexed_since is not None and indexed_since < since:
        return  # strictly before: an event stored at that very time may predate it
    if indexed_since is None:
        await file_event_path(tx, name, path)
    for seq, data, ts in await tx.all("events_unindexed", {"name": name, "path": path}):
        value = value_at({"name": name, "data": orjson.loads(data)}, path)
        if value is not None:
            await tx.run(
                "insert_event_key",
                {"event_seq": seq, "name": name, "path": path, "value": value, "ts": ts},
            )
    await tx.run("event_path_covered", {"name": name, "path": path})
    filed[name, path] = COVERED


async def _first_match(tx: Tx, run_id: str, wait: EventWait, rows: list[Row]) -> bytes | None:
    filing = wait.filing
    expr = residue(filing.path, filing.expr)
    trigger = None if expr is None else await run_trigger(tx, run_id)
    skip = set(wait.exclude)
    for event_id, name, data, ts in rows:
        if event_id in skip:
            continue
        incoming = {"name": name, "data": orjson.loads(data), "id": event_id, "ts": ts}
        if matches(filing.path, filing.value, expr, trigger, incoming):
            return event_json(name, bytes(data), event_id, ts)
    return None


async def available(
    tx: Tx, run_id: str, step_key: str, cond: WaitCondition, filed: Filed
) -> bytes | None:
    """What already satisfies ``cond`` (consumed here), or None. The caller holds the
    locks that keep it from changing: the signal key's, the event name's, the run's
    row (its mailbox), the child's id."""
    match cond:
        case SignalWait(key=key, schema=schema):
            if schema is None:
                buffered = await tx.one("first_buffered_signal", {"key": key, "now": tx.now})
            else:
                buffered = await first_fitting_signal(tx, key, schema)
            if buffered is None:
                return None
            await tx.run("delete_signal", {"id": buffered[0]})
            return bytes(buffered[1])
        case EventWait(since=since):
            return None if since is None else await look_back(tx, run_id, cond, filed)
        case MessageWait(name=name, schema=schema):
            if schema is None:
                row = await tx.one("first_message", {"run_id": run_id, "name": name})
            else:
                row = await first_fitting_message(tx, run_id, name, schema)
            if row is None:
                return None
            await tx.run("consume_message", {"seq": row[0], "step_key": step_key, "now": tx.now})
            return message_json(row[1], bytes(row[2]), row[3])
        case TokenWait():
            return await completed_data(tx, cond)
        case InvokeWait(child=child):
            created = await insert_run(tx, child)
            found = await tx.one("select_run", {"id": child.id})
            assert found is not None
            ended = run_row(found)
            if not created:
                owner = await tx.one("run_parent", {"id": child.id})
                if owner is None or owner[0] != child.parent or ended.workflow != child.workflow:
                    raise Refused(
                        error_json(
                            "ForeignRun",
                            f"a run {child.id!r} of workflow {ended.workflow!r} exists that "
                            f"this run did not start, so it cannot be this step's child; "
                            "rename the step, or start that run under another id",
                            other_run=child.id,
                        )
                    )
            if ended.status in ENDED_STATUSES:
                return child_json(ended.status, ended.output, ended.error)
            return None


async def lock_for_park(tx: Tx, conditions: tuple[WaitCondition, ...]) -> Filed:
    """The locks of every condition, each kind in a fixed order and sorted: the order
    senders take them in.

    An event wait filed under an equality on a path the index already covers for
    its window locks only that (name, path, value): parks on other values, and
    sends of events with other values, go on beside it. Any other event wait (no
    equality, or one whose path the index must first be made to cover) locks the
    whole name. Returns what it read of the index's paths, for the park to use."""
    names: set[str] = set()
    values: set[str] = set()
    filed: Filed = {}
    for cond in conditions:
        if not isinstance(cond, EventWait):
            continue
        filing = cond.filing
        if filing.value == MISSING:
            continue  # no event can match it, and there is nothing to look back for
        if filing.path is not None and filing.value is not None:
            params = {"name": filing.event, "path": filing.path}
            covered = await tx.one("event_path_since", params)
            if covered is not None:
                filed[filing.event, filing.path] = covered[0]
            since = cond.since if cond.since is not None else float("inf")
            if covered is not None and covered[0] < since:
                values.add(event_value_lock(filing.event, filing.path, index_value(filing.value)))
                continue
        names.add(filing.event)
    for key in sorted({c.key for c in conditions if isinstance(c, SignalWait)}):
        await tx.lock("signal", key)
    for name in sorted(names):
        await tx.lock("event", name)
    for value in sorted(values):
        await tx.lock("event-value", value)
    for child in sorted({c.child.id for c in conditions if isinstance(c, InvokeWait)}):
        await tx.lock("invoke", child)
    for token in sorted({c.token_id for c in conditions if isinstance(c, TokenWait)}):
        await tx.lock("token", token)  # a completion in flight stores first, or finds us
    return filed


async def park(tx: Tx, lease: Lease, wait: WaitSpec) -> ParkResult:
    filed = await lock_for_park(tx, wait.conditions)
    run_id = lease.run_id
    if await fence(tx, lease):
        await cancel_now(tx, run_id)
        return ParkResult("cancelled")
    if tx.retried_unknown:
        # The first attempt may have committed a wait resolved at once; a second
        # must not consume another buffered signal or message.
        done = await stored_step(tx, run_id, wait.step_key)
        if done is not None and done.status != "waiting":
            return _as_result(done)
    now = await try_now(tx, run_id, wait, filed)
    if isinstance(now, ParkResult):
        return now
    await file_wait(tx, run_id, wait, filed, now)
    shown = with_schemas(wait.waiting_for, wait.conditions)
    await release_parked(tx, run_id, wait.deadline, shown)
    return ParkResult("parked")


async def park_all(tx: Tx, lease: Lease, waits: list[WaitSpec]) -> dict[str, ParkResult]:
    """Park the run on every wait of its branches at once, each with its own deadline,
    unless some can be answered now: then those are stored and returned (the run keeps
    its lease, and the branches go on). A wait already stored as waiting keeps its
    waiters and deadline; one that was answered meanwhile is returned answered."""
    filed = await lock_for_park(tx, tuple(c for w in waits for c in w.conditions))
    run_id = lease.run_id
    if await fence(tx, lease):
        await cancel_now(tx, run_id)
        return {w.step_key: ParkResult("cancelled") for w in waits}
    answered: dict[str, ParkResult] = {}
    fresh: list[tuple[WaitSpec, list[str]]] = []
    taken: set[str] = set()  # signal keys the fresh waits of this park will hold
    deadlines: list[float] = []
    for wait in sorted(waits, key=lambda w: w.step_key):
        stored = await stored_step(tx, run_id, wait.step_key)
        if stored is not None and stored.status == "retrying":  # a backoff beside branches
            if stored.due_at is None or stored.due_at <= tx.now:
                answered[wait.step_key] = ParkResult("resolved", stored)
            else:
                deadlines.append(stored.due_at)
        elif stored is not None and stored.status != "waiting":
            answered[wait.step_key] = _as_result(stored)  # answered, or timed out, meanwhile
        elif stored is not None:
            due = stored.due_at if stored.due_at is not None else wait.deadline
            if due is not None and due <= tx.now:
                answered[wait.step_key] = ParkResult("resolved", await _expire(tx, run_id, stored))
            elif due is not None:
                deadlines.append(due)
        else:
            now = await try_now(tx, run_id, wait, filed, taken)
            if isinstance(now, ParkResult):
                answered[wait.step_key] = now
            else:
                fresh.append((wait, now))
                taken.update(c.key for c in wait.conditions if isinstance(c, SignalWait))
                if wait.deadline is not None:
                    deadlines.append(wait.deadline)
    if answered:
        return answered
    for wait, evict in fresh:
        await file_wait(tx, run_id, wait, filed, evict)
    due = min(deadlines, default=None)
    if len(waits) == 1:
        shown = with_schemas(waits[0].waiting_for, waits[0].conditions)
    else:  # the branches' waits, each as it would be shown alone
        each = [orjson.loads(with_schemas(w.waiting_for, w.conditions)) for w in waits]
        shown = orjson.dumps({"kind": "branches", "step": each[0]["step"], "key": None,
                              "expires_at": due, "waits": each})  # fmt: skip
    await release_parked(tx, run_id, due, shown)
    return {w.step_key: ParkResult("parked") for w in waits}


def _as_result(stored: StepRow) -> ParkResult:
    if stored.status == "failed":
        other = (orjson.loads(stored.error or b"{}") or {}).get("other_run")
        return ParkResult("conflict", stored, other)
    return ParkResult("resolved", stored)


async def _expire(tx: Tx, run_id: str, stored: StepRow) -> StepRow:
    """A waiting step past its own deadline: timed out (a sleep: done), its waiters gone."""
    status: StepStatus = "completed" if stored.kind == "sleep" else "timed_out"
    output = stored.output if stored.need is not None else None
    await tx.run("delete_step_waiters", {"run_id": run_id, "key": stored.key})
    done = StepRow(
        stored.key, stored.kind, status, output, None, stored.attempts, stored.started_at,
        tx.now, stored.pos, stored.spec, stored.due_at, stored.need,
    )  # fmt: skip
    await upsert_step(tx, run_id, done)
    return done


async def try_now(
    tx: Tx, run_id: str, wait: WaitSpec, filed: Filed, taken: set[str] | None = None
) -> ParkResult | list[str]:
    """Answer ``wait`` now if something already satisfies it (or its deadline passed,
    or a key conflicts), storing the step; else the signal keys it would take over."""
    started = wait.started_at or tx.now

    async def settle(status: StepStatus, output: bytes | None, error: bytes | None) -> StepRow:
        ended = None if status == "waiting" else tx.now
        step = StepRow(
            wait.step_key, wait.kind, status, output, error, 1, started, ended, wait.pos,
            wait.spec, _due(wait), wait.need,
        )  # fmt: skip
        await upsert_step(tx, run_id, step)
        return step

    evict: list[str] = []
    arrived: list[dict[str, object]] = []
    for index, cond in enumerate(wait.conditions):
        if isinstance(cond, SignalWait):
            holder = await tx.one("signal_waiter", {"key": cond.key})
            if holder is not None and holder[0] != run_id:
                other_run: str = holder[0]
                if cond.on_conflict == "fail":
                    error = error_json(
                        "SignalConflict",
                        f"run {other_run!r} already waits on signal {cond.key!r}; "
                        'pass on_conflict="replace" to take the key over',
                        other_run=other_run,
                    )
                    return ParkResult("conflict", await settle("failed", None, error), other_run)
                # Taken over only if this wait parks: another of its conditions may
                # resolve it now, and then the holder keeps the key.
                evict.append(cond.key)
                continue  # a key somebody waits on has no buffered signal
            if holder is not None or (taken is not None and cond.key in taken):
                error = error_json(
                    "SignalConflict",
                    f"this run already waits on signal {cond.key!r} in another step; "
                    "two waits of one run cannot share a key",
                    other_run=run_id,
                )
                return ParkResult("conflict", await settle("failed", None, error), run_id)
        try:
            found = await available(tx, run_id, wait.step_key, cond, filed)
        except Refused as refused:
            step = await settle("failed", None, refused.error)
            return ParkResult("conflict", step, None)
        if found is None:
            continue
        if wait.need is None:
            output = indexed(index, found) if wait.indexed else found
            return ParkResult("resolved", await settle("completed", output, None))
        arrived.append({"index": index, "value": orjson.loads(found)})
        if len(arrived) >= wait.need:
            return ParkResult("resolved", await settle("completed", orjson.dumps(arrived), None))
    if wait.deadline is not None and wait.deadline <= tx.now:
        status: StepStatus = "completed" if wait.kind == "sleep" else "timed_out"
        partial = orjson.dumps(arrived) if wait.need is not None else None
        return ParkResult("resolved", await settle(status, partial, None))
    if arrived:
        await settle("waiting", orjson.dumps(arrived), None)
    return evict


def _due(wait: WaitSpec) -> float:
    return float("inf") if wait.deadline is None else wait.deadline


async def file_wait(tx: Tx, run_id: str, wait: WaitSpec, filed: Filed, evict: list[str]) -> None:
    """Store ``wait`` as waiting and file its waiters (taking over ``evict``'s keys)."""
    for key in evict:
        locked = await lock_signal_waiter(tx, key)
        if locked is not None:
            note = error_json(
                "Replaced",
                f"the wait on signal {key!r} was taken over by run {run_id!r}",
                replaced_by=run_id,
            )
            await resolve_wait(tx, locked[0], locked[1], "timed_out", None, note)
    stored = await stored_step(tx, run_id, wait.step_key)  # arrivals a quorum already has
    arrived = {entry["index"] for entry in orjson.loads(stored.output)} if (
        stored is not None and stored.output
    ) else set()  # fmt: skip
    if stored is None:
        started = wait.started_at or tx.now
        await upsert_step(tx, run_id, StepRow(
            wait.step_key, wait.kind, "waiting", None, None, 1, started, None, wait.pos,
            wait.spec, _due(wait), wait.need,
        ))  # fmt: skip
    keys: set[str] = set()
    for index, cond in enumerate(wait.conditions):
        if index in arrived:
            continue
        if isinstance(cond, SignalWait):
            if cond.key in keys:
                continue  # one waiter per key: the first condition naming it answers
            keys.add(cond.key)
        await insert_waiter(
            tx, run_id, wait.step_key, cond, wait.deadline, index if wait.indexed else None,
            filed=filed,
        )  # fmt: skip


async def release_parked(tx: Tx, run_id: str, deadline: float | None, waiting_for: bytes) -> None:
    await tx.run(
        "release_run",
        {"status": "waiting", "due_at": deadline, "waiting_for": waiting_for,
         "now": tx.now, "run_id": run_id},
    )  # fmt: skip
    if deadline is not None:
        tx.wake()  # an idle worker may need an earlier alarm
