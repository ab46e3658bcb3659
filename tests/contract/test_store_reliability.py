"""The Store contract under hostile shapes: events of any size and depth reach their
waits, long values are indexed safely, a replace never evicts for nothing, an
invoke never adopts a run it did not start. Both stores, through the protocol, with
the ``store`` fixture of ``conftest.py``.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from tarry.store.base import InvokeWait, MessageWait, NewRun, SignalWait, Store

from .test_store_contract import (
    create,
    j,
    leased,
    parked_on,
    run_of,
    signal,
    steps_of,
)
from .test_store_operations import (
    event_wait,
    filing,
    parked_with_payload,
    send,
    wait_on,
)


def deep(levels: int, leaf: Any) -> Any:
    """``{"n": {"n": ... leaf}}``, ``levels`` objects deep."""
    value = leaf
    for _ in range(levels):
        value = {"n": value}
    return value


async def test_an_event_with_many_keys_reaches_a_wait_on_any_of_them(store: Store) -> None:
    name = f"app/wide-{uuid.uuid4().hex[:6]}"
    first = await parked_with_payload(
        store, {"k0": "a"}, lambda t: event_wait(filing(name, match="data.k0", trigger=t))
    )
    last = await parked_with_payload(
        store, {"k299": "b"}, lambda t: event_wait(filing(name, match="data.k299", trigger=t))
    )
    data = {f"k{i}": "a" if i == 0 else "b" if i == 299 else i for i in range(300)}
    outcome = await send(store, name, data)
    assert sorted(outcome.resumed) == sorted([first, last])


async def test_a_match_nine_levels_deep_is_delivered(store: Store) -> None:
    name = f"app/deep-{uuid.uuid4().hex[:6]}"
    path = "data." + ".".join(["n"] * 9)
    run_id = await parked_with_payload(
        store, deep(9, "x"), lambda t: event_wait(filing(name, match=path, trigger=t))
    )
    assert (await send(store, name, deep(9, "y"))).resumed == ()
    assert (await send(store, name, deep(9, "x"))).resumed == (run_id,)


async def test_a_long_match_value_is_indexed_and_matched(store: Store) -> None:
    name = f"app/long-{uuid.uuid4().hex[:6]}"
    user = "u" * 4096 + "é" * 2000
    run_id = await parked_with_payload(
        store, {"userId": user}, lambda t: event_wait(filing(name, match="data.userId", trigger=t))
    )
    assert (await send(store, name, {"userId": user[:-1]})).resumed == ()
    assert (await send(store, name, {"userId": user})).resumed == (run_id,)


async def test_event_data_nested_to_the_limit_is_delivered_intact(store: Store) -> None:
    name = f"app/nest-{uuid.uuid4().hex[:6]}"
    claimed = await leased(store)
    await store.park(claimed.lease, event_wait(filing(name)))
    data = deep(253, 1)  # the event's data at serde's limit of 254 levels
    outcome = await send(store, name, data)
    assert outcome.resumed == (claimed.run.id,)
    stored = j((await steps_of(store, claimed.run.id))["wait"].output)
    assert stored["data"] == data


async def test_replace_inside_any_keeps_the_holder_when_the_wait_resolves_at_once(
    store: Store,
) -> None:
    key = f"k-{uuid.uuid4().hex[:8]}"
    holder = await parked_on(store, key)
    newcomer = await leased(store)
    assert await store.send_message(newcomer.run.id, "go", b"{}") == "queued"
    spec = wait_on("any", SignalWait(key, on_conflict="replace"), MessageWait("go"), indexed=True)
    result = await store.park(newcomer.lease, spec)
    assert result.outcome == "resolved" and result.step is not None
    assert j(result.step.output)["index"] == 1
    # The holder was not evicted: it still waits, and a signal still reaches it.
    assert (await run_of(store, holder.run.id)).status == "waiting"
    delivered = await signal(store, key, {"v": 1})
    assert (delivered.status, delivered.run_id) == ("delivered", holder.run.id)


async def test_replace_inside_any_evicts_the_holder_when_the_wait_parks(store: Store) -> None:
    key = f"k-{uuid.uuid4().hex[:8]}"
    holder = await parked_on(store, key)
    newcomer = await leased(store)
    spec = wait_on("any", SignalWait(key, on_conflict="replace"), MessageWait("go"), indexed=True)
    assert (await store.park(newcomer.lease, spec)).outcome == "parked"
    evicted = (await steps_of(store, holder.run.id))["wait"]
    assert evicted.status == "timed_out" and j(evicted.error)["replaced_by"] == newcomer.run.id
    delivered = await signal(store, key, {"v": 2})
    assert (delivered.status, delivered.run_id) == ("delivered", newcomer.run.id)


async def test_the_same_signal_key_twice_in_one_wait_parks_once(store: Store) -> None:
    key = f"k-{uuid.uuid4().hex[:8]}"
    claimed = await leased(store)
    spec = wait_on("any", SignalWait(key), SignalWait(key), indexed=True)
    assert (await store.park(claimed.lease, spec)).outcome == "parked"
    delivered = await signal(store, key, {"v": 3})
    assert (delivered.status, delivered.run_id) == ("delivered", claimed.run.id)
    assert j((await steps_of(store, claimed.run.id))["wait"].output) == {
        "index": 0,
        "value": {"v": 3},
    }


async def test_an_invoke_never_adopts_a_run_it_did_not_start(store: Store) -> None:
    parent = await leased(store)
    child_id = f"{parent.run.id}.price"
    # Someone started a run under the id this step's child would have.
    foreign = await create(store, "wf", {"planted": True})
    planted = NewRun(child_id, "compute-price", b"{}")
    assert await store.create_run(planted) == (child_id, True)
    child = NewRun(child_id, "compute-price", b"{}", parent=parent.run.id)
    result = await store.park(parent.lease, wait_on("invoke", InvokeWait(child), step="price"))
    assert result.outcome == "conflict" and result.step is not None
    error = j(result.step.error)
    assert error["type"] == "ForeignRun" and child_id in error["message"]
    assert (result.step.status, (await run_of(store, parent.run.id)).status) == (
        "failed",
        "running",
    )
    # The planted run is left as it was, and was not made anyone's child.
    assert (await run_of(store, child_id)).status == "queued"
    assert (await run_of(store, foreign)).status == "queued"


async def test_an_invoke_of_its_own_child_is_the_same_child_again(store: Store) -> None:
    parent = await leased(store)
    child = NewRun(f"{parent.run.id}.c", "child-wf", orjson.dumps({}), parent=parent.run.id)
    assert await store.create_run(child) == (child.id, True)
    result = await store.park(parent.lease, wait_on("invoke", InvokeWait(child), step="c"))
    assert result.outcome == "parked"


async def test_a_lookback_through_the_event_index_finds_the_oldest_match(
    store: Store, clock: Any
) -> None:
    name = f"app/idx-{uuid.uuid4().hex[:6]}"
    # A first wait files data.k for the name: from then on its events are indexed.
    await parked_with_payload(
        store, {"k": "a"}, lambda t: event_wait(filing(name, match="data.k", trigger=t))
    )
    clock.advance(1)
    since = clock.now()
    clock.advance(1)
    for n, k in enumerate(["x", "y", "x", "y"]):
        await send(store, name, {"k": k, "n": n})
        clock.advance(0.01)
    found = await store.park(
        (await leased(store)).lease,
        event_wait(filing(name, match="data.k", trigger={"data": {"k": "y"}}), since=since),
    )
    assert found.outcome == "resolved" and found.step is not None
    assert j(found.step.output)["data"] == {"k": "y", "n": 1}
    # An exclusion (an event an earlier wait returned) passes over that one.
    again = await store.park(
        (await leased(store)).lease,
        event_wait(
            filing(name, match="data.k", trigger={"data": {"k": "y"}}),
            since=since,
            exclude=(j(found.step.output)["id"],),
        ),
    )
    assert again.step is not None and j(again.step.output)["data"] == {"k": "y", "n": 3}


async def test_a_runs_version_moves_with_the_run_its_steps_and_its_mailbox(
    store: Store, clock: Any
) -> None:
    from .test_store_contract import run_step

    claimed = await leased(store)
    run_id = claimed.run.id
    seen = [await store.run_version(run_id)]
    assert seen[0] is not None and await store.run_version("no-such-run") is None
    assert await store.run_version(run_id) == seen[0]  # nothing moved: the same token

    def moved() -> Any:
        async def check() -> None:
            version = await store.run_version(run_id)
            assert version not in seen
            seen.append(version)

        return check()

    await store.save_step(claimed.lease, run_step("a", at=clock.now()))
    await moved()
    clock.advance(1)
    await store.save_step(claimed.lease, run_step("a", status="retrying", attempts=2,
                                                  at=clock.now()))  # fmt: skip
    await moved()
    await store.park(claimed.lease, wait_on("message", MessageWait("go"), step="m"))
    await moved()
    assert await store.send_message(run_id, "other", b"{}") == "queued"
    await moved()
    assert await store.send_message(run_id, "go", b"{}") == "delivered"
    await moved()
    await store.cancel(run_id, None)
    await moved()
