-- Events, triggers and event waits.

-- The event that started a run (NULL for a run started by App.start).
ALTER TABLE runs ADD COLUMN trigger BLOB;

CREATE TABLE events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    data BLOB NOT NULL,
    ts REAL NOT NULL
);
CREATE INDEX events_name_ts ON events (name, ts);
CREATE INDEX events_ts ON events (ts);

-- Event and cancel waiters are filed under one equality they require:
-- path (on the incoming event) = value (canonical JSON). expr is the full CEL
-- condition, evaluated only on the waiters an event finds through this index.
ALTER TABLE waiters ADD COLUMN path TEXT;
ALTER TABLE waiters ADD COLUMN value TEXT;
ALTER TABLE waiters ADD COLUMN expr TEXT;
CREATE INDEX waiters_match ON waiters (key, path, value) WHERE kind IN ('event', 'cancel');

-- What each registered workflow is started and cancelled by, written by every
-- App that registers it, so an event sent from any process starts and cancels
-- the right runs.
CREATE TABLE workflows (
    id TEXT PRIMARY KEY,
    cancel_on BLOB NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE triggers (
    workflow TEXT NOT NULL,
    event TEXT NOT NULL,
    expr TEXT
);
CREATE INDEX triggers_event ON triggers (event);
CREATE INDEX triggers_workflow ON triggers (workflow);
