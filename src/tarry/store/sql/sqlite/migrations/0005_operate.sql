-- Operating runs: the order steps were recorded in, every failed attempt of a
-- step, what was done to a run from outside its code, cascading cancels and
-- retention.

-- The place of the step in its run: the n-th step the handler reached (forks cut here).
ALTER TABLE steps ADD COLUMN pos INTEGER;

-- Every attempt of a step that raised, with its traceback, oldest first.
CREATE TABLE step_attempts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    key TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    error BLOB NOT NULL,
    started_at REAL,
    ended_at REAL
);
CREATE INDEX step_attempts_run ON step_attempts (run_id, seq);

-- Retried, forked: what was done to a run from outside its code, and by whom.
CREATE TABLE run_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    at REAL NOT NULL,
    action TEXT NOT NULL,
    detail BLOB NOT NULL
);
CREATE INDEX run_changes_run ON run_changes (run_id, seq);

-- A cancel reaches the runs a run invoked, and retention finds the ended runs of a workflow
-- by age.
CREATE INDEX runs_parent ON runs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX runs_ended ON runs (workflow, ended_at) WHERE ended_at IS NOT NULL;
