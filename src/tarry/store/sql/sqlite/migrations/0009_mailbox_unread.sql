-- A run's unread messages without reading past the ones it took: a wait for a
-- message looks at the first unread, and a long-lived run keeps every message it
-- has read (an agent loop reads one per turn).
CREATE INDEX messages_unread ON messages (run_id, seq) WHERE consumed_by IS NULL;
