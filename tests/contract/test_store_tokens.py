"""The Store's callback token methods, on every store through the protocol only.

Creating a token with its step (fenced), completing it once, a completion that comes
before the wait, expiry and ended runs, the signing secrets and their rotation, the
purge, and two completions of one token at once from two stores on one database.
"""

from __future__ import annotations

import asyncio
import uuid

import orjson
import pytest

import tarry
from tarry.clock import ManualClock
from tarry.store import open_store
from tarry.store.base import ClaimedRun, Lease, Store, WaitSpec
from tarry.store.token_records import NewToken, TokenWait

from .test_store_contract import LEASE, create, j, leased, reclaim, run_step

SHAPE = orjson.dumps({"type": "object", "required": ["ok"]})


async def with_token(
    store: Store, *, expires_at: float | None = None, schema: bytes | None = None
) -> tuple[ClaimedRun, str]:
    """A claimed run that has created a token (its step ``make``)."""
    claimed = await leased(store)
    token_id = uuid.uuid4().hex
    made = run_step("make", output={"id": token_id})
    token = NewToken(token_id, "approve", expires_at, schema)
    assert await store.create_token(claimed.lease, token, made) is False
    return claimed, token_id


def token_wait(token_id: str, *, deadline: float | None = None, step: str = "wait") -> WaitSpec:
    shown = {"kind": "token", "step": step, "key": "approve", "expires_at": deadline}
    return WaitSpec(step, "token", deadline, orjson.dumps(shown), (TokenWait(token_id, "approve"),))


async def test_create_token_stores_the_token_with_its_step_fenced(store: Store) -> None:
    claimed, token_id = await with_token(store, expires_at=store.clock.now() + 60)
    row = await store.get_token(token_id)
    assert row is not None
    assert (row.run_id, row.step_key, row.name, row.completed_at) == (
        claimed.run.id,
        "make",
        "approve",
        None,
    )
    assert row.expires_at == pytest.approx(store.clock.now() + 60)
    assert (row.workflow, row.run_status) == (claimed.run.workflow, "running")
    found = await store.get_run(claimed.run.id)
    assert found is not None and j(found[1][0].output) == {"id": token_id}
    with pytest.raises(tarry.LeaseLost):
        await store.create_token(
            Lease(claimed.run.id, "stale"), NewToken("other", "x", None), run_step("other")
        )
    assert await store.get_token("other") is None
    assert await store.get_token("missing") is None


async def test_completion_delivers_to_the_parked_wait_once(store: Store) -> None:
    claimed, token_id = await with_token(store)
    assert (await store.park(claimed.lease, token_wait(token_id))).outcome == "parked"
    done = await store.complete_token(token_id, b'{"ok": true}')
    assert (done.status, done.run_id) == ("completed", claimed.run.id)
    again = await store.complete_token(token_id, b'{"ok": false}')
    assert (again.status, again.at) == ("used", done.at)
    resumed = await reclaim(store, claimed)
    wait = next(s for s in resumed.steps if s.key == "wait")
    assert (wait.status, j(wait.output)) == ("completed", {"ok": True})
    row = await store.get_token(token_id)
    assert row is not None and j(row.data) == {"ok": True}


async def test_a_completion_before_the_wait_answers_it_at_park(store: Store) -> None:
    claimed, token_id = await with_token(store)
    assert (await store.complete_token(token_id, b'"early"')).status == "completed"
    result = await store.park(claimed.lease, token_wait(token_id))
    assert result.outcome == "resolved" and result.step is not None
    assert j(result.step.output) == "early"


async def test_expired_ended_unknown_and_misfit_are_refused(
    store: Store, clock: ManualClock
) -> None:
    claimed, token_id = await with_token(store, expires_at=clock.now() + 10)
    await store.park(claimed.lease, token_wait(token_id, deadline=clock.now() + 10))
    clock.advance(10)
    assert (await store.complete_token(token_id, b"1")).status == "expired"
    assert (await store.complete_token("nope", b"1")).status == "not_found"

    parked, other = await with_token(store, schema=SHAPE)
    await store.park(parked.lease, token_wait(other))
    with pytest.raises(tarry.PayloadInvalid, match=r"\$"):
        await store.complete_token(other, b'{"no": 1}')
    row = await store.get_token(other)
    assert row is not None and row.completed_at is None and row.data is None
    await store.cancel(parked.run.id, None)
    assert (await store.complete_token(other, b'{"ok": 1}')).status == "ended"
    row = await store.get_token(other)
    assert row is not None and row.run_status == "cancelled" and row.completed_at is None


async def test_secrets_are_made_once_and_rotate_with_a_grace(
    store: Store, clock: ManualClock
) -> None:
    first = await store.token_secrets("one")
    assert [(s.value, s.valid_until) for s in first] == [("one", None)]
    assert [s.value for s in await store.token_secrets("two")] == ["one"]  # kept
    await store.rotate_token_secret("two", 60)
    now = await store.token_secrets("ignored")
    assert [s.value for s in now] == ["two", "one"]
    assert now[0].valid_until is None and now[1].valid_until == pytest.approx(clock.now() + 60)
    clock.advance(60)
    assert [s.value for s in await store.token_secrets("ignored")] == ["two"]
    await store.rotate_token_secret("three", 0)
    assert [s.value for s in await store.token_secrets("ignored")] == ["three"]


async def test_purge_deletes_the_tokens_of_the_runs_it_deletes(store: Store) -> None:
    claimed, token_id = await with_token(store)
    await store.finish(claimed.lease, "completed", b"null", None)
    kept = await create(store)
    assert await store.purge_runs(only=[claimed.run.id]) == [claimed.run.id]
    assert await store.get_token(token_id) is None
    assert await store.run_row(kept) is not None


async def test_two_completions_at_once_from_two_stores_one_wins(
    store: Store, database_url: str, clock: ManualClock
) -> None:
    other = open_store(database_url, clock=clock)
    await other.open()
    try:
        for round_ in range(8):
            claimed, token_id = await with_token(store)
            if round_ % 2:  # parked on it, or not yet
                await store.park(claimed.lease, token_wait(token_id))
            outcomes = await asyncio.gather(
                store.complete_token(token_id, b'"a"'), other.complete_token(token_id, b'"b"')
            )
            statuses = sorted(o.status for o in outcomes)
            assert statuses == ["completed", "used"], outcomes
            won = next(o for o in outcomes if o.status == "completed")
            lost = next(o for o in outcomes if o.status == "used")
            assert lost.at == won.at
            row = await store.get_token(token_id)
            assert row is not None and row.completed_at == won.at
            winner = b'"a"' if outcomes[0].status == "completed" else b'"b"'
            assert j(row.data) == j(winner)
            if round_ % 2:
                resumed = await reclaim(store, claimed, LEASE)
                wait = next(s for s in resumed.steps if s.key == "wait")
                assert j(wait.output) == j(winner)
    finally:
        await other.close()
