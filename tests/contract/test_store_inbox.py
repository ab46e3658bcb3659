"""The Store contract for the approvals inbox, on both stores: the typed waits of runs
not ended (signal, message, token, and each typed condition of a wait on several),
soonest deadline first and those without one last, counted once per waiting step;
untyped waits, answered waits and cancelled runs are not in it."""

from __future__ import annotations

import orjson

from tarry.clock import ManualClock
from tarry.store.base import MessageWait, SignalWait, Store, WaitCondition, WaitSpec
from tarry.store.token_records import TokenWait

from .test_store_contract import leased, parked_on, signal

SCHEMA = orjson.dumps(
    {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
)


def wait(
    step: str, conditions: tuple[WaitCondition, ...], deadline: float | None, kind: str = "signal"
) -> WaitSpec:
    shown = {"kind": kind, "step": step, "key": None, "expires_at": deadline}
    return WaitSpec(
        step,
        kind,  # type: ignore[arg-type]
        deadline,
        orjson.dumps(shown),
        conditions,
        indexed=kind == "any",
        started_at=None,
    )


async def park(store: Store, spec: WaitSpec) -> str:
    claimed = await leased(store)
    assert (await store.park(claimed.lease, spec)).outcome == "parked"
    return claimed.run.id


async def test_the_inbox_lists_typed_waits_soonest_deadline_first(
    store: Store, clock: ManualClock
) -> None:
    now = clock.now()
    assert (await store.inbox()).waits == [] and await store.inbox_count() == 0
    late = await park(store, wait("late", (SignalWait("k:late", schema=SCHEMA),), now + 900))
    reply = MessageWait("reply", schema=SCHEMA)
    never = await park(store, wait("never", (reply,), None, "message"))
    soon = await park(store, wait("soon", (SignalWait("k:soon", schema=SCHEMA),), now + 60))
    await parked_on(store, "k:untyped")  # a wait without a schema: a system's, not a person's
    found = await store.inbox()
    assert [w.run_id for w in found.waits] == [soon, late, never]
    assert found.total == 3 and await store.inbox_count() == 3
    first = found.waits[0]
    assert (first.step, first.kind, first.key, first.index) == ("soon", "signal", "k:soon", None)
    assert orjson.loads(first.schema) == orjson.loads(SCHEMA)
    assert first.expires_at == now + 60 and first.workflow
    message = found.waits[2]
    assert (message.kind, message.key, message.expires_at) == ("message", "reply", None)
    assert (await store.inbox(limit=1)).waits[0].run_id == soon

    # answered and cancelled runs leave it
    await signal(store, "k:soon", {"n": 1})
    await store.cancel(late, orjson.dumps({"type": "Cancelled", "message": "no"}))
    assert [w.run_id for w in (await store.inbox()).waits] == [never]
    assert await store.inbox_count() == 1


async def test_a_wait_on_several_conditions_is_one_step_to_answer(store: Store) -> None:
    conditions = (
        SignalWait("k:any", schema=SCHEMA),
        TokenWait("0" * 32, "approve", schema=SCHEMA),
        SignalWait("k:plain"),
    )
    run_id = await park(store, wait("choose", conditions, None, "any"))
    found = await store.inbox()
    assert [(w.run_id, w.index, w.kind, w.key, w.name) for w in found.waits] == [
        (run_id, 0, "signal", "k:any", "k:any"),
        (run_id, 1, "token", "0" * 32, "0" * 32),  # no such token stored: its id
    ]
    assert {w.step_kind for w in found.waits} == {"any"}
    assert found.total == 1 and await store.inbox_count() == 1
