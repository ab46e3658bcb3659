"""The Store contract: one suite, run against every store through the protocol only.

Each test gets its store from the ``store`` fixture (``conftest.py``):
``open_store(database_url, clock=clock)`` on SQLite and PostgreSQL via the
``database_url`` fixture, with a ``ManualClock`` that the test moves, and drives
the methods of ``tarry.store.base.Store`` directly, the way the execution and the
worker do. Leases, deadlines and retention pass by ``clock.advance``, never by
sleeping; every time a test computes or compares is read from that clock. Only
the schema-version test reaches under the protocol, to make the stored schema
look newer than this tarry.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Literal
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import orjson
import pytest

import tarry
from tarry.clock import ManualClock
from tarry.store import open_store
from tarry.store.base import (
    ClaimedRun,
    Lease,
    NewRun,
    SignalWait,
    StepRow,
    StepSender,
    Store,
    WaitSpec,
)

LEASE = 5.0  # long enough never to expire by accident; tests that need expiry pass less
SHORT = 0.2  # a lease meant to expire
TOL = 0.05  # seconds of slack when comparing stored times
# Real waits, only for what the clock does not drive: a wake-up listener called from
# the store's own thread (or by another store's commit, through the database).
HEARD = 3.0  # the longest a wake-up may take to arrive
UNHEARD = 0.3  # how long to listen for a wake-up that must not come


# -- helpers ---------------------------------------------------------------------------


def j(data: bytes | None) -> Any:
    """Decode stored JSON: a store may re-encode it (e.g. jsonb), so compare values."""
    return None if data is None else orjson.loads(data)


def new_workflow() -> str:
    return f"wf-{uuid.uuid4().hex[:8]}"


async def create(store: Store, workflow: str = "wf", payload: Any = None) -> str:
    run_id = uuid.uuid4().hex
    got, created = await store.create_run(
        NewRun(run_id, workflow, orjson.dumps({} if payload is None else payload))
    )
    assert (got, created) == (run_id, True)
    return run_id


async def leased(store: Store, *, lease: float = LEASE, workflow: str | None = None) -> ClaimedRun:
    """A new run of its own workflow, claimed."""
    workflow = workflow or new_workflow()
    run_id = await create(store, workflow)
    batch = await store.claim([workflow], 10, lease)
    assert [c.run.id for c in batch.runs] == [run_id]
    return batch.runs[0]


async def reclaim(store: Store, claimed: ClaimedRun, lease: float = LEASE) -> ClaimedRun:
    batch = await store.claim([claimed.run.workflow], 10, lease)
    assert [c.run.id for c in batch.runs] == [claimed.run.id]
    return batch.runs[0]


async def stale_and_fresh(store: Store, clock: ManualClock) -> tuple[Lease, ClaimedRun]:
    """A run whose first lease expired and was taken over: (stale lease, fresh claim)."""
    first = await leased(store, lease=SHORT)
    assert (await store.claim([first.run.workflow], 10, LEASE)).runs == []
    clock.advance(SHORT + 0.1)
    second = await reclaim(store, first)
    assert second.lease.run_id == first.lease.run_id
    assert second.lease.token != first.lease.token
    return first.lease, second


def run_step(
    key: str,
    status: str = "completed",
    output: Any = None,
    attempts: int = 1,
    *,
    at: float | None = None,
) -> StepRow:
    """A step record as a worker writes it; ``at``: when it started and ended (the
    store keeps these as given and compares them with nothing; None: not recorded)."""
    return StepRow(
        key,
        "run",
        status,
        None if output is None else orjson.dumps(output),
        None if status == "completed" else orjson.dumps({"type": "E", "message": "boom"}),
        attempts,
        at,
        at,
    )


def signal_wait(
    key: str,
    *,
    step: str = "wait",
    deadline: float | None = None,
    on_conflict: Literal["fail", "replace"] = "fail",
) -> WaitSpec:
    shown = {"kind": "signal", "step": step, "key": key, "expires_at": deadline}
    condition = SignalWait(key, on_conflict=on_conflict)
    # No started_at: the store stamps the wait's step with its own clock's now.
    return WaitSpec(step, "signal", deadline, orjson.dumps(shown), (condition,))


def sleep_wait(deadline: float, step: str = "nap") -> WaitSpec:
    shown = {"kind": "sleep", "step": step, "expires_at": deadline}
    return WaitSpec(step, "sleep", deadline, orjson.dumps(shown))


async def parked_on(store: Store, key: str, **options: Any) -> ClaimedRun:
    """A new run parked on signal ``key``."""
    claimed = await leased(store)
    result = await store.park(claimed.lease, signal_wait(key, **options))
    assert result.outcome == "parked"
    return claimed


async def signal(store: Store, key: str, data: Any, **options: Any) -> Any:
    options.setdefault("strict", False)
    options.setdefault("retention_seconds", 60.0)
    return await store.send_signal(key, orjson.dumps(data), **options)


async def run_of(store: Store, run_id: str) -> Any:
    found = await store.get_run(run_id)
    assert found is not None
    return found[0]


async def steps_of(store: Store, run_id: str) -> dict[str, StepRow]:
    found = await store.get_run(run_id)
    assert found is not None
    return {s.key: s for s in found[1]}


# -- create_run and claim ----------------------------------------------------------------


async def test_create_run_is_idempotent(store: Store, clock: ManualClock) -> None:
    before = clock.now()
    run_id = await create(store, "wf", {"n": 1})
    again = await store.create_run(NewRun(run_id, "other", orjson.dumps({"n": 2})))
    assert again == (run_id, False)
    found = await store.get_run(run_id)
    assert found is not None
    run, steps = found
    assert (run.id, run.workflow, run.status, j(run.payload)) == (run_id, "wf", "queued", {"n": 1})
    assert steps == []
    assert run.output is None and run.error is None and run.ended_at is None
    assert run.waiting_for is None and run.cancel_requested is False
    assert before - TOL <= run.created_at <= clock.now() + TOL
    assert run.due_at is not None and run.due_at <= clock.now() + TOL
    assert await store.get_run("no-such-run") is None


async def test_claim_leases_due_runs_with_their_steps(store: Store) -> None:
    first = await leased(store)
    assert first.run.status == "running" and first.steps == []
    assert first.lease.run_id == first.run.id and first.lease.token
    # A leased run is not claimable while its lease holds.
    assert (await store.claim([first.run.workflow], 10, LEASE)).runs == []
    await store.save_step(first.lease, run_step("a", output={"v": 1}))
    await store.save_step(first.lease, run_step("b", status="retrying", attempts=2))
    await store.release(first.lease)
    assert (await run_of(store, first.run.id)).status == "queued"

    second = await reclaim(store, first)
    assert second.lease.token != first.lease.token
    assert second.run.status == "running"
    assert j(second.run.payload) == {}
    steps = {s.key: s for s in second.steps}
    assert set(steps) == {"a", "b"}
    a = steps["a"]
    assert (a.kind, a.status, j(a.output)) == ("run", "completed", {"v": 1})
    assert (steps["b"].status, steps["b"].attempts) == ("retrying", 2)
    assert j(steps["b"].error) == {"type": "E", "message": "boom"}
    assert (await run_of(store, first.run.id)).status == "running"


async def test_claim_respects_the_workflow_filter_and_limit(store: Store) -> None:
    a_runs = {await create(store, "wf-a") for _ in range(3)}
    b_runs = {await create(store, "wf-b") for _ in range(2)}
    await create(store, "wf-c")

    batch = await store.claim(["wf-a"], 2, LEASE)
    got = {c.run.id for c in batch.runs}
    assert len(got) == 2 and got <= a_runs
    assert all(c.run.workflow == "wf-a" for c in batch.runs)
    assert len({c.lease.token for c in batch.runs}) == 2

    batch = await store.claim(["wf-a"], 10, LEASE)
    assert {c.run.id for c in batch.runs} == a_runs - got

    batch = await store.claim(["wf-a", "wf-b"], 10, LEASE)
    assert {c.run.id for c in batch.runs} == b_runs

    assert (await store.claim(["wf-d"], 10, LEASE)).runs == []


async def test_claim_reports_the_next_due_time(store: Store, clock: ManualClock) -> None:
    assert (await store.claim(["wf"], 10, LEASE)).next_due is None

    # A run released until later sets the alarm; a parked run without deadline does not.
    forever = await leased(store, workflow="wf")
    assert (await store.park(forever.lease, signal_wait("forever"))).outcome == "parked"
    batch = await store.claim(["wf"], 10, LEASE)
    assert batch.runs == [] and batch.next_due is None

    retried = await leased(store, workflow="wf")
    later = clock.now() + 30
    await store.retry_step(retried.lease, run_step("s", status="retrying"), later)
    timed = await leased(store, workflow="wf")
    deadline = clock.now() + 20
    assert (await store.park(timed.lease, signal_wait("timed", deadline=deadline))).outcome == (
        "parked"
    )
    # Runs of other workflows never set this worker's alarm.
    other = await leased(store, workflow="other")
    await store.retry_step(other.lease, run_step("s", status="retrying"), clock.now() + 5)

    batch = await store.claim(["wf"], 10, LEASE)
    assert batch.runs == []
    assert batch.next_due == pytest.approx(deadline, abs=TOL)


async def test_next_due_includes_leases_held_by_others(store: Store, clock: ManualClock) -> None:
    """An idle worker must wake when another worker's lease expires, to take the run over."""
    await leased(store, lease=1.0, workflow="wf")
    batch = await store.claim(["wf"], 10, LEASE)
    assert batch.runs == []
    assert batch.next_due == pytest.approx(clock.now() + 1.0, abs=TOL)


