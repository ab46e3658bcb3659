-- Lookbacks through an index: the value of every event at the paths its name's
-- waits are filed under.

-- A path some wait on an event name was filed under, and since when every event of
-- that name has its value at that path in event_keys.
CREATE TABLE event_paths (
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    since REAL NOT NULL,
    PRIMARY KEY (name, path)
) WITHOUT ROWID;
INSERT INTO event_paths (name, path, since)
SELECT DISTINCT key, path, CAST(strftime('%s', 'now') AS REAL) + 1 FROM waiters
WHERE kind IN ('event', 'cancel') AND path IS NOT NULL;

CREATE TABLE event_keys (
    event_seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    value TEXT NOT NULL,
    ts REAL NOT NULL
);
CREATE INDEX event_keys_lookup ON event_keys (name, path, value, ts);
CREATE INDEX event_keys_event ON event_keys (event_seq);
CREATE INDEX event_keys_ts ON event_keys (ts);

-- A value longer than 128 bytes is filed under its digest (matching.index_value).
UPDATE waiters SET value = tarry_index_value(value)
WHERE kind IN ('event', 'cancel') AND length(CAST(value AS BLOB)) > 128;
