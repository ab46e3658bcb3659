"""The Store contract for typed waits (a ``schema`` on a signal or message waiter), on
every store: the schema is kept with the wait and shown in the run's waiting_for,
data that does not fit is refused inside the delivering transaction with nothing
stored, and data that was there before the wait is taken only if it fits."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

import tarry
from tarry.store.base import MessageWait, SignalWait, StepSender, Store, WaitSpec

from .test_store_contract import j, leased, run_of, signal, steps_of

SCHEMA = {
    "type": "object",
    "properties": {"approved": {"type": "boolean"}, "by": {"type": "string"}},
    "required": ["approved", "by"],
}
ENCODED = orjson.dumps(SCHEMA)
GOOD = {"approved": True, "by": "ana"}
BAD = {"approved": "yes"}


def typed_wait(cond: SignalWait | MessageWait, step: str = "wait") -> WaitSpec:
    kind = "signal" if isinstance(cond, SignalWait) else "message"
    key = cond.key if isinstance(cond, SignalWait) else cond.name
    shown = {"kind": kind, "step": step, "key": key, "expires_at": None}
    return WaitSpec(step, kind, None, orjson.dumps(shown), (cond,))


async def parked(store: Store, cond: SignalWait | MessageWait) -> Any:
    claimed = await leased(store)
    result = await store.park(claimed.lease, typed_wait(cond))
    assert result.outcome == "parked"
    return claimed


async def test_a_typed_signal_wait_keeps_its_schema_and_refuses_what_does_not_fit(
    store: Store,
) -> None:
    claimed = await parked(store, SignalWait("typed:1", schema=ENCODED))
    run_id = claimed.run.id
    before = await run_of(store, run_id)
    assert j(before.waiting_for)["schema"] == SCHEMA
    with pytest.raises(tarry.PayloadInvalid) as caught:
        await signal(store, "typed:1", BAD)
    assert [tuple(e) for e in caught.value.errors] == [
        ("$.by", "is required"),
        ("$.approved", "should be a boolean, got string"),
    ]
    after = await run_of(store, run_id)
    assert (after.status, after.due_at, after.updated_at) == (
        before.status,
        before.due_at,
        before.updated_at,
    )
    assert (await steps_of(store, run_id))["wait"].status == "waiting"
    delivered = await signal(store, "typed:1", GOOD)
    assert (delivered.status, delivered.run_id) == ("delivered", run_id)
    assert j((await steps_of(store, run_id))["wait"].output) == GOOD
    # The refused signal was not buffered: an untyped wait on the key finds nothing.
    later = await leased(store)
    assert (await store.park(later.lease, typed_wait(SignalWait("typed:1")))).outcome == "parked"


async def test_a_step_send_refused_is_stored_as_failed_with_the_errors(store: Store) -> None:
    target = await parked(store, SignalWait("typed:2", schema=ENCODED))
    sender = await leased(store)
    at = store.clock.now()
    outcome = await signal(store, "typed:2", BAD, sender=StepSender(sender.lease, "tell", at, 1))
    assert (outcome.status, outcome.run_id) == ("invalid", target.run.id)
    assert [e.path for e in outcome.errors] == ["$.by", "$.approved"]
    tell = (await steps_of(store, sender.run.id))["tell"]
    assert (tell.kind, tell.status, tell.output) == ("send_signal", "failed", None)
    error = j(tell.error)
    assert error["type"] == "PayloadInvalid" and "typed:2" in error["message"]
    assert error["errors"][0] == {"path": "$.by", "message": "is required"}
    assert (await steps_of(store, target.run.id))["wait"].status == "waiting"


async def test_a_typed_wait_takes_the_oldest_buffered_signal_that_fits(store: Store) -> None:
    assert (await signal(store, "typed:3", BAD)).status == "buffered"
    assert (await signal(store, "typed:3", GOOD)).status == "buffered"
    claimed = await leased(store)
    typed = await store.park(claimed.lease, typed_wait(SignalWait("typed:3", schema=ENCODED)))
    assert typed.outcome == "resolved" and typed.step is not None
    assert j(typed.step.output) == GOOD
    other = await leased(store)
    untyped = await store.park(other.lease, typed_wait(SignalWait("typed:3")))
    assert untyped.outcome == "resolved" and untyped.step is not None
    assert j(untyped.step.output) == BAD  # left buffered for a wait that takes it
    # Only junk buffered: the typed wait parks and the junk stays.
    await signal(store, "typed:4", BAD)
    await parked(store, SignalWait("typed:4", schema=ENCODED))


async def test_a_typed_message_wait_refuses_and_skips_what_does_not_fit(store: Store) -> None:
    claimed = await leased(store)
    run_id = claimed.run.id
    assert await store.send_message(run_id, "decision", orjson.dumps(BAD)) == "queued"
    wait = typed_wait(MessageWait("decision", schema=ENCODED))
    assert (await store.park(claimed.lease, wait)).outcome == "parked"  # the junk stays
    with pytest.raises(tarry.PayloadInvalid, match=r"\$\.by: is required"):
        await store.send_message(run_id, "decision", orjson.dumps({"approved": False}))
    assert [(m.name, j(m.data), m.consumed_by) for m in await store.list_messages(run_id)] == [
        ("decision", BAD, None)
    ]
    assert await store.send_message(run_id, "other", orjson.dumps(BAD)) == "queued"
    assert await store.send_message(run_id, "decision", orjson.dumps(GOOD)) == "delivered"
    assert j((await steps_of(store, run_id))["wait"].output)["data"] == GOOD
    consumed = [m.consumed_by for m in await store.list_messages(run_id)]
    assert consumed == [None, None, "wait"]