async def test_next_due_reports_runs_left_behind_by_the_limit(
    store: Store, clock: ManualClock
) -> None:
    """``next_due``: the earliest due_at among the claimable runs left behind."""
    for _ in range(3):
        await create(store, "wf")
    batch = await store.claim(["wf"], 2, LEASE)
    assert len(batch.runs) == 2
    assert batch.next_due is not None and batch.next_due <= clock.now() + TOL


# -- fencing and leases ------------------------------------------------------------------


async def test_a_stale_token_is_rejected_by_every_lease_taking_method(
    store: Store, clock: ManualClock
) -> None:
    stale, fresh = await stale_and_fresh(store, clock)
    run_id = fresh.run.id
    assert await store.save_step(fresh.lease, run_step("a", output="fresh")) is False
    waiter = await parked_on(store, "fence-key")
    before = await store.get_run(run_id)
    waiter_before = await store.get_run(waiter.run.id)

    def sender() -> StepSender:
        return StepSender(stale, "send", clock.now())

    attempts: dict[str, Callable[[], Awaitable[Any]]] = {
        "save_step": lambda: store.save_step(stale, run_step("a", output="stale")),
        "retry_step": lambda: store.retry_step(
            stale, run_step("a", status="retrying"), clock.now()
        ),
        "release": lambda: store.release(stale),
        "park signal": lambda: store.park(stale, signal_wait("stale-key")),
        "park sleep": lambda: store.park(stale, sleep_wait(clock.now() + 60)),
        "park resolvable": lambda: store.park(stale, sleep_wait(clock.now() - 1)),
        "send_signal to a waiter": lambda: signal(store, "fence-key", 1, sender=sender()),
        "send_signal to nobody": lambda: signal(store, "nobody", 1, sender=sender()),
        "finish": lambda: store.finish(stale, "completed", orjson.dumps("stale"), None),
        "honor_cancel": lambda: store.honor_cancel(stale),
    }
    for name, attempt in attempts.items():
        with pytest.raises(tarry.LeaseLost):
            await attempt()
        assert await store.get_run(run_id) == before, name
        assert await store.get_run(waiter.run.id) == waiter_before, name

    # The stale signal was neither delivered nor buffered, and no waiter was left behind.
    probe = await leased(store)
    assert (await store.park(probe.lease, signal_wait("nobody"))).outcome == "parked"
    probe = await leased(store)
    assert (await store.park(probe.lease, signal_wait("stale-key"))).outcome == "parked"

    assert (await store.renew([stale], LEASE)).lost == {run_id}
    assert (await store.renew([fresh.lease], LEASE)).lost == set()
    assert await store.save_step(fresh.lease, run_step("b", output="ok")) is False
    assert j((await steps_of(store, run_id))["a"].output) == "fresh"


