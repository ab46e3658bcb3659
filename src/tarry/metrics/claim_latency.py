"""How long a claimed run was due before a worker claimed it.

The claim hands the worker the run's due time from before it wrote its lease's
expiry there (``ClaimedRun.due_at``): when the run was started or queued by an
event, when its delayed start, retry backoff, debounce window or rate slot came,
when a signal, event, message or child resumed it, its wait's deadline, or when
the lease it was taken over from expired. A claim that does not say (a record made
by hand) is read from the run's records instead:

- a run with no step records was due when it was created (started, or queued
  by an event);
- otherwise it became due when its newest step record ended: a wait resolved
  by a signal, event, message or child run; a wait the claim itself timed out
  (a sleep, a deadline) was due at its own deadline, which the record keeps.

Unknown (None) from the records, and left out of the histogram: a run claimed
after a retry's backoff (the record keeps when the attempt failed, not the delay),
and a run asleep in the worker since it parked (claimed without its records).

Imported by the worker, so it imports nothing of Prometheus.
"""

from __future__ import annotations

from ..store.records import ClaimedRun


def claim_latency(claimed: ClaimedRun, asleep: bool) -> float | None:
    """Seconds from due to claimed, or None where the records do not say."""
    run = claimed.run
    if claimed.due_at is not None:
        return max(0.0, run.updated_at - claimed.due_at)  # the claim writes its time there
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
