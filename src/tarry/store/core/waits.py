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
from .port import Row, Tx
from .runs import (
    cancel_now,
    event_value_lock,
    fence,
    file_event_path,
    insert_run,
    insert_waiter,
    resolve_wait,
    run_trigger,
    stored_step,
    upsert_step,
)

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


async def lock_signal_waiter(tx: Tx, key: str) -> tuple[str, str, int | None] | None:
    """The run waiting on ``key`` with its run row and waiter row locked (run first,
    as everywhere), or None. The caller holds the key's lock, so no new waiter can
    appear; one found may vanish (timed out, cancelled) until locked."""
    found = await tx.one("lock_signal_waiter_run", {"key": key})
    if found is None:
        return None
    locked = await tx.one("lock_signal_waiter", {"key": key, "run_id": found[0]})
    return None if locked is None else (locked[0], locked[1], locked[2])


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
        case SignalWait(key=key):
            buffered = await tx.one("first_buffered_signal", {"key": key, "now": tx.now})
            if buffered is None:
                return None
            await tx.run("delete_signal", {"id": buffered[0]})
            return bytes(buffered[1])
        case EventWait(since=since):
            return None if since is None else await look_back(tx, run_id, cond, filed)
        case MessageWait(name=name):
            row = await tx.one("first_message", {"run_id": run_id, "name": name})
            if row is None:
                return None
            await tx.run("consume_message", {"seq": row[0], "step_key": step_key, "now": tx.now})
            return message_json(row[1], bytes(row[2]), row[3])
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
            if done.status == "failed":
                other = (orjson.loads(done.error or b"{}") or {}).get("other_run")
                return ParkResult("conflict", done, other)
            return ParkResult("resolved", done)
    started = wait.started_at or tx.now

    async def settle(status: StepStatus, output: bytes | None, error: bytes | None) -> StepRow:
        ended = None if status == "waiting" else tx.now
        step = StepRow(
            wait.step_key, wait.kind, status, output, error, 1, started, ended, wait.pos,
            wait.spec,
        )  # fmt: skip
        await upsert_step(tx, run_id, step)
        return step

    evict: list[str] = []
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
        try:
            found = await available(tx, run_id, wait.step_key, cond, filed)
        except Refused as refused:
            step = await settle("failed", None, refused.error)
            return ParkResult("conflict", step, None)
        if found is not None:
            output = indexed(index, found) if wait.indexed else found
            return ParkResult("resolved", await settle("completed", output, None))
    if wait.deadline is not None and wait.deadline <= tx.now:
        status: StepStatus = "completed" if wait.kind == "sleep" else "timed_out"
        return ParkResult("resolved", await settle(status, None, None))
    for key in evict:
        locked = await lock_signal_waiter(tx, key)
        if locked is not None:
            note = error_json(
                "Replaced",
                f"the wait on signal {key!r} was taken over by run {run_id!r}",
                replaced_by=run_id,
            )
            await resolve_wait(tx, locked[0], locked[1], "timed_out", None, note)
    await settle("waiting", None, None)
    keys: set[str] = set()
    for index, cond in enumerate(wait.conditions):
        if isinstance(cond, SignalWait):
            if cond.key in keys:
                continue  # one waiter per key: the first condition naming it answers
            keys.add(cond.key)
        await insert_waiter(
            tx, run_id, wait.step_key, cond, wait.deadline, index if wait.indexed else None,
            filed=filed,
        )  # fmt: skip
    await tx.run(
        "release_run",
        {"status": "waiting", "due_at": wait.deadline, "waiting_for": wait.waiting_for,
         "now": tx.now, "run_id": run_id},
    )  # fmt: skip
    if wait.deadline is not None:
        tx.wake()  # an idle worker may need an earlier alarm
    return ParkResult("parked")