async def test_made_up_leases_are_rejected(store: Store) -> None:
    claimed = await leased(store)
    before = await store.get_run(claimed.run.id)
    for lease in (Lease(claimed.run.id, "not-the-token"), Lease("no-such-run", "x")):
        with pytest.raises(tarry.LeaseLost):
            await store.save_step(lease, run_step("a"))
        with pytest.raises(tarry.LeaseLost):
            await store.finish(lease, "completed", b"1", None)
    assert await store.get_run(claimed.run.id) == before


async def test_a_lease_ends_when_the_run_parks_or_ends(store: Store) -> None:
    parked = await parked_on(store, "k")
    with pytest.raises(tarry.LeaseLost):
        await store.save_step(parked.lease, run_step("a"))
    assert (await store.renew([parked.lease], LEASE)).lost == {parked.run.id}

    ended = await leased(store)
    await store.finish(ended.lease, "completed", orjson.dumps(1), None)
    with pytest.raises(tarry.LeaseLost):
        await store.save_step(ended.lease, run_step("a"))
    with pytest.raises(tarry.LeaseLost):
        await store.finish(ended.lease, "failed", None, b"{}")
    assert (await run_of(store, ended.run.id)).status == "completed"


async def test_an_expired_lease_makes_the_run_claimable_with_a_new_token(
    store: Store, clock: ManualClock
) -> None:
    first = await leased(store, lease=0.4)
    await store.save_step(first.lease, run_step("a", output=1))
    # Renewing keeps the run for longer than one lease.
    for _ in range(5):
        clock.advance(0.12)
        assert (await store.renew([first.lease], 0.4)).lost == set()
        assert (await store.claim([first.run.workflow], 10, LEASE)).runs == []
    # The last renewal holds the run for one more lease (0.4 s), and no longer.
    clock.advance(0.35)
    assert (await store.claim([first.run.workflow], 10, LEASE)).runs == []
    clock.advance(0.15)
    second = await reclaim(store, first)
    assert second.lease.token != first.lease.token
    assert [s.key for s in second.steps] == ["a"]
    with pytest.raises(tarry.LeaseLost):
        await store.save_step(first.lease, run_step("b"))


async def test_renew_reports_lost_and_cancel_requested(store: Store, clock: ManualClock) -> None:
    stale, fresh = await stale_and_fresh(store, clock)
    kept = await leased(store)
    flagged = await leased(store)
    row = await store.cancel(flagged.run.id, orjson.dumps({"message": "stop"}))
    assert row is not None and row.status == "running" and row.cancel_requested

    status = await store.renew([stale, kept.lease, flagged.lease], LEASE)
    assert status.lost == {fresh.run.id}
    assert status.cancel_requested == {flagged.run.id}


# -- steps ---------------------------------------------------------------------------------


