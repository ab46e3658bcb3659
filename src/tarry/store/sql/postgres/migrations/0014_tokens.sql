-- Callback tokens: each belongs to the run that created it (step_key is the step
-- that did), completes once (completed_at and data, set together), and expires at
-- expires_at (NULL: when its run ends). json_schema is the JSON Schema a completion
-- must fit, NULL for any JSON. A wait on a token is a waiter of kind token keyed
-- by the id of the token.
CREATE TABLE tokens (
    id text PRIMARY KEY,
    run_id text NOT NULL,
    step_key text NOT NULL,
    name text NOT NULL,
    json_schema bytea,
    created_at double precision NOT NULL,
    expires_at double precision,
    completed_at double precision,
    data bytea
);
CREATE INDEX tokens_run ON tokens (run_id);
CREATE INDEX waiters_token ON waiters (key) WHERE kind = 'token';

-- The secrets that sign token links: the current one (valid_until NULL) and those
-- rotated out, which still verify until valid_until.
CREATE TABLE token_secrets (
    value text PRIMARY KEY,
    created_at double precision NOT NULL,
    valid_until double precision
);
