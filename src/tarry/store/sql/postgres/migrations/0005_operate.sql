-- Operating runs: the order steps were recorded in, every failed attempt of a
-- step, what was done to a run from outside its code, cascading cancels and
-- retention.

-- The place of the step in its run: the n-th step the handler reached (forks cut here).
ALTER TABLE steps ADD COLUMN pos integer;

-- Every attempt of a step that raised, with its traceback, oldest first.
CREATE TABLE step_attempts (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id text NOT NULL,
    key text NOT NULL,
    attempt integer NOT NULL,
    error bytea NOT NULL,
    started_at double precision,
    ended_at double precision
);
CREATE INDEX step_attempts_run ON step_attempts (run_id, seq);

-- Retried, forked: what was done to a run from outside its code, and by whom.
CREATE TABLE run_changes (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id text NOT NULL,
    at double precision NOT NULL,
    action text NOT NULL,
    detail bytea NOT NULL
);
CREATE INDEX run_changes_run ON run_changes (run_id, seq);

-- A cancel reaches the runs a run invoked, and retention finds the ended runs of a workflow
-- by age.
CREATE INDEX runs_parent ON runs (parent_id) WHERE parent_id IS NOT NULL;
CREATE INDEX runs_ended ON runs (workflow, ended_at) WHERE ended_at IS NOT NULL;
