-- The dashboard: the keys that sign its sessions and forms, kept in the store so
-- that a restart of the server does not end the sessions of open tabs, and the
-- indexes that link an event to the runs it started and resumed.

CREATE TABLE dashboard_keys (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    created_at REAL NOT NULL
);

-- The runs an event started were created in its transaction, so by creation time.
CREATE INDEX runs_triggered ON runs (created_at) WHERE trigger IS NOT NULL;

-- The runs an event resumed hold it in a wait step that ended then or later.
CREATE INDEX steps_event_ended ON steps (ended_at) WHERE kind IN ('event', 'any', 'all');
