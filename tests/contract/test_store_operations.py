"""The Store contract, continued: events, workflows, mailboxes, invoke and cancellation.

Like ``test_store_contract.py`` (whose helpers it shares), every test drives one
store, SQLite or PostgreSQL via the ``database_url`` fixture, through the methods
of ``tarry.store.base.Store`` only, on the ``ManualClock`` of ``conftest.py``:
a window or a retry time passes by ``clock.advance``, never by sleeping.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
import pytest

import tarry
from tarry.clock import ManualClock
from tarry.conditions import EventCondition
from tarry.store.base import (
    EventOutcome,
    EventWait,
    Filing,
    InvokeWait,
    MessageWait,
    NewEvent,
    NewRun,
    SignalWait,
    StepSender,
    Store,
    WaitCondition,
    WaitSpec,
    WorkflowConfig,
)
from tarry.store.matching import resolve_filing

from .test_store_contract import (
    LEASE,
    TOL,
    create,
    j,
    leased,
    parked_on,
    reclaim,
    run_of,
    run_step,
    signal,
    signal_wait,
    sleep_wait,
    stale_and_fresh,
    steps_of,
)

# -- helpers ---------------------------------------------------------------------------


def filing(
    event: str,
    *,
    match: str | None = None,
    if_: str | None = None,
    trigger: dict[str, Any] | None = None,
) -> Filing:
    """An event condition in the store's form, the way a wait or ``cancel_on`` builds
    it; with ``trigger``, its equality against the trigger is resolved (as a wait's is)."""
    built = EventCondition.build(event, match, if_, "test").filing()
    return built if trigger is None else resolve_filing(built, trigger)


def start_trigger(workflow: str, payload: Any) -> dict[str, Any]:
    """The trigger of a run from ``App.start``: the stand-in event of its payload."""
    return {"name": workflow, "data": payload}


def wait_on(
    kind: Any,
    *conditions: WaitCondition,
    step: str = "wait",
    deadline: float | None = None,
    indexed: bool = False,
) -> WaitSpec:
    key = None
    if len(conditions) == 1:
        cond = conditions[0]
        if isinstance(cond, SignalWait):
            key = cond.key
        elif isinstance(cond, EventWait):
            key = cond.filing.event
        elif isinstance(cond, MessageWait):
            key = cond.name
        else:
            key = cond.child.id
    shown = {"kind": kind, "step": step, "key": key, "expires_at": deadline}
    # No started_at: the store stamps the wait's step with its own clock's now.
    return WaitSpec(step, kind, deadline, orjson.dumps(shown), conditions, indexed)


def event_wait(
    f: Filing,
    *,
    step: str = "wait",
    deadline: float | None = None,
    since: float | None = None,
    exclude: tuple[str, ...] = (),
) -> WaitSpec:
    return wait_on("event", EventWait(f, since, exclude), step=step, deadline=deadline)


def message_wait(name: str | None = None, *, step: str = "m") -> WaitSpec:
    return wait_on("message", MessageWait(name), step=step)


def invoke_wait(child: NewRun, *, step: str = "inv") -> WaitSpec:
    return wait_on("invoke", InvokeWait(child), step=step)


async def send(
    store: Store,
    name: str,
    data: Any = None,
    *,
    event_id: str | None = None,
    dedupe_seconds: float = 60.0,
    sender: StepSender | None = None,
) -> EventOutcome:
    """Send an event; with ``event_id`` (the sender's own id) it is deduplicated."""
    event = NewEvent(
        event_id or uuid.uuid4().hex,
        name,
        orjson.dumps({} if data is None else data),
        dedupe=event_id is not None,
    )
    outcome = await store.send_event(event, dedupe_seconds=dedupe_seconds, sender=sender)
    assert outcome.event_id == event.id
    return outcome


async def parked(store: Store, spec: WaitSpec, **options: Any) -> tuple[str, Any]:
    """A new run of its own workflow (``options`` for ``leased``), parked on ``spec``."""
    claimed = await leased(store, **options)
    result = await store.park(claimed.lease, spec)
    assert result.outcome == "parked"
    return claimed.run.id, claimed


async def parked_with_payload(store: Store, payload: Any, spec_for: Any) -> str:
    """A run started with ``payload`` parked on ``spec_for(trigger)``."""
    workflow = f"wf-{uuid.uuid4().hex[:8]}"
    run_id = await create(store, workflow, payload)
    batch = await store.claim([workflow], 10, LEASE)
    assert [c.run.id for c in batch.runs] == [run_id]
    result = await store.park(batch.runs[0].lease, spec_for(start_trigger(workflow, payload)))
    assert result.outcome == "parked"
    return run_id


async def runs_of(store: Store, workflow: str) -> list[Any]:
    return await store.list_runs(status=None, workflow=workflow, limit=100, cursor=None)


async def events(store: Store, name: str | None = None, **options: Any) -> list[Any]:
    options.setdefault("limit", 100)
    options.setdefault("cursor", None)
    return await store.list_events(name=name, **options)


def assert_resumed(run: Any, clock: ManualClock) -> None:
    """The run is queued, due now by the store's clock."""
    assert run.status == "queued" and run.waiting_for is None
    assert run.due_at is not None and run.due_at <= clock.now() + TOL


def assert_cancelled(run: Any, reason: bytes | None = None) -> None:
    assert run.status == "cancelled"
    assert run.ended_at is not None and run.due_at is None and run.waiting_for is None
    if reason is not None:
        assert j(run.error) == j(reason)


# -- send_event ------------------------------------------------------------------------


async def test_send_event_stores_the_event(store: Store, clock: ManualClock) -> None:
    before = clock.now()
    outcome = await send(store, "app/account.created", {"userId": 7, "tags": ["a"]})
    assert outcome.duplicate is False
    assert (outcome.started, outcome.resumed, outcome.cancelled) == ((), (), ())
    rows = await events(store)
    assert len(rows) == 1
    row = rows[0]
    assert (row.id, row.name, j(row.data)) == (
        outcome.event_id,
        "app/account.created",
        {"userId": 7, "tags": ["a"]},
    )
    assert before - TOL <= row.ts <= clock.now() + TOL
    # An event that nothing listens for starts no run.
    assert await store.list_runs(status=None, workflow=None, limit=10, cursor=None) == []


async def test_send_event_starts_a_run_of_every_workflow_it_triggers(
    store: Store, clock: ManualClock
) -> None:
    await store.sync_workflows(
        [
            WorkflowConfig("any-plan", (("app/signup", None),)),
            WorkflowConfig("pro-only", (("app/signup", 'event.data.plan == "pro"'),)),
            WorkflowConfig("two-events", (("app/signup", None), ("app/upgrade", None))),
            WorkflowConfig("elsewhere", (("app/other", None),)),
        ]
    )
    free = await send(store, "app/signup", {"plan": "free", "user": 1})
    assert free.duplicate is False and free.resumed == ()
    assert len(free.started) == 2 and len(set(free.started)) == 2
    runs = {(await run_of(store, run_id)).workflow: run_id for run_id in free.started}
    assert set(runs) == {"any-plan", "two-events"}
    for workflow, run_id in runs.items():
        run = await run_of(store, run_id)
        assert (run.workflow, run.status) == (workflow, "queued")
        assert j(run.payload) == {"plan": "free", "user": 1}
        trigger = j(run.trigger)
        assert (trigger["name"], trigger["data"], trigger["id"]) == (
            "app/signup",
            {"plan": "free", "user": 1},
            free.event_id,
        )
        assert run.due_at is not None and run.due_at <= clock.now() + TOL

    pro = await send(store, "app/signup", {"plan": "pro"})
    workflows = sorted([(await run_of(store, r)).workflow for r in pro.started])
    assert workflows == ["any-plan", "pro-only", "two-events"]
    upgrade = await send(store, "app/upgrade", {"plan": "pro"})
    assert [(await run_of(store, r)).workflow for r in upgrade.started] == ["two-events"]
    assert (await send(store, "app/nothing", {})).started == ()

    # The started runs are ordinary queued runs, claimable by their workflow.
    batch = await store.claim(["any-plan", "pro-only", "two-events", "elsewhere"], 20, LEASE)
    assert {c.run.id for c in batch.runs} == {*free.started, *pro.started, *upgrade.started}
    assert len(await runs_of(store, "elsewhere")) == 0


async def test_send_event_resumes_the_parked_runs_whose_wait_matches(
    store: Store, clock: ManualClock
) -> None:
    # match: the incoming data.userId equals the run's own trigger's.
    by_match = await parked_with_payload(
        store,
        {"userId": 7},
        lambda trigger: event_wait(filing("app/onboarded", match="data.userId", trigger=trigger)),
    )
    also_7 = await parked_with_payload(
        store,
        {"userId": 7},
        lambda trigger: event_wait(filing("app/onboarded", match="data.userId", trigger=trigger)),
    )
    # if_ with an indexable equality to a literal, and if_ with none.
    by_literal, _ = await parked(
        store,
        event_wait(
            filing(
                "app/onboarded",
                if_="async.data.userId == 8 && async.data.score > 3",
                trigger={},
            )
        ),
    )
    by_scan, _ = await parked(
        store, event_wait(filing("app/onboarded", if_="async.data.score > 100", trigger={}))
    )
    any_of_name, _ = await parked(store, event_wait(filing("app/other")))

    outcome = await send(store, "app/onboarded", {"userId": 9, "score": 5})
    assert outcome.resumed == () and outcome.started == ()
    outcome = await send(store, "app/onboarded", {"userId": 8, "score": 1})
    assert outcome.resumed == ()
    for run_id in (by_match, also_7, by_literal, by_scan, any_of_name):
        assert (await run_of(store, run_id)).status == "waiting"

    outcome = await send(store, "app/onboarded", {"userId": 7, "score": 1})
    assert sorted(outcome.resumed) == sorted([by_match, also_7])
    for run_id in (by_match, also_7):
        assert_resumed(await run_of(store, run_id), clock)
        step = (await steps_of(store, run_id))["wait"]
        assert (step.kind, step.status) == ("event", "completed")
        value = j(step.output)
        assert (value["name"], value["data"], value["id"]) == (
            "app/onboarded",
            {"userId": 7, "score": 1},
            outcome.event_id,
        )
        assert value["ts"] == pytest.approx(clock.now(), abs=TOL)
        assert step.ended_at is not None

    outcome = await send(store, "app/onboarded", {"userId": 8, "score": 200})
    assert sorted(outcome.resumed) == sorted([by_literal, by_scan])
    assert j((await steps_of(store, by_literal))["wait"].output)["data"] == {
        "userId": 8,
        "score": 200,
    }
    outcome = await send(store, "app/other", {"anything": True})
    assert outcome.resumed == (any_of_name,)

    # The waiters went with the wake-up: a repeat resumes nothing.
    again = await send(store, "app/onboarded", {"userId": 7, "score": 200})
    assert again.resumed == ()
    assert (await steps_of(store, by_match))["wait"].status == "completed"


async def test_an_event_wait_looks_back_at_events_already_received(store: Store) -> None:
    claimed = await leased(store)
    since = claimed.run.created_at
    early = await send(store, "app/reply", {"to": "c1", "n": 1})
    second = await send(store, "app/reply", {"to": "c1", "n": 2})
    await send(store, "app/reply", {"to": "other", "n": 3})
    f = filing("app/reply", if_='async.data.to == "c1"', trigger={})

    # Without a lookback, only later events count.
    result = await store.park(claimed.lease, event_wait(f, step="new-only"))
    assert result.outcome == "parked"
    assert (await send(store, "app/reply", {"to": "c1", "n": 4})).resumed == (claimed.run.id,)

    claimed = await reclaim(store, claimed)
    # With one, the oldest match since the run began resolves the wait at once ...
    result = await store.park(claimed.lease, event_wait(f, step="first", since=since))
    assert result.outcome == "resolved" and result.step is not None
    assert (result.step.key, result.step.kind, result.step.status) == (
        "first",
        "event",
        "completed",
    )
    assert j(result.step.output)["id"] == early.event_id
    assert j(result.step.output)["data"] == {"to": "c1", "n": 1}
    # ... minus the events it is told to skip (the trigger, earlier answers).
    result = await store.park(
        claimed.lease, event_wait(f, step="second", since=since, exclude=(early.event_id,))
    )
    assert result.outcome == "resolved" and result.step is not None
    assert j(result.step.output)["id"] == second.event_id
    assert (await run_of(store, claimed.run.id)).status == "running"
    await store.save_step(claimed.lease, run_step("after"))


async def test_an_event_id_seen_within_the_window_is_a_duplicate(
    store: Store, clock: ManualClock
) -> None:
    await store.sync_workflows([WorkflowConfig("on-order", (("app/order", None),))])
    waiting, _ = await parked(store, event_wait(filing("app/order")))

    first = await send(store, "app/order", {"n": 1}, event_id="order-1")
    assert first.duplicate is False and len(first.started) == 1
    assert first.resumed == (waiting,)
    waiting2, _ = await parked(store, event_wait(filing("app/order")))

    again = await send(store, "app/order", {"n": 2}, event_id="order-1")
    assert again.duplicate is True
    assert (again.started, again.resumed, again.cancelled) == ((), (), ())
    assert [r.id for r in await runs_of(store, "on-order")] == list(first.started)
    assert (await run_of(store, waiting2)).status == "waiting"
    rows = await events(store, "app/order")
    assert [(r.id, j(r.data)) for r in rows] == [("order-1", {"n": 1})]

    # Another id is another event.
    other = await send(store, "app/order", {"n": 3}, event_id="order-2")
    assert other.duplicate is False and len(other.started) == 1
    assert other.resumed == (waiting2,)

    # Within a window the id is a duplicate still; past it, the id is new again.
    clock.advance(0.005)
    still = await send(store, "app/order", {"n": 4}, event_id="order-1", dedupe_seconds=0.01)
    assert still.duplicate is True
    clock.advance(0.045)
    late = await send(store, "app/order", {"n": 4}, event_id="order-1", dedupe_seconds=0.01)
    assert late.duplicate is False and len(late.started) == 1
    assert len(await runs_of(store, "on-order")) == 3


async def test_cancel_on_events_cancel_parked_runs_and_flag_leased_ones(store: Store) -> None:
    cancel_on = filing("app/order.cancelled", match="data.orderId")
    assert cancel_on.event_path == "data.orderId"  # resolved per run, when it is created
    await store.sync_workflows([WorkflowConfig("order", (), (cancel_on,))])
    ids = {n: await create(store, "order", {"orderId": n}) for n in (1, 2, 3, 4)}
    batch = await store.claim(["order"], 2, LEASE)
    assert len(batch.runs) == 2
    claimed = {c.run.id: c for c in batch.runs}
    queued_ids = [run_id for run_id in ids.values() if run_id not in claimed]
    leased_ids = list(claimed)
    # One leased run parks on a signal, the other stays leased.
    parked_id, busy_id = leased_ids
    assert (await store.park(claimed[parked_id].lease, signal_wait("order-key"))).outcome == (
        "parked"
    )
    order_of = {run_id: n for n, run_id in ids.items()}

    # Another order's cancellation, or another event, touches nothing.
    unrelated = await send(store, "app/order.cancelled", {"orderId": 99})
    assert (unrelated.cancelled, unrelated.resumed, unrelated.started) == ((), (), ())
    assert (
        await send(store, "app/order.shipped", {"orderId": order_of[parked_id]})
    ).cancelled == ()

    # A parked run is cancelled at once, its waiters removed.
    outcome = await send(store, "app/order.cancelled", {"orderId": order_of[parked_id]})
    assert outcome.cancelled == (parked_id,) and outcome.resumed == ()
    run = await run_of(store, parked_id)
    assert_cancelled(run)
    assert run.error is not None
    assert (await steps_of(store, parked_id))["wait"].status == "cancelled"
    assert (await signal(store, "order-key", 1)).status == "buffered"

    # A queued run is cancelled at once too.
    outcome = await send(store, "app/order.cancelled", {"orderId": order_of[queued_ids[0]]})
    assert outcome.cancelled == (queued_ids[0],)
    assert_cancelled(await run_of(store, queued_ids[0]))

    # A leased run is flagged, to stop at its next step.
    outcome = await send(store, "app/order.cancelled", {"orderId": order_of[busy_id]})
    assert outcome.resumed == () and outcome.started == ()
    run = await run_of(store, busy_id)
    assert run.status == "running" and run.cancel_requested
    lease = claimed[busy_id].lease
    assert (await store.renew([lease], LEASE)).cancel_requested == {busy_id}
    assert await store.save_step(lease, run_step("next")) is True
    await store.honor_cancel(lease)
    run = await run_of(store, busy_id)
    assert_cancelled(run)
    assert run.error is not None

    # The last order was never cancelled.
    assert (await run_of(store, queued_ids[1])).status == "queued"
    assert not (await run_of(store, queued_ids[1])).cancel_requested


async def test_send_event_from_a_step_is_written_with_the_step(
    store: Store, clock: ManualClock
) -> None:
    await store.sync_workflows([WorkflowConfig("listener", (("app/ping", None),))])
    stale, fresh = await stale_and_fresh(store, clock)
    run_id = fresh.run.id
    before = await store.get_run(run_id)
    waiting, _ = await parked(store, event_wait(filing("app/ping")))

    # A sender whose lease was taken over sends nothing and stores nothing.
    with pytest.raises(tarry.LeaseLost):
        await send(store, "app/ping", {"n": 0}, sender=StepSender(stale, "send", clock.now()))
    assert await events(store) == []
    assert await runs_of(store, "listener") == []
    assert (await run_of(store, waiting)).status == "waiting"
    assert await store.get_run(run_id) == before

    started = clock.now()
    outcome = await send(
        store, "app/ping", {"n": 1}, sender=StepSender(fresh.lease, "send", started)
    )
    assert len(outcome.started) == 1 and outcome.resumed == (waiting,)
    step = (await steps_of(store, run_id))["send"]
    assert (step.kind, step.status) == ("send_event", "completed")
    assert j(step.output) == [outcome.event_id]
    assert step.started_at == pytest.approx(started, abs=TOL)
    assert step.ended_at is not None
    assert [r.id for r in await events(store)] == [outcome.event_id]
    # The sender keeps its lease.
    assert (await run_of(store, run_id)).status == "running"
    assert await store.save_step(fresh.lease, run_step("after")) is False


# -- sync_workflows --------------------------------------------------------------------


async def test_sync_workflows_replaces_only_the_named_workflows(store: Store) -> None:
    stop = filing("app/stop", match="data.k")
    await store.sync_workflows(
        [
            WorkflowConfig("a", (("app/a", None), ("app/shared", None)), (stop,)),
            WorkflowConfig("b", (("app/b", None), ("app/shared", None)), (stop,)),
        ]
    )
    # Syncing the same thing again duplicates nothing.
    await store.sync_workflows(
        [WorkflowConfig("b", (("app/b", None), ("app/shared", None)), (stop,))]
    )
    shared = await send(store, "app/shared")
    assert sorted([(await run_of(store, r)).workflow for r in shared.started]) == ["a", "b"]

    await store.sync_workflows([WorkflowConfig("a", (("app/a2", "event.data.go == true"),))])
    assert (await send(store, "app/a")).started == ()
    assert (await send(store, "app/a2", {"go": False})).started == ()
    a2 = await send(store, "app/a2", {"go": True})
    assert [(await run_of(store, r)).workflow for r in a2.started] == ["a"]
    shared = await send(store, "app/shared")
    assert [(await run_of(store, r)).workflow for r in shared.started] == ["b"]
    b = await send(store, "app/b")
    assert [(await run_of(store, r)).workflow for r in b.started] == ["b"]

    # cancel_on was replaced too: new runs of "a" no longer stop on app/stop; "b"'s do.
    run_a = await create(store, "a", {"k": 1})
    run_b = await create(store, "b", {"k": 1})
    outcome = await send(store, "app/stop", {"k": 1})
    assert outcome.cancelled == (run_b,)
    assert (await run_of(store, run_a)).status == "queued"
    assert_cancelled(await run_of(store, run_b))

    # An empty config leaves the workflow started by nothing.
    await store.sync_workflows([WorkflowConfig("b")])
    assert (await send(store, "app/b")).started == ()
    run_b = await create(store, "b", {"k": 2})
    assert (await send(store, "app/stop", {"k": 2})).cancelled == ()
    assert (await run_of(store, run_b)).status == "queued"


# -- mailboxes -------------------------------------------------------------------------


async def test_send_message_to_an_unknown_or_ended_run(store: Store) -> None:
    assert await store.send_message("no-such-run", "note", b"1") == "not_found"
    for status in ("completed", "failed", "cancelled"):
        claimed = await leased(store)
        output = orjson.dumps("out") if status == "completed" else None
        error = None if status == "completed" else orjson.dumps({"message": status})
        assert await store.finish(claimed.lease, status, output, error) == status
        assert await store.send_message(claimed.run.id, "note", b"1") == "finished"
        assert await store.list_messages(claimed.run.id) == []
    cancelled = await create(store)
    await store.cancel(cancelled, orjson.dumps({"message": "stop"}))
    assert await store.send_message(cancelled, "note", b"1") == "finished"
    assert await store.list_messages(cancelled) == []
    assert await store.list_messages("no-such-run") == []


async def test_send_message_queues_for_a_run_not_waiting_on_its_mailbox(
    store: Store, clock: ManualClock
) -> None:
    queued = await create(store)
    running = await leased(store)
    on_signal = await parked_on(store, "k")
    for run_id in (queued, running.run.id, on_signal.run.id):
        assert await store.send_message(run_id, "note", orjson.dumps({"to": run_id})) == "queued"
        [message] = await store.list_messages(run_id)
        assert (message.name, j(message.data), message.consumed_by) == (
            "note",
            {"to": run_id},
            None,
        )
        assert message.sent_at == pytest.approx(clock.now(), abs=TOL)
    assert (await run_of(store, queued)).status == "queued"
    assert (await run_of(store, running.run.id)).status == "running"
    assert (await run_of(store, on_signal.run.id)).status == "waiting"


async def test_send_message_delivers_to_a_parked_message_wait(
    store: Store, clock: ManualClock
) -> None:
    run_id, claimed = await parked(store, message_wait())
    assert (await steps_of(store, run_id))["m"].status == "waiting"
    sent = clock.now()
    assert await store.send_message(run_id, "note", orjson.dumps({"text": "hi"})) == "delivered"
    assert_resumed(await run_of(store, run_id), clock)
    step = (await steps_of(store, run_id))["m"]
    assert (step.kind, step.status) == ("message", "completed")
    value = j(step.output)
    assert (value["name"], value["data"]) == ("note", {"text": "hi"})
    assert value["sent_at"] == pytest.approx(sent, abs=TOL)
    [message] = await store.list_messages(run_id)
    assert (message.name, message.consumed_by) == ("note", "m")
    assert message.sent_at == pytest.approx(value["sent_at"], abs=TOL)

    # The waiter was consumed: the next message queues.
    assert await store.send_message(run_id, "note", b"2") == "queued"
    again = await reclaim(store, claimed)
    assert [(s.key, s.status) for s in again.steps] == [("m", "completed")]


async def test_a_message_wait_with_a_name_takes_only_that_name(store: Store) -> None:
    run_id, claimed = await parked(store, message_wait("go"))
    assert await store.send_message(run_id, "other", b'"o1"') == "queued"
    assert (await run_of(store, run_id)).status == "waiting"
    assert await store.send_message(run_id, "go", b'"g1"') == "delivered"
    assert j((await steps_of(store, run_id))["m"].output)["data"] == "g1"
    assert await store.send_message(run_id, "go", b'"g2"') == "queued"
    assert await store.send_message(run_id, "other", b'"o2"') == "queued"

    claimed = await reclaim(store, claimed)
    # Queued messages answer at once: the oldest of the name ...
    result = await store.park(claimed.lease, message_wait("go", step="m2"))
    assert result.outcome == "resolved" and result.step is not None
    assert (result.step.kind, result.step.status) == ("message", "completed")
    assert (j(result.step.output)["name"], j(result.step.output)["data"]) == ("go", "g2")
    # ... or the oldest of any name.
    result = await store.park(claimed.lease, message_wait(step="m3"))
    assert result.step is not None and j(result.step.output)["data"] == "o1"
    result = await store.park(claimed.lease, message_wait(step="m4"))
    assert result.step is not None and j(result.step.output)["data"] == "o2"
    assert (await run_of(store, run_id)).status == "running"
    # None left: the next wait parks.
    assert (await store.park(claimed.lease, message_wait("go", step="m5"))).outcome == "parked"

    rows = await store.list_messages(run_id)
    assert [(m.name, j(m.data), m.consumed_by) for m in rows] == [
        ("other", "o1", "m3"),
        ("go", "g1", "m"),
        ("go", "g2", "m2"),
        ("other", "o2", "m4"),
    ]


async def test_list_messages_is_oldest_first_with_who_consumed_each(store: Store) -> None:
    claimed = await leased(store)
    run_id = claimed.run.id
    for name, n in (("a", 1), ("b", 2), ("c", 3), ("b", 4)):
        assert await store.send_message(run_id, name, orjson.dumps(n)) == "queued"
    rows = await store.list_messages(run_id)
    assert [(m.name, j(m.data), m.consumed_by) for m in rows] == [
        ("a", 1, None),
        ("b", 2, None),
        ("c", 3, None),
        ("b", 4, None),
    ]
    times = [m.sent_at for m in rows]
    assert times == sorted(times)

    result = await store.park(claimed.lease, message_wait("c", step="take-c"))
    assert result.outcome == "resolved"
    result = await store.park(claimed.lease, message_wait("b", step="take-b"))
    assert result.outcome == "resolved"
    rows = await store.list_messages(run_id)
    assert [(m.name, j(m.data), m.consumed_by) for m in rows] == [
        ("a", 1, None),
        ("b", 2, "take-b"),
        ("c", 3, "take-c"),
        ("b", 4, None),
    ]
    # Another run's mailbox is its own.
    other = await create(store)
    assert await store.list_messages(other) == []


# -- list_events -----------------------------------------------------------------------


async def test_list_events_pages_newest_first_and_filters_by_name(store: Store) -> None:
    names = ["app/a", "app/b", "app/a", "app/a", "app/b"]
    sent = [await send(store, name, {"n": n}) for n, name in enumerate(names)]
    ids = [o.event_id for o in sent]

    rows = await events(store)
    assert [r.id for r in rows] == ids[::-1]
    assert [(r.name, j(r.data)) for r in rows] == [
        (name, {"n": n}) for n, name in reversed(list(enumerate(names)))
    ]
    seqs = [r.seq for r in rows]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 5
    assert [r.ts for r in rows] == sorted((r.ts for r in rows), reverse=True)

    pages: list[list[str]] = []
    cursor = None
    while True:
        page = await events(store, limit=2, cursor=cursor)
        if not page:
            break
        pages.append([r.id for r in page])
        cursor = page[-1].seq
    assert pages == [[ids[4], ids[3]], [ids[2], ids[1]], [ids[0]]]

    assert [r.id for r in await events(store, "app/a")] == [ids[3], ids[2], ids[0]]
    assert [r.id for r in await events(store, "app/a", limit=1)] == [ids[3]]
    assert [r.id for r in await events(store, "app/a", cursor=rows[1].seq)] == [ids[2], ids[0]]
    assert [r.id for r in await events(store, "app/b", cursor=rows[0].seq)] == [ids[1]]
    assert await events(store, "app/none") == []


# -- invoke ----------------------------------------------------------------------------


async def test_invoke_creates_the_child_and_its_end_resumes_the_parent(
    store: Store, clock: ManualClock
) -> None:
    parent = await leased(store)
    child = NewRun(
        f"{parent.run.id}.inv", "child-wf", orjson.dumps({"sku": 9}), None, parent.run.id
    )
    assert await store.get_run(child.id) is None

    result = await store.park(parent.lease, invoke_wait(child))
    assert result.outcome == "parked"
    run = await run_of(store, parent.run.id)
    assert run.status == "waiting"
    assert (await steps_of(store, parent.run.id))["inv"].status == "waiting"
    created = await run_of(store, child.id)
    assert (created.workflow, created.status, j(created.payload)) == (
        "child-wf",
        "queued",
        {"sku": 9},
    )

    batch = await store.claim(["child-wf"], 10, LEASE)
    assert [c.run.id for c in batch.runs] == [child.id]
    assert (await run_of(store, parent.run.id)).status == "waiting"
    assert await store.finish(batch.runs[0].lease, "completed", orjson.dumps(42), None) == (
        "completed"
    )

    assert_resumed(await run_of(store, parent.run.id), clock)
    step = (await steps_of(store, parent.run.id))["inv"]
    assert (step.kind, step.status) == ("invoke", "completed")
    assert j(step.output) == {"status": "completed", "output": 42, "error": None}
    again = await reclaim(store, parent)
    assert [(s.key, s.status) for s in again.steps] == [("inv", "completed")]


async def test_invoke_reports_a_child_that_failed_or_was_cancelled(
    store: Store, clock: ManualClock
) -> None:
    failing = await leased(store)
    child = NewRun(f"{failing.run.id}.inv", "child-wf", b"{}", None, failing.run.id)
    assert (await store.park(failing.lease, invoke_wait(child))).outcome == "parked"
    [claimed] = (await store.claim(["child-wf"], 10, LEASE)).runs
    error = orjson.dumps({"type": "StepFailed", "message": "boom"})
    assert await store.finish(claimed.lease, "failed", None, error) == "failed"
    assert_resumed(await run_of(store, failing.run.id), clock)
    assert j((await steps_of(store, failing.run.id))["inv"].output) == {
        "status": "failed",
        "output": None,
        "error": {"type": "StepFailed", "message": "boom"},
    }

    # A child cancelled while queued resumes its parent too.
    waiting = await leased(store)
    child = NewRun(f"{waiting.run.id}.inv", "child-wf", b"{}", None, waiting.run.id)
    assert (await store.park(waiting.lease, invoke_wait(child))).outcome == "parked"
    reason = orjson.dumps({"type": "Cancelled", "message": "not needed"})
    row = await store.cancel(child.id, reason)
    assert row is not None and row.status == "cancelled"
    assert_resumed(await run_of(store, waiting.run.id), clock)
    assert j((await steps_of(store, waiting.run.id))["inv"].output) == {
        "status": "cancelled",
        "output": None,
        "error": {"type": "Cancelled", "message": "not needed"},
    }


async def test_invoke_of_a_child_that_already_ended_resolves_at_once(store: Store) -> None:
    parent = await leased(store)
    child = NewRun(f"{parent.run.id}.inv", "child-wf", orjson.dumps({"n": 1}), None, parent.run.id)
    assert await store.create_run(child) == (child.id, True)
    [claimed] = (await store.claim(["child-wf"], 10, LEASE)).runs
    await store.finish(claimed.lease, "completed", orjson.dumps({"done": True}), None)

    # The park after (a replay whose child ended meanwhile) needs no waiting.
    other_payload = NewRun(child.id, "child-wf", orjson.dumps({"n": 2}), None, parent.run.id)
    result = await store.park(parent.lease, invoke_wait(other_payload))
    assert result.outcome == "resolved" and result.step is not None
    assert (result.step.key, result.step.kind, result.step.status) == ("inv", "invoke", "completed")
    assert j(result.step.output) == {"status": "completed", "output": {"done": True}, "error": None}
    assert (await steps_of(store, parent.run.id))["inv"].status == "completed"
    assert (await run_of(store, parent.run.id)).status == "running"
    await store.save_step(parent.lease, run_step("after"))
    # The existing child was left as it was.
    ended = await run_of(store, child.id)
    assert (ended.status, j(ended.payload)) == ("completed", {"n": 1})
    assert len(await runs_of(store, "child-wf")) == 1


async def test_a_stale_invoke_park_creates_no_child(store: Store, clock: ManualClock) -> None:
    stale, fresh = await stale_and_fresh(store, clock)
    child = NewRun(f"{fresh.run.id}.inv", "child-wf", b"{}", None, fresh.run.id)
    with pytest.raises(tarry.LeaseLost):
        await store.park(stale, invoke_wait(child))
    assert await store.get_run(child.id) is None
    assert (await run_of(store, fresh.run.id)).status == "running"
    assert (await steps_of(store, fresh.run.id)) == {}


# -- wait_for_any ----------------------------------------------------------------------


async def test_a_wait_on_any_is_resolved_by_the_first_and_withdraws_the_rest(
    store: Store, clock: ManualClock
) -> None:
    def any_wait(n: int) -> WaitSpec:
        return wait_on(
            "any",
            SignalWait(f"any-key-{n}"),
            EventWait(filing("app/any", if_=f"async.data.n == {n}", trigger={})),
            MessageWait("stop"),
            step="first",
            indexed=True,
        )

    by_signal, _ = await parked(store, any_wait(0))
    by_event, _ = await parked(store, any_wait(1))
    by_message, _ = await parked(store, any_wait(2))

    assert (await signal(store, "any-key-0", {"ok": 0})).run_id == by_signal
    assert (await send(store, "app/any", {"n": 1})).resumed == (by_event,)
    assert await store.send_message(by_message, "stop", b'"now"') == "delivered"
    for run_id in (by_signal, by_event, by_message):
        assert_resumed(await run_of(store, run_id), clock)
        assert (await steps_of(store, run_id))["first"].kind == "any"

    assert j((await steps_of(store, by_signal))["first"].output) == {"index": 0, "value": {"ok": 0}}
    woken = j((await steps_of(store, by_event))["first"].output)
    assert woken["index"] == 1 and woken["value"]["data"] == {"n": 1}
    woken = j((await steps_of(store, by_message))["first"].output)
    assert woken["index"] == 2 and woken["value"]["name"] == "stop"
    assert woken["value"]["data"] == "now"

    # The other conditions were withdrawn in the same transaction.
    assert (await signal(store, "any-key-1", 1)).status == "buffered"
    assert (await signal(store, "any-key-2", 1)).status == "buffered"
    assert (await send(store, "app/any", {"n": 0})).resumed == ()
    assert (await send(store, "app/any", {"n": 2})).resumed == ()
    assert await store.send_message(by_signal, "stop", b"1") == "queued"
    assert await store.send_message(by_event, "stop", b"1") == "queued"


# -- cancellation ----------------------------------------------------------------------


async def test_park_after_a_cancel_request_ends_the_run_cancelled(
    store: Store, clock: ManualClock
) -> None:
    reason = orjson.dumps({"type": "Cancelled", "message": "by operator"})
    waits = {
        "signal": signal_wait("cancel-key"),
        "sleep": sleep_wait(clock.now() + 60),
        "message": message_wait("go", step="wait"),
        "event": event_wait(filing("app/cancel-test")),
    }
    for name, spec in waits.items():
        claimed = await leased(store, workflow="wf")
        row = await store.cancel(claimed.run.id, reason)
        assert row is not None and row.status == "running" and row.cancel_requested, name
        result = await store.park(claimed.lease, spec)
        assert result.outcome == "cancelled", name
        run = await run_of(store, claimed.run.id)
        assert_cancelled(run, reason)
        # Nothing is left waiting, and the lease is gone.
        step = (await steps_of(store, claimed.run.id)).get(spec.step_key)
        assert step is None or step.status != "waiting", name
        with pytest.raises(tarry.LeaseLost):
            await store.save_step(claimed.lease, run_step("after"))
        assert await store.send_message(claimed.run.id, "go", b"1") == "finished"
    # No waiter was registered.
    assert (await signal(store, "cancel-key", 1)).status == "buffered"
    assert (await send(store, "app/cancel-test")).resumed == ()
    batch = await store.claim(["wf"], 10, LEASE)
    assert batch.runs == [] and batch.next_due is None


async def test_park_after_a_cancel_on_event_ends_the_run_cancelled(store: Store) -> None:
    await store.sync_workflows(
        [WorkflowConfig("order", (), (filing("app/stop", match="data.id"),))]
    )
    run_id = await create(store, "order", {"id": 5})
    [claimed] = (await store.claim(["order"], 10, LEASE)).runs
    await send(store, "app/stop", {"id": 5})
    assert (await run_of(store, run_id)).cancel_requested
    result = await store.park(claimed.lease, signal_wait("stop-key"))
    assert result.outcome == "cancelled"
    assert_cancelled(await run_of(store, run_id))
    assert (await signal(store, "stop-key", 1)).status == "buffered"


async def test_finish_returns_the_status_the_run_ended_with(store: Store) -> None:
    for status in ("completed", "failed", "cancelled"):
        claimed = await leased(store)
        output = orjson.dumps("out") if status == "completed" else None
        error = None if status == "completed" else orjson.dumps({"message": status})
        assert await store.finish(claimed.lease, status, output, error) == status
        assert (await run_of(store, claimed.run.id)).status == status

    # A pending cancellation wins over completing.
    reason = orjson.dumps({"type": "Cancelled", "message": "too late"})
    claimed = await leased(store)
    await store.cancel(claimed.run.id, reason)
    ended = await store.finish(claimed.lease, "completed", orjson.dumps({"shipped": 1}), None)
    assert ended == "cancelled"
    run = await run_of(store, claimed.run.id)
    assert_cancelled(run, reason)
    with pytest.raises(tarry.LeaseLost):
        await store.finish(claimed.lease, "completed", orjson.dumps(1), None)

    # A bail after a cancel request ends cancelled too.
    claimed = await leased(store)
    await store.cancel(claimed.run.id, reason)
    bail = orjson.dumps({"type": "Bailed", "message": "no"})
    assert await store.finish(claimed.lease, "cancelled", None, bail) == "cancelled"
    assert (await run_of(store, claimed.run.id)).status == "cancelled"


async def test_a_child_whose_finish_was_cancelled_tells_its_parent_so(
    store: Store, clock: ManualClock
) -> None:
    parent = await leased(store)
    child = NewRun(f"{parent.run.id}.inv", "child-wf", b"{}", None, parent.run.id)
    assert (await store.park(parent.lease, invoke_wait(child))).outcome == "parked"
    [claimed] = (await store.claim(["child-wf"], 10, LEASE)).runs
    reason = orjson.dumps({"type": "Cancelled", "message": "stop child"})
    await store.cancel(child.id, reason)
    assert await store.finish(claimed.lease, "completed", orjson.dumps(1), None) == "cancelled"
    assert_resumed(await run_of(store, parent.run.id), clock)
    woken = j((await steps_of(store, parent.run.id))["inv"].output)
    assert woken["status"] == "cancelled" and woken["error"] == j(reason)


async def test_retry_step_after_a_cancel_request_ends_the_run_cancelled(
    store: Store, clock: ManualClock
) -> None:
    claimed = await leased(store, workflow="wf")
    assert await store.retry_step(claimed.lease, run_step("s", status="retrying"), clock.now()) is (
        False
    )
    assert (await run_of(store, claimed.run.id)).status == "queued"
    claimed = await reclaim(store, claimed)

    reason = orjson.dumps({"type": "Cancelled", "message": "stop retrying"})
    row = await store.cancel(claimed.run.id, reason)
    assert row is not None and row.status == "running"
    cancelled = await store.retry_step(
        claimed.lease, run_step("s", status="retrying", attempts=2), clock.now()
    )
    assert cancelled is True
    assert_cancelled(await run_of(store, claimed.run.id), reason)
    with pytest.raises(tarry.LeaseLost):
        await store.save_step(claimed.lease, run_step("after"))
    batch = await store.claim(["wf"], 10, LEASE)
    assert batch.runs == [] and batch.next_due is None


async def test_cancel_a_parked_sleep(store: Store, clock: ManualClock) -> None:
    reason = orjson.dumps({"message": "wake up never"})
    claimed = await leased(store, workflow="wf")
    assert (await store.park(claimed.lease, sleep_wait(clock.now() + 60))).outcome == "parked"
    row = await store.cancel(claimed.run.id, reason)
    assert row is not None
    assert_cancelled(row, reason)
    assert await run_of(store, claimed.run.id) == row
    assert (await steps_of(store, claimed.run.id))["nap"].status == "cancelled"
    batch = await store.claim(["wf"], 10, LEASE)
    assert batch.runs == [] and batch.next_due is None


async def test_cancel_a_run_waiting_on_a_signal_and_more(store: Store) -> None:
    reason = orjson.dumps({"message": "stop waiting"})
    claimed = await parked_on(store, "wait-key")
    row = await store.cancel(claimed.run.id, reason)
    assert row is not None
    assert_cancelled(row, reason)
    assert (await steps_of(store, claimed.run.id))["wait"].status == "cancelled"
    outcome = await signal(store, "wait-key", "late")
    assert (outcome.status, outcome.run_id) == ("buffered", None)

    # Every condition of a wait on several is withdrawn.
    spec = wait_on(
        "any",
        SignalWait("any-key"),
        EventWait(filing("app/any")),
        MessageWait(),
        step="first",
        indexed=True,
    )
    run_id, _ = await parked(store, spec)
    row = await store.cancel(run_id, reason)
    assert row is not None
    assert_cancelled(row, reason)
    assert (await steps_of(store, run_id))["first"].status == "cancelled"
    assert (await signal(store, "any-key", 1)).status == "buffered"
    assert (await send(store, "app/any")).resumed == ()
    assert await store.send_message(run_id, "note", b"1") == "finished"
    # Cancelling again changes nothing.
    assert await store.cancel(run_id, orjson.dumps({"message": "again"})) == row


async def test_cancel_a_run_queued_for_a_retry_later(store: Store, clock: ManualClock) -> None:
    reason = orjson.dumps({"message": "give up"})
    claimed = await leased(store, workflow="wf")
    # It was parked on a signal once; that wait is over.
    assert (await store.park(claimed.lease, signal_wait("once"))).outcome == "parked"
    assert (await signal(store, "once", 1)).status == "delivered"
    claimed = await reclaim(store, claimed)
    due_at = clock.now() + 0.3
    assert await store.retry_step(claimed.lease, run_step("s", status="retrying"), due_at) is False
    run = await run_of(store, claimed.run.id)
    assert run.status == "queued" and run.due_at == pytest.approx(due_at, abs=TOL)

    row = await store.cancel(claimed.run.id, reason)
    assert row is not None
    assert_cancelled(row, reason)
    batch = await store.claim(["wf"], 10, LEASE)
    assert batch.runs == [] and batch.next_due is None
    clock.set(due_at + 0.05)
    assert (await store.claim(["wf"], 10, LEASE)).runs == []
    assert_cancelled(await run_of(store, claimed.run.id), reason)
    # No waiter from its earlier wait came back: the key is free.
    assert (await signal(store, "once", 2)).status == "buffered"
