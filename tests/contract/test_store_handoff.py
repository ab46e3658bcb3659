"""A delivery that leases the run it wakes to a worker of the sending process
(``Handoff``), and a claim that returns the step summary of the runs it loads
without steps (``skip_steps``): on both stores, whose core both use."""

from __future__ import annotations

import orjson
import pytest

import tarry
from tarry.clock import ManualClock
from tarry.store.base import ClaimedRun, Handoff, Store

from .test_store_contract import LEASE, TOL, j, leased, parked_on, run_of, run_step, signal
from .test_store_operations import message_wait


async def parked_on_message(store: Store) -> ClaimedRun:
    """A new run with two steps done, parked on a message named ``next``."""
    claimed = await leased(store)
    await store.save_step(claimed.lease, run_step("a", output=1))
    await store.save_step(claimed.lease, run_step("b", output=2))
    result = await store.park(claimed.lease, message_wait("next"))
    assert result.outcome == "parked"
    return claimed


def handoff(workflow: str, *, asleep: bool = True) -> Handoff:
    """An offer of a worker that takes ``workflow``, where every run sleeps or none."""
    return Handoff("h4nd0ff", LEASE, [workflow], lambda run_id: asleep)


async def test_a_message_leases_the_run_it_wakes_to_the_worker_that_wants_it(
    store: Store, clock: ManualClock
) -> None:
    parked = await parked_on_message(store)
    run_id = parked.run.id
    offer = handoff(parked.run.workflow)
    assert await store.send_message(run_id, "next", b'{"n": 1}', handoff=offer) == "delivered"
    taken = offer.taken
    assert taken is not None
    assert (taken.run.id, taken.run.status, taken.lease.token) == (run_id, "running", "h4nd0ff")
    assert taken.run.due_at == pytest.approx(clock.now() + LEASE, abs=TOL)
    assert taken.steps == []
    assert taken.summary == await store.step_summary(run_id) == (3, 0)
    # Leased: no claim takes it, and its lease fences its writes as a claim's would.
    assert (await store.claim([parked.run.workflow], 10, LEASE)).runs == []
    await store.save_step(taken.lease, run_step("c", output=3))
    with pytest.raises(tarry.LeaseLost):
        await store.save_step(parked.lease, run_step("d"))
    await store.finish(taken.lease, "completed", b"6", None)
    assert (await run_of(store, run_id)).status == "completed"


async def test_a_run_of_a_workflow_the_worker_does_not_take_is_left_due_for_a_claim(
    store: Store,
) -> None:
    parked = await parked_on_message(store)
    offer = handoff("some-other-workflow")
    await store.send_message(parked.run.id, "next", b"{}", handoff=offer)
    assert offer.taken is None
    assert (await run_of(store, parked.run.id)).status == "queued"
    batch = await store.claim([parked.run.workflow], 10, LEASE)
    assert [c.run.id for c in batch.runs] == [parked.run.id]


async def test_a_run_not_asleep_in_the_worker_is_leased_with_its_steps(store: Store) -> None:
    parked = await parked_on_message(store)
    offer = handoff(parked.run.workflow, asleep=False)
    await store.send_message(parked.run.id, "next", b'{"n": 2}', handoff=offer)
    taken = offer.taken
    assert taken is not None and taken.summary is None
    assert taken.run.status == "running"
    steps = {s.key: s for s in taken.steps}
    assert sorted(steps) == ["a", "b", "m"]
    assert steps["m"].status == "completed" and j(steps["m"].output)["data"] == {"n": 2}


async def test_a_queued_message_wakes_nothing_and_takes_nothing(store: Store) -> None:
    claimed = await leased(store)
    offer = handoff(claimed.run.workflow)
    assert await store.send_message(claimed.run.id, "other", b"{}", handoff=offer) == "queued"
    assert offer.taken is None
    assert (await run_of(store, claimed.run.id)).status == "running"


async def test_a_signal_leases_the_run_it_wakes(store: Store) -> None:
    parked = await parked_on(store, "order-7")
    offer = handoff(parked.run.workflow)
    outcome = await signal(store, "order-7", {"ok": True}, handoff=offer)
    assert (outcome.status, outcome.run_id) == ("delivered", parked.run.id)
    assert offer.taken is not None and offer.taken.run.status == "running"
    assert offer.taken.summary == (1, 0)


async def test_a_message_to_an_ended_run_takes_nothing(store: Store) -> None:
    parked = await parked_on_message(store)
    run_id = parked.run.id
    await store.cancel(run_id, orjson.dumps({"type": "Cancelled", "message": "x"}))
    assert (await run_of(store, run_id)).status == "cancelled"  # parked: at once
    offer = handoff(parked.run.workflow)
    assert await store.send_message(run_id, "next", b"{}", handoff=offer) == "finished"
    assert offer.taken is None


async def test_a_claim_returns_the_summary_of_the_runs_it_loads_without_steps(
    store: Store,
) -> None:
    parked = await parked_on_message(store)
    await store.send_message(parked.run.id, "next", b"{}")  # due, for a claim
    batch = await store.claim([parked.run.workflow], 10, LEASE, skip_steps={parked.run.id})
    (claimed,) = batch.runs
    assert claimed.steps == []
    assert claimed.summary == (3, 0)
    # Loaded with its steps, it has no summary: the steps say it all.
    fresh = await leased(store)
    await store.save_step(fresh.lease, run_step("x"))
    await store.release(fresh.lease)
    (loaded,) = (await store.claim([fresh.run.workflow], 10, LEASE)).runs
    assert [s.key for s in loaded.steps] == ["x"] and loaded.summary is None
