"""The Store contract for the dashboard's reads, on both stores: its signing keys, the
runs search with counts per status, what an event started and resumed, a run's waits."""

from __future__ import annotations

import uuid
from dataclasses import replace

import orjson

from tarry.clock import ManualClock
from tarry.store import open_store
from tarry.store.base import NewRun, Store, WorkflowConfig
from tarry.store.dashboard_records import RunSearch

from .test_store_contract import create, j, leased, parked_on
from .test_store_operations import event_wait, filing, invoke_wait, parked_with_payload, send


async def test_the_first_key_offered_is_kept_for_every_later_server(
    store: Store, database_url: str, clock: ManualClock
) -> None:
    assert await store.dashboard_key("session", "first") == "first"
    assert await store.dashboard_key("session", "second") == "first"
    assert await store.dashboard_key("other", "own") == "own"
    again = open_store(database_url, clock=clock)  # a restarted server
    await again.open()
    try:
        assert await again.dashboard_key("session", "third") == "first"
    finally:
        await again.close()


async def test_search_by_prefixes_status_and_creation_time(
    store: Store, clock: ManualClock
) -> None:
    tag = uuid.uuid4().hex[:6]
    shop, other = f"shop-{tag}", f"other-{tag}"
    start = clock.now()
    ids = []
    for n, workflow in enumerate([shop, shop + "-eu", other, shop]):
        run_id = f"{tag}-{n}-{uuid.uuid4().hex[:4]}"
        await store.create_run(NewRun(run_id, workflow, b"{}"))
        ids.append(run_id)
        clock.advance(10)
    parked = await parked_on(store, f"key-{tag}")  # a waiting run of its own workflow
    await store.cancel(ids[3], orjson.dumps({"type": "Cancelled", "message": "no"}))

    def search(**where: object) -> RunSearch:
        return RunSearch(**where)  # type: ignore[arg-type]

    found = await store.search_runs(search(workflow_prefix="shop-" + tag), limit=10, cursor=None)
    assert [r.id for r in found.runs] == [ids[3], ids[1], ids[0]]  # newest first
    assert found.counts == {"queued": 2, "cancelled": 1}

    queued = await store.search_runs(
        search(workflow_prefix="shop-" + tag, status="queued"), limit=10, cursor=None
    )
    assert [r.id for r in queued.runs] == [ids[1], ids[0]]
    assert queued.counts == {"queued": 2, "cancelled": 1}  # counts ignore the status chosen

    by_id = await store.search_runs(search(id_prefix=f"{tag}-2"), limit=10, cursor=None)
    assert [r.id for r in by_id.runs] == [ids[2]]
    assert (
        await store.search_runs(search(id_prefix=parked.run.id), limit=5, cursor=None)
    ).counts == {"waiting": 1}

    window = search(id_prefix=tag, since=start + 5, until=start + 25)
    assert [r.id for r in (await store.search_runs(window, limit=10, cursor=None)).runs] == [
        ids[2],
        ids[1],
    ]

    first = await store.search_runs(search(id_prefix=tag), limit=2, cursor=None, counts=False)
    assert [r.id for r in first.runs] == [ids[3], ids[2]] and first.counts == {}
    rest = await store.search_runs(search(id_prefix=tag), limit=10, cursor=first.runs[-1].seq)
    assert [r.id for r in rest.runs] == [ids[1], ids[0]]
    counted = await store.search_runs(search(id_prefix=tag), limit=0, cursor=None)
    assert counted.runs == [] and counted.counts == {"queued": 3, "cancelled": 1}
    none = await store.search_runs(search(id_prefix="no-such-" + tag), limit=10, cursor=None)
    assert none.runs == [] and none.counts == {}


