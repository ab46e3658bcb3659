"""How long a claimed run was due before a worker claimed it, from its records alone.

The claim itself overwrites the run's due time (with its lease's expiry), so the
time it became due is read from what the claim hands the worker:

- a run with no step records was due when it was created (started, or queued
  by an event);
- otherwise it became due when its newest step record ended: a wait resolved
  by a signal, event, message or child run; a wait the claim itself timed out
  (a sleep, a deadline) was due at its own deadline, which the record keeps.

Unknown (None), and left out of the histogram: a run claimed after a retry's
backoff (the record keeps when the attempt failed, not the delay), and a run
asleep in the worker since it parked (claimed without its records). A run taken
over after its worker lost the lease counts from its last step: the time it
really stood due without progress.

Imported by the worker, so it imports nothing of Prometheus.
"""

from __future__ import annotations

from ..store.records import ClaimedRun


def claim_latency(claimed: ClaimedRun, asleep: bool) -> float | None:
    """Seconds from due to claimed, or None where the records do not say."""
    run = claimed.run
    if asleep:
        return None
    if not claimed.steps:
        due = run.created_at
    else:
        newest = max(claimed.steps, key=lambda step: step.ended_at or 0.0)
        if newest.ended_at is None or newest.status == "retrying":
            return None
        due = newest.ended_at
        if newest.due_at is not None and newest.due_at < due:
            due = newest.due_at  # timed out by this claim: due at its deadline
    return max(0.0, run.updated_at - due)  # the claim writes its own time there