async def test_save_step_inserts_or_replaces(store: Store, clock: ManualClock) -> None:
    claimed = await leased(store)
    assert await store.save_step(claimed.lease, run_step("s", status="retrying")) is False
    assert await store.save_step(claimed.lease, run_step("t", output=[1])) is False
    replaced = run_step("s", output={"ok": 1}, attempts=2, at=clock.now())
    assert await store.save_step(claimed.lease, replaced) is False
    steps = await steps_of(store, claimed.run.id)
    assert set(steps) == {"s", "t"}
    s = steps["s"]
    assert (s.kind, s.status, j(s.output), s.error, s.attempts) == (
        "run",
        "completed",
        {"ok": 1},
        None,
        2,
    )
    assert s.started_at == pytest.approx(clock.now(), abs=TOL)
    assert s.ended_at == pytest.approx(clock.now(), abs=TOL)
    assert (await run_of(store, claimed.run.id)).status == "running"


async def test_retry_step_releases_the_run_until_due_at(store: Store, clock: ManualClock) -> None:
    claimed = await leased(store)
    due_at = clock.now() + 0.5
    await store.retry_step(claimed.lease, run_step("s", status="retrying"), due_at)
    run = await run_of(store, claimed.run.id)
    assert run.status == "queued" and run.due_at == pytest.approx(due_at, abs=TOL)
    assert (await steps_of(store, claimed.run.id))["s"].status == "retrying"
    with pytest.raises(tarry.LeaseLost):
        await store.save_step(claimed.lease, run_step("s"))

    batch = await store.claim([claimed.run.workflow], 10, LEASE)
    assert batch.runs == [] and batch.next_due == pytest.approx(due_at, abs=TOL)
    clock.set(due_at - 0.05)
    assert (await store.claim([claimed.run.workflow], 10, LEASE)).runs == []
    clock.set(due_at + 0.05)
    again = await reclaim(store, claimed)
    assert [(s.key, s.status, s.attempts) for s in again.steps] == [("s", "retrying", 1)]


async def test_release_makes_the_run_due_now(store: Store, clock: ManualClock) -> None:
    claimed = await leased(store)
    await store.release(claimed.lease)
    run = await run_of(store, claimed.run.id)
    assert run.status == "queued" and run.due_at is not None and run.due_at <= clock.now() + TOL
    again = await reclaim(store, claimed)
    assert again.lease.token != claimed.lease.token


# -- park --------------------------------------------------------------------------------


async def test_park_records_the_wait_and_releases_the_lease(store: Store) -> None:
    claimed = await leased(store, workflow="wf")
    spec = signal_wait("approval:1")
    result = await store.park(claimed.lease, spec)
    assert result.outcome == "parked"
    run = await run_of(store, claimed.run.id)
    assert run.status == "waiting" and run.due_at is None
    assert j(run.waiting_for) == j(spec.waiting_for)
    step = (await steps_of(store, claimed.run.id))["wait"]
    assert (step.kind, step.status, step.output, step.ended_at) == ("signal", "waiting", None, None)
    batch = await store.claim(["wf"], 10, LEASE)
    assert batch.runs == [] and batch.next_due is None


async def test_park_with_a_deadline_is_due_at_the_deadline(
    store: Store, clock: ManualClock
) -> None:
    claimed = await leased(store, workflow="wf")
    deadline = clock.now() + 60
    assert (await store.park(claimed.lease, sleep_wait(deadline))).outcome == "parked"
    run = await run_of(store, claimed.run.id)
    assert run.status == "waiting" and run.due_at == pytest.approx(deadline, abs=TOL)
    batch = await store.claim(["wf"], 10, LEASE)
    assert batch.runs == [] and batch.next_due == pytest.approx(deadline, abs=TOL)


async def test_park_is_resolved_by_buffered_signals_in_fifo_order(store: Store) -> None:
    for n in range(3):
        outcome = await signal(store, "k", {"n": n})
        assert (outcome.status, outcome.run_id) == ("buffered", None)
    for n in range(3):
        claimed = await leased(store)
        result = await store.park(claimed.lease, signal_wait("k"))
        assert result.outcome == "resolved"
        assert result.step is not None
        assert (result.step.key, result.step.status) == ("wait", "completed")
        assert j(result.step.output) == {"n": n}
        stored = (await steps_of(store, claimed.run.id))["wait"]
        assert (stored.status, j(stored.output)) == ("completed", {"n": n})
        # The caller keeps its lease and carries on.
        assert (await run_of(store, claimed.run.id)).status == "running"
        await store.save_step(claimed.lease, run_step("after"))
    # All three are consumed: the next wait parks.
    await parked_on(store, "k")


async def test_park_is_resolved_when_the_deadline_has_passed(
    store: Store, clock: ManualClock
) -> None:
    claimed = await leased(store)
    past = clock.now() - 1
    result = await store.park(claimed.lease, signal_wait("k", deadline=past))
    assert result.outcome == "resolved" and result.step is not None
    assert (result.step.status, result.step.output) == ("timed_out", None)
    result = await store.park(claimed.lease, sleep_wait(past))
    assert result.outcome == "resolved" and result.step is not None
    assert (result.step.kind, result.step.status) == ("sleep", "completed")
    steps = await steps_of(store, claimed.run.id)
    assert (steps["wait"].status, steps["nap"].status) == ("timed_out", "completed")
    assert (await run_of(store, claimed.run.id)).status == "running"
    await store.save_step(claimed.lease, run_step("after"))
    # No waiter was left on the key.
    await parked_on(store, "k")


