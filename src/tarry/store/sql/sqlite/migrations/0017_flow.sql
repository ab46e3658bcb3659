-- Flow control (keyed concurrency, rate limits, debounce, priority).
-- workflows.flow: the rules of a workflow that has any, as JSON (NULL: none).
ALTER TABLE workflows ADD COLUMN flow BLOB;
-- runs.priority: higher is claimed first among due runs.
ALTER TABLE runs ADD COLUMN priority INTEGER NOT NULL DEFAULT 0;
-- The due runs of a priority other than 0, for the claim to take first: a partial
-- index, empty while no run has one, so the plain claim pays one empty probe.
CREATE INDEX runs_due_priority ON runs (priority DESC, due_at)
WHERE due_at IS NOT NULL AND priority <> 0;
-- A run key per flow rule, computed once when the run is created: c:<expr> for a
-- concurrency limit (kept while the run lives), r:<workflow> for a rate and
-- d:<workflow> for a debounce (both deleted when the run first starts).
CREATE TABLE run_keys (
    run_id TEXT NOT NULL,
    limit_id TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, limit_id)
) WITHOUT ROWID;
CREATE INDEX run_keys_value ON run_keys (limit_id, value);
-- The GCRA state of a rate per key: the theoretical arrival time of the next start.
CREATE TABLE flow_rates (
    limit_id TEXT NOT NULL,
    value TEXT NOT NULL,
    tat REAL NOT NULL,
    PRIMARY KEY (limit_id, value)
) WITHOUT ROWID
