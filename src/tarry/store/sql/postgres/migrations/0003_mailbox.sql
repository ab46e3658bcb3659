-- Run mailboxes, wait_for_any, invoke and per-workflow concurrency.

CREATE TABLE messages (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id text NOT NULL,
    name text NOT NULL,
    data bytea NOT NULL,
    sent_at double precision NOT NULL,
    consumed_by text,
    consumed_at double precision
);
CREATE INDEX messages_run ON messages (run_id, seq);

-- For a wait_for_any, which of the step's conditions a waiter stands for.
ALTER TABLE waiters ADD COLUMN idx integer;
CREATE INDEX waiters_invoke ON waiters (key) WHERE kind = 'invoke';

-- The run that invoked this one.
ALTER TABLE runs ADD COLUMN parent_id text;

-- Counting a workflow's leased runs for its concurrency cap.
CREATE INDEX runs_workflow_status ON runs (workflow, status);

-- Listing the stored events of one name, newest first.
CREATE INDEX events_name_seq ON events (name, seq);
