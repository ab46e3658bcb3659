-- Safe deploys: the code version each run started on and last ran under, and what
-- each wait was parked on, so that a replay under new code can tell a changed wait
-- from the stored one.
ALTER TABLE runs ADD COLUMN version text;
ALTER TABLE runs ADD COLUMN last_version text;
ALTER TABLE steps ADD COLUMN spec text;
CREATE INDEX runs_version ON runs (version, seq) WHERE version IS NOT NULL;
