-- Claims that stay flat however many runs are parked. Each due-run lookup of the
-- claim has a partial index that holds only the rows it can return, so its plan
-- does not hang on the table's statistics (fresh, stale or none yet): the runs a
-- plain claim leases (queued, or leased with the lease's expiry), parked runs with a
-- deadline, and runs whose cancellation was requested.
CREATE INDEX runs_ready ON runs (due_at)
WHERE due_at IS NOT NULL AND status <> 'waiting' AND NOT cancel_requested;
CREATE INDEX runs_waiting_due ON runs (due_at)
WHERE due_at IS NOT NULL AND status = 'waiting';
CREATE INDEX runs_cancel_due ON runs (due_at)
WHERE due_at IS NOT NULL AND cancel_requested;
