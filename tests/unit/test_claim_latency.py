"""When a claimed run became due, read from what the claim hands the worker."""

from __future__ import annotations

import math

from tarry.metrics.claim_latency import claim_latency
from tarry.store.records import ClaimedRun, Lease, RunRow, StepRow

CLAIMED_AT = 1000.0


def claimed(*steps: StepRow, created: float = 990.0) -> ClaimedRun:
    run = RunRow("r", "wf", "running", None, None, None, created, CLAIMED_AT, None,
                 CLAIMED_AT + 30, None, False, 1)  # fmt: skip
    return ClaimedRun(run, list(steps), Lease("r", "t"))


def step(status: str, kind: str = "run", ended: float | None = 900.0, due: float | None = None,
         started: float = 800.0) -> StepRow:  # fmt: skip
    return StepRow("s", kind, status, None, None, 1, started, ended, 1, None, due)


def test_a_fresh_run_was_due_when_it_was_created() -> None:
    assert claim_latency(claimed(), asleep=False) == 10.0


def test_a_resumed_run_was_due_when_its_wait_was_answered() -> None:
    answered = step("completed", "signal", ended=996.5, due=math.inf)
    older = step("completed", ended=900.0)
    assert claim_latency(claimed(older, answered), asleep=False) == 3.5


def test_a_wait_timed_out_by_the_claim_was_due_at_its_deadline() -> None:
    timed_out = step("timed_out", "signal", ended=CLAIMED_AT, due=998.0)
    assert claim_latency(claimed(timed_out), asleep=False) == 2.0
    slept = step("completed", "sleep", ended=CLAIMED_AT, due=999.75)
    assert claim_latency(claimed(slept), asleep=False) == 0.25


def test_unknown_after_a_backoff_or_for_a_run_asleep_here() -> None:
    assert claim_latency(claimed(step("retrying", ended=999.0)), asleep=False) is None
    assert claim_latency(claimed(), asleep=True) is None
    assert claim_latency(claimed(step("waiting", "signal", ended=None)), asleep=False) is None


def test_never_negative() -> None:
    assert claim_latency(claimed(created=CLAIMED_AT + 0.001), asleep=False) == 0.0


def test_the_claims_due_time_wins_over_the_records() -> None:
    """A delayed start, a retry's backoff, a run asleep here: the claim's due time says."""
    delayed = ClaimedRun(claimed().run, [], Lease("r", "t"), due_at=999.5)
    assert claim_latency(delayed, asleep=False) == 0.5  # not the 10 s since it was created
    backoff = claimed(step("retrying", ended=900.0))
    backoff.due_at = 998.0
    assert claim_latency(backoff, asleep=False) == 2.0
    assert claim_latency(delayed, asleep=True) == 0.5
