-- Run mailboxes, wait_for_any, invoke and per-workflow concurrency.

CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    name TEXT NOT NULL,
    data BLOB NOT NULL,
    sent_at REAL NOT NULL,
    consumed_by TEXT,
    consumed_at REAL
);
CREATE INDEX messages_run ON messages (run_id, seq);

-- For a wait_for_any, which of the step's conditions a waiter stands for.
ALTER TABLE waiters ADD COLUMN idx INTEGER;
CREATE INDEX waiters_invoke ON waiters (key) WHERE kind = 'invoke';

-- The run that invoked this one.
ALTER TABLE runs ADD COLUMN parent_id TEXT;

-- Counting a workflow's leased runs for its concurrency cap.
CREATE INDEX runs_workflow_status ON runs (workflow, status);