async def test_park_conflict_fails_the_second_wait(store: Store) -> None:
    holder = await parked_on(store, "k")
    second = await leased(store)
    result = await store.park(second.lease, signal_wait("k", on_conflict="fail"))
    assert result.outcome == "conflict" and result.other_run == holder.run.id
    assert result.step is not None and result.step.status == "failed"
    stored = (await steps_of(store, second.run.id))["wait"]
    assert stored.status == "failed" and stored.error is not None
    assert (await run_of(store, second.run.id)).status == "running"
    await store.save_step(second.lease, run_step("after"))
    # The holder keeps the key.
    outcome = await signal(store, "k", "yes")
    assert (outcome.status, outcome.run_id) == ("delivered", holder.run.id)


async def test_park_replace_takes_the_key_and_times_out_the_old_wait(
    store: Store, clock: ManualClock
) -> None:
    old = await parked_on(store, "k", deadline=clock.now() + 3600)
    new = await leased(store)
    result = await store.park(new.lease, signal_wait("k", on_conflict="replace"))
    assert result.outcome == "parked"

    run = await run_of(store, old.run.id)
    assert run.status == "queued" and run.waiting_for is None
    assert run.due_at is not None and run.due_at <= clock.now() + TOL
    step = (await steps_of(store, old.run.id))["wait"]
    assert (step.status, step.output) == ("timed_out", None)
    assert j(step.error)["replaced_by"] == new.run.id

    again = await reclaim(store, old)
    assert {s.key: s.status for s in again.steps} == {"wait": "timed_out"}
    outcome = await signal(store, "k", "yes")
    assert (outcome.status, outcome.run_id) == ("delivered", new.run.id)


async def test_claiming_a_parked_run_at_its_deadline_times_out_its_wait(
    store: Store, clock: ManualClock
) -> None:
    waiting = await leased(store, workflow="wf")
    sleeping = await leased(store, workflow="wf")
    deadline = clock.now() + 0.3
    assert (await store.park(waiting.lease, signal_wait("k", deadline=deadline))).outcome == (
        "parked"
    )
    assert (await store.park(sleeping.lease, sleep_wait(deadline))).outcome == "parked"
    assert (await store.claim(["wf"], 10, LEASE)).runs == []
    clock.advance(0.25)
    assert (await store.claim(["wf"], 10, LEASE)).runs == []
    clock.advance(0.15)

    batch = await store.claim(["wf"], 10, LEASE)
    claimed = {c.run.id: c for c in batch.runs}
    assert set(claimed) == {waiting.run.id, sleeping.run.id}
    wait_steps = {s.key: s for s in claimed[waiting.run.id].steps}
    assert (wait_steps["wait"].status, wait_steps["wait"].output) == ("timed_out", None)
    assert wait_steps["wait"].ended_at is not None
    assert [(s.key, s.status) for s in claimed[sleeping.run.id].steps] == [("nap", "completed")]
    for c in batch.runs:
        assert c.run.status == "running" and c.run.waiting_for is None
    # The waiter went with the timeout: a signal now is buffered, not delivered.
    assert (await signal(store, "k", 1)).status == "buffered"
    assert (await steps_of(store, waiting.run.id))["wait"].status == "timed_out"


# -- send_signal -------------------------------------------------------------------------


async def test_send_signal_delivers_to_the_waiting_run(store: Store, clock: ManualClock) -> None:
    claimed = await parked_on(store, "k")
    outcome = await signal(store, "k", {"approved": True})
    assert (outcome.status, outcome.run_id) == ("delivered", claimed.run.id)
    run = await run_of(store, claimed.run.id)
    assert run.status == "queued" and run.waiting_for is None
    assert run.due_at is not None and run.due_at <= clock.now() + TOL
    step = (await steps_of(store, claimed.run.id))["wait"]
    assert (step.status, j(step.output)) == ("completed", {"approved": True})
    assert step.ended_at is not None

    again = await reclaim(store, claimed)
    assert [(s.key, s.status, j(s.output)) for s in again.steps] == [
        ("wait", "completed", {"approved": True})
    ]
    # The waiter was consumed: the next signal on the key is buffered.
    assert (await signal(store, "k", 2)).status == "buffered"


async def test_send_signal_buffers_or_with_strict_stores_nothing(store: Store) -> None:
    outcome = await signal(store, "nobody", 1, strict=True)
    assert (outcome.status, outcome.run_id) == ("not_found", None)
    await parked_on(store, "nobody")  # nothing was buffered

    outcome = await signal(store, "later", 1)
    assert (outcome.status, outcome.run_id) == ("buffered", None)

    waiting = await parked_on(store, "strict")
    outcome = await signal(store, "strict", 1, strict=True)
    assert (outcome.status, outcome.run_id) == ("delivered", waiting.run.id)


