-- Flow control (keyed concurrency, rate limits, debounce, priority).
-- workflows.flow: the rules of a workflow that has any, as JSON (NULL: none).
ALTER TABLE workflows ADD COLUMN flow bytea;
-- runs.priority: higher is claimed first among due runs.
ALTER TABLE runs ADD COLUMN priority integer NOT NULL DEFAULT 0;
-- The ready runs of a priority other than 0 (runs_ready of 0010, narrowed), for the
-- claim to take first: empty while no run has one, so the plain claim pays one
-- empty probe, and its plan does not hang on statistics.
CREATE INDEX runs_ready_priority ON runs (priority DESC, due_at)
WHERE due_at IS NOT NULL AND status <> 'waiting' AND NOT cancel_requested AND priority <> 0;
-- A run key per flow rule, computed once when the run is created: c:<expr> for a
-- concurrency limit (kept while the run lives), r:<workflow> for a rate and
-- d:<workflow> for a debounce (both deleted when the run first starts).
CREATE TABLE run_keys (
    run_id text NOT NULL,
    limit_id text NOT NULL,
    value text NOT NULL,
    PRIMARY KEY (run_id, limit_id)
);
CREATE INDEX run_keys_value ON run_keys (limit_id, value);
-- The GCRA state of a rate per key: the theoretical arrival time of the next start.
CREATE TABLE flow_rates (
    limit_id text NOT NULL,
    value text NOT NULL,
    tat double precision NOT NULL,
    PRIMARY KEY (limit_id, value)
)
