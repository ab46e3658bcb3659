-- Runs: one row per run. due_at says when the run next needs a worker: now for a
-- queued or resumed run, the deadline of a timed wait, the lease expiry of a
-- leased run, NULL for a wait without deadline or an ended run. Times are epoch
-- seconds, as in the SQLite store.
CREATE TABLE runs (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE,
    workflow text NOT NULL,
    status text NOT NULL,
    payload bytea,
    output bytea,
    error bytea,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    ended_at double precision,
    due_at double precision,
    lease_token text,
    waiting_for bytea,
    cancel_requested boolean NOT NULL DEFAULT false,
    cancel_reason bytea
);
CREATE INDEX runs_due ON runs (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX runs_status ON runs (status, seq);
CREATE INDEX runs_workflow ON runs (workflow, seq);

CREATE TABLE steps (
    run_id text NOT NULL,
    key text NOT NULL,
    kind text NOT NULL,
    status text NOT NULL,
    output bytea,
    error bytea,
    attempts integer NOT NULL DEFAULT 0,
    started_at double precision,
    ended_at double precision,
    PRIMARY KEY (run_id, key)
);

-- A parked run's wake conditions. At most one run waits on a signal key.
CREATE TABLE waiters (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id text NOT NULL,
    step_key text NOT NULL,
    kind text NOT NULL,
    key text,
    expires_at double precision
);
CREATE UNIQUE INDEX waiters_signal_key ON waiters (key) WHERE kind = 'signal';
CREATE INDEX waiters_run ON waiters (run_id);

-- Signals sent while nobody waited on their key, consumed FIFO by the next wait.
CREATE TABLE signals (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key text NOT NULL,
    data bytea NOT NULL,
    created_at double precision NOT NULL,
    expires_at double precision NOT NULL
);
CREATE INDEX signals_key ON signals (key, id);
CREATE INDEX signals_expiry ON signals (expires_at);
