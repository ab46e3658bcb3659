"""A claim hands the worker the time each run became due: its due time before the claim
wrote its lease's expiry there. The claim-latency histogram reads it, so a delayed
start counts from its due time, not from when it was started."""

from __future__ import annotations

from tarry.clock import ManualClock
from tarry.store.base import NewRun, Store, WorkflowConfig


async def test_a_claim_says_when_each_run_became_due(store: Store, clock: ManualClock) -> None:
    await store.sync_workflows([WorkflowConfig("wf")])
    started = clock.now()
    await store.create_run(NewRun("now", "wf", b"{}"))
    await store.create_run(NewRun("later", "wf", b"{}", due_at=started + 3600))
    clock.advance(5)
    first = await store.claim(["wf"], 10, 60.0, None)
    assert [(c.run.id, c.due_at) for c in first.runs] == [("now", started)]
    clock.advance(7200)
    # "now" is taken over: it became due again when the lease it was claimed with ended.
    second = await store.claim(["wf"], 10, 60.0, None)
    assert [(c.run.id, c.due_at) for c in second.runs] == [
        ("now", started + 5 + 60),
        ("later", started + 3600),
    ]
    # The full claim (a capped workflow takes it) says the same.
    created = clock.now()
    await store.create_run(NewRun("capped", "wf", b"{}"))
    clock.advance(2)
    third = await store.claim(["wf"], 10, 60.0, {"wf": 100})
    assert [(c.run.id, c.due_at) for c in third.runs] == [("capped", created)]
