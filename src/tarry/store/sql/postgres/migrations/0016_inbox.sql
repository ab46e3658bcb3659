-- The approvals inbox: the waits on people are the typed ones (a schema on a signal,
-- message or token waiter). Only waiters of parked runs exist, and this index holds
-- only the typed ones, so listing and counting them reads no ended run and no
-- untyped wait.
CREATE INDEX waiters_people ON waiters (run_id, step_key) WHERE json_schema IS NOT NULL
