-- steps_event_ended (0012) again, its condition written as ORs instead of an IN
-- list. SQLite checks a partial index's condition on every insert into the table,
-- and the IN list made every step save dearer: 58-64 us of CPU against 46-51 us
-- with the ORs, while the 3-step workflow runs (bench/statement_cpu.py). A query
-- reads the index only if it names the same ORs (event_steps_ended_since).
DROP INDEX steps_event_ended;
CREATE INDEX steps_event_ended ON steps (ended_at)
WHERE kind = 'event' OR kind = 'any' OR kind = 'all';
