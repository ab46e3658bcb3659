-- Typed waits: the JSON Schema a wait declared (schema=), kept on each of its
-- waiters, checked against the data a signal or message brings before it is
-- delivered. NULL for a wait without a schema, so untyped waits store nothing more.
ALTER TABLE waiters ADD COLUMN json_schema BLOB;
