"""``Store.start_leased``: a run inserted already leased to a worker of the starting
process (an eager start), on both stores, whichever of them ``App.start`` uses it on."""

from __future__ import annotations

import uuid

import orjson
import pytest

import tarry
from tarry.clock import ManualClock
from tarry.store.base import Lease, NewRun, Store, WorkflowConfig
from tarry.store.flow_records import FlowRules, RateRule

from .test_store_contract import LEASE, TOL, j, run_of, run_step, steps_of
from .test_store_operations import filing, send


def new_run(workflow: str, payload: object = None) -> NewRun:
    return NewRun(uuid.uuid4().hex, workflow, orjson.dumps({} if payload is None else payload))


async def test_a_leased_start_is_running_under_its_lease_until_the_lease_expires(
    store: Store, clock: ManualClock
) -> None:
    run = new_run("wf", {"n": 1})
    lease = Lease(run.id, "t0ken")
    got_id, created, row = await store.start_leased(run, lease, LEASE)
    assert (got_id, created) == (run.id, True)
    assert row is not None
    assert (row.id, row.workflow, row.status, j(row.payload)) == (run.id, "wf", "running", {"n": 1})
    assert row.due_at == pytest.approx(clock.now() + LEASE, abs=TOL)
    assert row.cancel_requested is False and row.ended_at is None
    stored = await run_of(store, run.id)
    assert (stored.status, stored.created_at) == ("running", row.created_at)
    # No claim takes it while the lease holds; the lease fences its writes.
    assert (await store.claim(["wf"], 10, LEASE)).runs == []
    await store.save_step(lease, run_step("a", output=1))
    assert j((await steps_of(store, run.id))["a"].output) == 1
    with pytest.raises(tarry.LeaseLost):
        await store.save_step(Lease(run.id, "other"), run_step("b"))
    # A worker that crashed before executing it leaves it to a claim at the expiry.
    clock.advance(LEASE + 0.1)
    batch = await store.claim(["wf"], 10, LEASE)
    assert [c.run.id for c in batch.runs] == [run.id]
    assert [s.key for s in batch.runs[0].steps] == ["a"]
    with pytest.raises(tarry.LeaseLost):
        await store.save_step(lease, run_step("b"))


async def test_a_leased_start_ends_like_a_claimed_run(store: Store) -> None:
    run = new_run("wf")
    lease = Lease(run.id, "t0ken")
    await store.start_leased(run, lease, LEASE)
    await store.finish(lease, "completed", b"3", None)
    ended = await run_of(store, run.id)
    assert (ended.status, j(ended.output)) == ("completed", 3)


async def test_an_existing_id_is_left_as_it_is(store: Store) -> None:
    run = new_run("wf", {"n": 1})
    assert await store.create_run(run) == (run.id, True)
    again = NewRun(run.id, "other", orjson.dumps({"n": 2}))
    assert await store.start_leased(again, Lease(run.id, "t0ken"), LEASE) == (run.id, False, None)
    stored = await run_of(store, run.id)
    assert (stored.workflow, stored.status, j(stored.payload)) == ("wf", "queued", {"n": 1})


async def test_a_workflow_with_flow_rules_is_queued_for_its_gate(store: Store) -> None:
    rules = FlowRules(rate=RateRule(limit=1, per=60.0))
    await store.sync_workflows([WorkflowConfig("gated", flow=rules)])
    run = new_run("gated")
    assert await store.start_leased(run, Lease(run.id, "t0ken"), LEASE) == (run.id, True, None)
    assert (await run_of(store, run.id)).status == "queued"
    batch = await store.claim(["gated"], 10, LEASE, flows={"gated": rules})
    assert [c.run.id for c in batch.runs] == [run.id]


async def test_a_leased_start_files_its_cancel_on_waiters(store: Store) -> None:
    cancel_on = filing("app/order.cancelled", match="data.orderId")
    await store.sync_workflows([WorkflowConfig("order", (), (cancel_on,))])
    run = new_run("order", {"orderId": 7})
    lease = Lease(run.id, "t0ken")
    await store.start_leased(run, lease, LEASE)
    outcome = await send(store, "app/order.cancelled", {"orderId": 7})
    assert outcome.cancelled == () and outcome.resumed == ()
    flagged = await run_of(store, run.id)
    assert flagged.status == "running" and flagged.cancel_requested
    assert (await store.renew([lease], LEASE)).cancel_requested == {run.id}