async def test_buffered_signals_expire_after_their_retention(
    store: Store, clock: ManualClock
) -> None:
    await signal(store, "short", "gone", retention_seconds=0.2)
    await signal(store, "short", "gone too", retention_seconds=0.2)
    await signal(store, "other", "gone", retention_seconds=0.2)
    await signal(store, "short", "kept", retention_seconds=60)
    # Within their retention, nothing is purged yet.
    clock.advance(0.1)
    assert await store.purge_expired(0.0) == 0
    clock.advance(0.2)
    # Expired signals are never consumed, even before they are purged.
    claimed = await leased(store)
    result = await store.park(claimed.lease, signal_wait("other"))
    assert result.outcome == "parked"
    assert await store.purge_expired(0.0) == 3
    assert await store.purge_expired(0.0) == 0
    claimed = await leased(store)
    result = await store.park(claimed.lease, signal_wait("short"))
    assert result.outcome == "resolved" and result.step is not None
    assert j(result.step.output) == "kept"


async def test_send_signal_from_a_step_writes_the_step_in_the_same_transaction(
    store: Store, clock: ManualClock
) -> None:
    waiting = await parked_on(store, "k")
    sender = await leased(store)
    started = clock.now()
    outcome = await signal(
        store, "k", {"from": "step"}, sender=StepSender(sender.lease, "send", started)
    )
    assert (outcome.status, outcome.run_id) == ("delivered", waiting.run.id)
    step = (await steps_of(store, sender.run.id))["send"]
    assert (step.kind, step.status) == ("send_signal", "completed")
    assert j(step.output) == {"status": "delivered", "run_id": waiting.run.id}
    assert step.started_at == pytest.approx(started, abs=TOL)
    waited = (await steps_of(store, waiting.run.id))["wait"]
    assert j(waited.output) == {"from": "step"}

    outcome = await signal(store, "empty", 1, sender=StepSender(sender.lease, "send:1", started))
    assert outcome.status == "buffered"
    step = (await steps_of(store, sender.run.id))["send:1"]
    assert j(step.output) == {"status": "buffered", "run_id": None}
    # The sender keeps its lease.
    assert (await run_of(store, sender.run.id)).status == "running"
    await store.save_step(sender.lease, run_step("after"))


# -- finish and cancel -------------------------------------------------------------------


async def test_finish_ends_the_run(store: Store) -> None:
    cases = [
        ("completed", orjson.dumps({"shipped": 1}), None),
        ("failed", None, orjson.dumps({"type": "StepFailed", "message": "x"})),
        ("cancelled", None, orjson.dumps({"type": "Bailed", "message": "no"})),
    ]
    for status, output, error in cases:
        claimed = await leased(store, workflow="wf")
        await store.finish(claimed.lease, status, output, error)
        run = await run_of(store, claimed.run.id)
        assert run.status == status
        assert (j(run.output), j(run.error)) == (j(output), j(error))
        assert run.ended_at is not None and run.due_at is None and run.waiting_for is None
    batch = await store.claim(["wf"], 10, LEASE)
    assert batch.runs == [] and batch.next_due is None


async def test_cancel_a_queued_run(store: Store, clock: ManualClock) -> None:
    reason = orjson.dumps({"type": "Cancelled", "message": "no longer needed"})
    run_id = await create(store, "wf")
    row = await store.cancel(run_id, reason)
    assert row is not None and row.id == run_id
    assert row.status == "cancelled" and j(row.error) == j(reason) and row.ended_at is not None
    assert await run_of(store, run_id) == row

    # A run released for a retry later is queued too, and cancelled at once.
    retrying = await leased(store, workflow="wf")
    await store.retry_step(retrying.lease, run_step("s", status="retrying"), clock.now() + 60)
    row = await store.cancel(retrying.run.id, reason)
    assert row is not None and row.status == "cancelled"

    batch = await store.claim(["wf"], 10, LEASE)
    assert batch.runs == [] and batch.next_due is None


async def test_cancel_a_parked_run_removes_its_waiters(store: Store, clock: ManualClock) -> None:
    claimed = await parked_on(store, "k", deadline=clock.now() + 60)
    row = await store.cancel(claimed.run.id, orjson.dumps({"message": "stop"}))
    assert row is not None and row.status == "cancelled"
    assert row.waiting_for is None and row.due_at is None
    assert (await steps_of(store, claimed.run.id))["wait"].status == "cancelled"
    # The key is free: a signal is buffered, and the next waiter gets it.
    assert (await signal(store, "k", "later")).status == "buffered"
    assert (await run_of(store, claimed.run.id)).status == "cancelled"
    other = await leased(store)
    result = await store.park(other.lease, signal_wait("k"))
    assert result.outcome == "resolved" and result.step is not None
    assert j(result.step.output) == "later"


async def test_cancel_a_leased_run_flags_it_until_honored(store: Store) -> None:
    reason = orjson.dumps({"type": "Cancelled", "message": "by operator"})
    claimed = await leased(store)
    row = await store.cancel(claimed.run.id, reason)
    assert row is not None and row.status == "running" and row.cancel_requested
    assert (await store.renew([claimed.lease], LEASE)).cancel_requested == {claimed.run.id}
    assert await store.save_step(claimed.lease, run_step("a")) is True

    await store.honor_cancel(claimed.lease)
    run = await run_of(store, claimed.run.id)
    assert run.status == "cancelled" and j(run.error) == j(reason) and run.ended_at is not None
    with pytest.raises(tarry.LeaseLost):
        await store.save_step(claimed.lease, run_step("b"))


