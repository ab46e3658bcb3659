-- Events, triggers and event waits.

-- The event that started a run (NULL for a run started by App.start).
ALTER TABLE runs ADD COLUMN trigger bytea;

CREATE TABLE events (
    seq bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id text NOT NULL UNIQUE,
    name text NOT NULL,
    data bytea NOT NULL,
    ts double precision NOT NULL
);
CREATE INDEX events_name_ts ON events (name, ts);
CREATE INDEX events_ts ON events (ts);

-- Event and cancel waiters are filed under one equality they require:
-- path (on the incoming event) = value (canonical JSON). expr is the full CEL
-- condition, evaluated only on the waiters an event finds through this index.
ALTER TABLE waiters ADD COLUMN path text;
ALTER TABLE waiters ADD COLUMN value text;
ALTER TABLE waiters ADD COLUMN expr text;
CREATE INDEX waiters_match ON waiters (key, path, value) WHERE kind IN ('event', 'cancel');

-- What each registered workflow is started and cancelled by, written by every
-- App that registers it, so an event sent from any process starts and cancels
-- the right runs.
CREATE TABLE workflows (
    id text PRIMARY KEY,
    cancel_on bytea NOT NULL,
    updated_at double precision NOT NULL
);
CREATE TABLE triggers (
    workflow text NOT NULL,
    event text NOT NULL,
    expr text
);
CREATE INDEX triggers_event ON triggers (event);
CREATE INDEX triggers_workflow ON triggers (workflow);
