-- Runs: one row per run. due_at says when the run next needs a worker: now for a
-- queued or resumed run, the deadline of a timed wait, the lease expiry of a
-- leased run, NULL for a wait without deadline or an ended run.
CREATE TABLE runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    workflow TEXT NOT NULL,
    status TEXT NOT NULL,
    payload BLOB,
    output BLOB,
    error BLOB,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    ended_at REAL,
    due_at REAL,
    lease_token TEXT,
    waiting_for BLOB,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    cancel_reason BLOB
);
CREATE INDEX runs_due ON runs (due_at, workflow) WHERE due_at IS NOT NULL;
CREATE INDEX runs_status ON runs (status, seq);
CREATE INDEX runs_workflow ON runs (workflow, seq);

CREATE TABLE steps (
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    output BLOB,
    error BLOB,
    attempts INTEGER NOT NULL DEFAULT 0,
    started_at REAL,
    ended_at REAL,
    PRIMARY KEY (run_id, key)
) WITHOUT ROWID;

-- A parked run's wake conditions. At most one run waits on a signal key.
CREATE TABLE waiters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    step_key TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT,
    expires_at REAL
);
CREATE UNIQUE INDEX waiters_signal_key ON waiters (key) WHERE kind = 'signal';
CREATE INDEX waiters_run ON waiters (run_id);

-- Signals sent while nobody waited on their key, consumed FIFO by the next wait.
CREATE TABLE signals (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL,
    data BLOB NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE INDEX signals_key ON signals (key, id);
