-- Lookbacks through an index: the value of every event at the paths its name's
-- waits are filed under.

-- A path some wait on an event name was filed under, and since when every event of
-- that name has its value at that path in event_keys.
CREATE TABLE event_paths (
    name text NOT NULL,
    path text NOT NULL,
    since double precision NOT NULL,
    PRIMARY KEY (name, path)
);
INSERT INTO event_paths (name, path, since)
SELECT DISTINCT key, path, extract(epoch FROM clock_timestamp()) + 1 FROM waiters
WHERE kind IN ('event', 'cancel') AND path IS NOT NULL;

CREATE TABLE event_keys (
    event_seq bigint NOT NULL,
    name text NOT NULL,
    path text NOT NULL,
    value text NOT NULL,
    ts double precision NOT NULL
);
CREATE INDEX event_keys_lookup ON event_keys (name, path, value, ts);
CREATE INDEX event_keys_event ON event_keys (event_seq);
CREATE INDEX event_keys_ts ON event_keys (ts);

-- A value longer than 128 bytes is filed under its digest (matching.index_value).
UPDATE waiters SET value = '#sha256:' || encode(sha256(convert_to(value, 'UTF8')), 'hex')
WHERE kind IN ('event', 'cancel') AND octet_length(value) > 128;