async def test_what_an_event_started_and_resumed(store: Store, clock: ManualClock) -> None:
    tag = uuid.uuid4().hex[:6]
    name = f"app/signup-{tag}"
    await store.sync_workflows([WorkflowConfig(f"welcome-{tag}", ((name, None),))])
    waiting = await parked_with_payload(
        store,
        {"user": "u1"},
        lambda trigger: replace(
            event_wait(filing(name, match="data.user", trigger=trigger), step="wait-signup"),
            spec=f"event {name!r} match 'data.user'",
        ),
    )
    waits = await store.run_detail(waiting)
    assert waits is not None and waits.trigger is None
    assert waits.specs == {"wait-signup": f"event {name!r} match 'data.user'"}
    [pending] = waits.pending
    assert (pending.step, pending.kind, pending.key) == ("wait-signup", "event", name)
    assert (pending.path, j(pending.value.encode() if pending.value else None)) == (
        "data.user",
        "u1",
    )

    clock.advance(5)
    sent_at = clock.now()
    outcome = await send(store, name, {"user": "u1"}, event_id=f"ev-{tag}")
    assert outcome.resumed == (waiting,) and len(outcome.started) == 1
    event = await store.get_event(f"ev-{tag}")
    assert event is not None and event.name == name and j(event.data) == {"user": "u1"}
    assert await store.get_event("no-such-event") is None

    links = await store.event_links(sent_at - 1, sent_at + 1)
    started = {run_id: j(trigger) for run_id, trigger in links.started}
    assert started[outcome.started[0]]["id"] == f"ev-{tag}"
    resumed = {(run_id, key): j(output) for run_id, key, output in links.resumed}
    assert resumed[(waiting, "wait-signup")]["id"] == f"ev-{tag}"
    later = await store.event_links(sent_at + 1, sent_at + 2)
    assert outcome.started[0] not in dict(later.started)
    assert waiting not in {run_id for run_id, _, _ in later.resumed}

    started_waits = await store.run_detail(outcome.started[0])
    assert started_waits is not None and started_waits.trigger is not None
    assert j(started_waits.trigger)["id"] == f"ev-{tag}"
    assert await store.run_detail("no-such-run") is None


async def test_a_run_with_no_waits_has_none_pending(store: Store) -> None:
    run_id = await create(store)
    waits = await store.run_detail(run_id)
    assert waits is not None and waits.specs == {} and waits.pending == []
    claimed = await leased(store)
    assert (await store.run_detail(claimed.run.id)).pending == []  # type: ignore[union-attr]


async def test_a_run_knows_the_run_that_invoked_it_and_those_it_invoked(store: Store) -> None:
    parent = await leased(store)
    child = NewRun(f"{parent.run.id}.inv", "child-wf", b"{}", None, parent.run.id)
    assert (await store.park(parent.lease, invoke_wait(child))).outcome == "parked"
    up = await store.run_detail(parent.run.id)
    assert up is not None and up.parent is None and up.children == [child.id]
    [pending] = up.pending
    assert (pending.kind, pending.key) == ("invoke", child.id)
    down = await store.run_detail(child.id)
    assert down is not None and down.parent == parent.run.id and down.children == []


def test_the_event_links_read_their_partial_index_on_sqlite(tmp_path: object) -> None:
    """SQLite uses a partial index only for a query that names its condition as it is
    written: ``event_steps_ended_since`` and ``steps_event_ended`` (0020) must agree,
    or the events page reads every step record."""
    import asyncio
    import sqlite3

    from tarry.store.sql import load_queries

    path = f"{tmp_path}/plan.db"
    fresh = open_store(f"sqlite:///{path}")
    asyncio.run(fresh.open())
    asyncio.run(fresh.close())
    query = load_queries("sqlite")["event_steps_ended_since"]
    with sqlite3.connect(path) as conn:
        plan = [
            row[3]
            for row in conn.execute(f"EXPLAIN QUERY PLAN {query}", {"since": 0.0, "limit": 10})
        ]
    assert plan == ["SEARCH steps USING INDEX steps_event_ended (ended_at>?)"], plan