async def test_claim_cancels_a_flagged_run_instead_of_returning_it(
    store: Store, clock: ManualClock
) -> None:
    reason = orjson.dumps({"message": "stop"})
    claimed = await leased(store, lease=SHORT, workflow="wf")
    row = await store.cancel(claimed.run.id, reason)
    assert row is not None and row.status == "running"
    # While the lease holds, a claim leaves the flagged run to its worker.
    assert (await store.claim(["wf"], 10, LEASE)).runs == []
    assert (await run_of(store, claimed.run.id)).status == "running"
    clock.advance(SHORT + 0.1)  # the worker died without honoring it
    assert (await store.claim(["wf"], 10, LEASE)).runs == []
    run = await run_of(store, claimed.run.id)
    assert run.status == "cancelled" and j(run.error) == j(reason)


async def test_cancel_an_ended_or_unknown_run(store: Store) -> None:
    claimed = await leased(store)
    await store.finish(claimed.lease, "completed", orjson.dumps("done"), None)
    before = await store.get_run(claimed.run.id)
    row = await store.cancel(claimed.run.id, orjson.dumps({"message": "late"}))
    assert row is not None and row.status == "completed" and j(row.output) == "done"
    assert await store.get_run(claimed.run.id) == before
    assert await store.cancel("no-such-run", None) is None


# -- reads ---------------------------------------------------------------------------------


async def test_list_runs_pages_by_seq_and_filters(store: Store) -> None:
    ids = [await create(store, wf) for wf in ("w1", "w2", "w1", "w2", "w1")]
    batch = await store.claim(["w2"], 10, LEASE)
    leases = {c.run.id: c.lease for c in batch.runs}
    await store.finish(leases[ids[1]], "completed", b"1", None)
    await store.release(leases[ids[3]])

    rows = await store.list_runs(status=None, workflow=None, limit=50, cursor=None)
    assert [r.id for r in rows] == ids[::-1]
    seqs = [r.seq for r in rows]
    assert seqs == sorted(seqs, reverse=True) and len(set(seqs)) == 5

    pages: list[list[str]] = []
    cursor = None
    while True:
        page = await store.list_runs(status=None, workflow=None, limit=2, cursor=cursor)
        if not page:
            break
        pages.append([r.id for r in page])
        cursor = page[-1].seq
    assert pages == [[ids[4], ids[3]], [ids[2], ids[1]], [ids[0]]]

    async def ids_of(**filters: Any) -> list[str]:
        rows = await store.list_runs(
            **{"status": None, "workflow": None, "limit": 50, "cursor": None, **filters}
        )
        return [r.id for r in rows]

    assert await ids_of(workflow="w1") == [ids[4], ids[2], ids[0]]
    assert await ids_of(workflow="w1", limit=1, cursor=rows[0].seq) == [ids[2]]
    assert await ids_of(status="completed") == [ids[1]]
    assert await ids_of(status="queued", workflow="w2") == [ids[3]]
    assert await ids_of(status="queued", workflow="w1", cursor=rows[2].seq) == [ids[0]]
    assert await ids_of(workflow="nope") == []


# -- wake-ups ------------------------------------------------------------------------------


async def test_wake_listeners_are_called_after_commits_that_make_runs_due(
    store: Store, clock: ManualClock
) -> None:
    # The listener is called from the store's own thread after the commit, not by
    # the clock, so this waits for it for real (at most HEARD seconds each).
    woke = threading.Event()
    store.add_wake_listener(woke.set)
    try:

        async def wakes(action: Callable[[], Awaitable[Any]]) -> None:
            woke.clear()
            await action()
            assert await asyncio.to_thread(woke.wait, HEARD), "no wake-up"

        run_id = ""

        async def start() -> None:
            nonlocal run_id
            run_id = await create(store, "wf")

        await wakes(start)
        # The change is committed by the time listeners hear of it.
        batch = await store.claim(["wf"], 10, LEASE)
        assert [c.run.id for c in batch.runs] == [run_id]
        claimed = batch.runs[0]

        await wakes(lambda: store.release(claimed.lease))
        claimed = await reclaim(store, claimed)
        await wakes(
            lambda: store.retry_step(claimed.lease, run_step("s", status="retrying"), clock.now())
        )
        claimed = await reclaim(store, claimed)
        assert (await store.park(claimed.lease, signal_wait("k"))).outcome == "parked"
        await wakes(lambda: signal(store, "k", 1))
        claimed = await reclaim(store, claimed)

        assert (await store.park(claimed.lease, signal_wait("k2", step="w2"))).outcome == "parked"
        replacer = await leased(store)
        await wakes(lambda: store.park(replacer.lease, signal_wait("k2", on_conflict="replace")))
        assert (await reclaim(store, claimed)).run.id == run_id
    finally:
        store.remove_wake_listener(woke.set)

    woke.clear()
    await create(store, "wf")
    # A call that must not come can only be listened for, for a while.
    assert not await asyncio.to_thread(woke.wait, UNHEARD), "a removed listener was called"


