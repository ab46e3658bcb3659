-- Callback tokens: each belongs to the run that created it (step_key is the step
-- that did), completes once (completed_at and data, set together), and expires at
-- expires_at (NULL: when its run ends). json_schema is the JSON Schema a completion
-- must fit, NULL for any JSON. A wait on a token is a waiter of kind token keyed
-- by the id of the token.
CREATE TABLE tokens (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    step_key TEXT NOT NULL,
    name TEXT NOT NULL,
    json_schema BLOB,
    created_at REAL NOT NULL,
    expires_at REAL,
    completed_at REAL,
    data BLOB
) WITHOUT ROWID;
CREATE INDEX tokens_run ON tokens (run_id);
CREATE INDEX waiters_token ON waiters (key) WHERE kind = 'token';

-- The secrets that sign token links: the current one (valid_until NULL) and those
-- rotated out, which still verify until valid_until.
CREATE TABLE token_secrets (
    value TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    valid_until REAL
) WITHOUT ROWID;