async def test_wake_listeners_hear_of_commits_by_another_store(
    store: Store, clock: ManualClock, database_url: str
) -> None:
    """Another store on the same database stands for another process. Its commit right
    after this store opened and the listener was added must not be missed.

    The other store shares this store's clock (as processes share one time), or the
    runs it creates would not be due yet by this store's. The wake-ups travel through
    the database (PostgreSQL's NOTIFY, SQLite's file watch) on their own threads, so
    they are waited for for real, at most HEARD seconds each."""
    other = open_store(database_url, clock=clock)
    await other.open()
    try:
        for _ in range(3):
            await store.close()
            await store.open()
            woke = threading.Event()
            store.add_wake_listener(woke.set)
            try:
                run_id = await create(other, "wf")
                assert await asyncio.to_thread(woke.wait, HEARD), (
                    "another store's commit was missed"
                )
                batch = await store.claim(["wf"], 10, LEASE)
                assert [c.run.id for c in batch.runs] == [run_id]
                # Later commits are heard too.
                woke.clear()
                await store.release(batch.runs[0].lease)
                woke.clear()
                await signal(other, "k", 1)
                waiting = await parked_on(store, "k2")
                woke.clear()
                assert (await signal(other, "k2", 1)).run_id == waiting.run.id
                assert await asyncio.to_thread(woke.wait, HEARD), "a delivery was missed"
                await reclaim(store, waiting)
                released = await reclaim(store, batch.runs[0])
                await store.finish(released.lease, "completed", b"1", None)
            finally:
                store.remove_wake_listener(woke.set)
    finally:
        await other.close()


# -- schema version ------------------------------------------------------------------------


def _schema_version(url: str, new: int | None = None) -> int:
    """Read (and with ``new``, first overwrite) the stored schema version, under the protocol."""
    if url.startswith("sqlite:"):
        path = url[len("sqlite:///") :]
        with contextlib.closing(sqlite3.connect(path)) as conn:
            if new is not None:
                conn.execute(
                    "UPDATE tarry_meta SET value = ? WHERE key = 'schema_version'", (str(new),)
                )
                conn.commit()
            row = conn.execute("SELECT value FROM tarry_meta WHERE key = 'schema_version'")
            return int(row.fetchone()[0])
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    query = parse_qs(parts.query)
    schema = query.pop("schema")[0]
    conninfo = urlunsplit(parts._replace(query=urlencode(query, doseq=True)))
    table = sql.Identifier(schema, "tarry_meta")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if new is not None:
            # A literal, so it fits a text or an integer column alike.
            conn.execute(
                sql.SQL("UPDATE {} SET value = {} WHERE key = 'schema_version'").format(
                    table, sql.Literal(str(new))
                )
            )
        found = conn.execute(
            sql.SQL("SELECT value FROM {} WHERE key = 'schema_version'").format(table)
        ).fetchone()
        assert found is not None
        return int(found[0])


async def test_a_newer_schema_is_refused_and_left_untouched(
    database_url: str, clock: ManualClock
) -> None:
    first = open_store(database_url, clock=clock)
    await first.open()
    run_id = await create(first, "wf", {"keep": True})
    await first.close()
    known = _schema_version(database_url)
    assert known >= 1
    _schema_version(database_url, known + 100)

    refused = open_store(database_url, clock=clock)
    with pytest.raises(tarry.SchemaTooNew, match=str(known + 100)):
        await refused.open()
    with contextlib.suppress(Exception):
        await refused.close()
    assert _schema_version(database_url) == known + 100

    _schema_version(database_url, known)
    reopened = open_store(database_url, clock=clock)
    await reopened.open()
    try:
        run = await run_of(reopened, run_id)
        assert (run.status, j(run.payload)) == ("queued", {"keep": True})
    finally:
        await reopened.close()


async def test_a_capped_workflow_takes_over_expired_leases(
    store: Store, clock: ManualClock
) -> None:
    """A worker died holding the capped workflow's only slot: its run is still claimable
    once the lease expires (the count of leased runs does not change)."""
    await create(store, "capped")
    await create(store, "capped")
    first = await store.claim(["capped"], 5, 0.2, {"capped": 1})
    assert len(first.runs) == 1
    held = await store.claim(["capped"], 5, 0.2, {"capped": 1})
    assert held.runs == [] and held.next_due == pytest.approx(clock.now() + 0.2, abs=TOL)
    clock.advance(0.3)
    again = await store.claim(["capped"], 5, LEASE, {"capped": 1})
    assert [c.run.id for c in again.runs] == [first.runs[0].run.id]
    assert again.runs[0].lease.token != first.runs[0].lease.token


async def test_a_store_closed_after_use_refuses_every_operation(
    database_url: str, clock: ManualClock
) -> None:
    """A store remembers that it opened (so an operation does not ask again each time);
    closing must forget it: what is asked after the close is refused, said plainly."""
    from tarry.errors import StoreError

    store = open_store(database_url, clock=clock)
    await store.open()
    wf = new_workflow()
    await store.create_run(NewRun(f"r-{wf}", wf, b"{}"))
    await store.close()
    with pytest.raises(StoreError, match="not open"):
        await store.create_run(NewRun(f"s-{wf}", wf, b"{}"))
    with pytest.raises(StoreError, match="not open"):
        await store.claim([wf], 1, LEASE)
