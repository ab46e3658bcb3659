-- Named queries shared by both stores, in the ``:name`` parameter style (the
-- PostgreSQL store rewrites it to psycopg's). A dialect's own file overrides a
-- query by name where its SQL must differ (locking, arrays, one-statement forms):
-- sqlite.sql and postgres.sql beside this file.

-- name: insert_run
INSERT INTO runs (id, workflow, status, payload, trigger, parent_id, created_at, updated_at,
                  due_at, version, last_version, trace, priority)
VALUES (:id, :workflow, 'queued', :payload, :trigger, :parent, :now, :now, :due_at, :version,
        :version, :trace, :priority)
ON CONFLICT (id) DO NOTHING;

-- name: insert_leased_run
-- A run started in a process whose worker has room (``App.start``): inserted as
-- that worker's claim would leave it, leased, due when the lease expires.
INSERT INTO runs (id, workflow, status, payload, trigger, parent_id, created_at, updated_at,
                  due_at, version, last_version, trace, priority, lease_token)
VALUES (:id, :workflow, 'running', :payload, :trigger, :parent, :now, :now, :lease_until,
        :version, :version, :trace, :priority, :token)
ON CONFLICT (id) DO NOTHING
RETURNING seq, id, workflow, status, payload, output, error, created_at, updated_at, ended_at,
          due_at, waiting_for, cancel_requested, trigger, version, last_version, trace;

-- name: workflow_cancel_on
SELECT cancel_on, flow FROM workflows WHERE id = :id;

-- name: select_run
SELECT seq, id, workflow, status, payload, output, error, created_at, updated_at, ended_at,
       due_at, waiting_for, cancel_requested, trigger, version, last_version
FROM runs WHERE id = :id;

-- name: lock_run
-- The run, its row locked where the store locks rows: every transaction locks the
-- run's row before its waiters, so they queue instead of deadlocking.
SELECT seq, id, workflow, status, payload, output, error, created_at, updated_at, ended_at,
       due_at, waiting_for, cancel_requested, trigger, version, last_version
FROM runs WHERE id = :id;

-- name: run_parent
SELECT parent_id FROM runs WHERE id = :id;

-- name: select_step
SELECT run_id, key, kind, status, output, error, attempts, started_at, ended_at, pos, spec,
       due_at, need, trace
FROM steps WHERE run_id = :run_id AND key = :key;

-- name: upsert_step
INSERT INTO steps (run_id, key, kind, status, output, error, attempts, started_at, ended_at,
                   pos, spec, due_at, need)
VALUES (:run_id, :key, :kind, :status, :output, :error, :attempts, :started_at, :ended_at,
        :pos, :spec, :due_at, :need)
ON CONFLICT (run_id, key) DO UPDATE SET
    kind = excluded.kind, status = excluded.status, output = excluded.output,
    error = excluded.error, attempts = excluded.attempts, started_at = excluded.started_at,
    ended_at = excluded.ended_at, pos = coalesce(excluded.pos, steps.pos),
    spec = coalesce(excluded.spec, steps.spec),
    due_at = excluded.due_at, need = coalesce(excluded.need, steps.need);

-- name: release_run
UPDATE runs
SET status = :status, lease_token = NULL, due_at = :due_at, waiting_for = :waiting_for,
    updated_at = :now
WHERE id = :run_id;

-- name: end_run
UPDATE runs
SET status = :status, output = :output, error = :error, ended_at = :now, updated_at = :now,
    due_at = NULL, lease_token = NULL, waiting_for = NULL
WHERE id = :run_id;

-- name: finish_orphan
-- The common end in one statement, for a run that no parent invoked (a child's end
-- must resume its parent) and nobody asked to cancel (a pending cancel wins over the
-- end). No row changed: the lease was lost, or the run needs the full path. (No
-- RETURNING: on SQLite it costs more than the row count it would tell.)
UPDATE runs
SET status = :status, output = :output, error = :error, ended_at = :now, updated_at = :now,
    due_at = NULL, lease_token = NULL, waiting_for = NULL
WHERE id = :run_id AND lease_token = :token AND parent_id IS NULL AND NOT cancel_requested;

-- name: end_run_with_cancel_reason
UPDATE runs
SET status = 'cancelled', error = cancel_reason, ended_at = :now, updated_at = :now,
    due_at = NULL, lease_token = NULL, waiting_for = NULL
WHERE id = :run_id;

-- name: cancel_waiting_steps
UPDATE steps SET status = 'cancelled', ended_at = :now
WHERE run_id = :run_id AND status = 'waiting';

-- name: request_cancel
UPDATE runs SET cancel_requested = TRUE, cancel_reason = :reason, updated_at = :now
WHERE id = :run_id;

-- name: delete_run_waiters
DELETE FROM waiters WHERE run_id = :run_id;

-- name: count_leased
SELECT count(*) FROM runs WHERE workflow = :workflow AND status = 'running';

-- name: first_buffered_signal
SELECT id, data FROM signals
WHERE key = :key AND expires_at > :now
ORDER BY id
LIMIT 1;

-- name: buffered_signals
-- For a typed wait, which takes the oldest whose data fits its schema.
SELECT id, data FROM signals
WHERE key = :key AND expires_at > :now
ORDER BY id;

-- name: delete_signal
DELETE FROM signals WHERE id = :id;

-- name: buffer_signal
INSERT INTO signals (key, data, created_at, expires_at)
VALUES (:key, :data, :now, :expires_at);

-- name: purge_signals
DELETE FROM signals WHERE expires_at <= :now;

-- name: signal_waiter
SELECT run_id, step_key, idx FROM waiters WHERE kind = 'signal' AND key = :key;

-- name: lock_signal_waiter_run
-- The run waiting on a signal key, its row locked (runs before waiters).
SELECT id FROM runs
WHERE id = (SELECT run_id FROM waiters WHERE kind = 'signal' AND key = :key);

-- name: lock_signal_waiter
SELECT run_id, step_key, idx, json_schema FROM waiters
WHERE kind = 'signal' AND key = :key AND run_id = :run_id;

-- name: lock_waiter
SELECT id FROM waiters WHERE id = :id;

-- name: insert_waiter
INSERT INTO waiters (run_id, step_key, kind, key, expires_at, path, value, expr, idx,
                     json_schema)
VALUES (:run_id, :step_key, :kind, :key, :expires_at, :path, :value, :expr, :idx,
        :json_schema);

-- name: waiters_by_value
SELECT id, run_id, step_key, kind, expr, idx FROM waiters
WHERE kind IN ('event', 'cancel') AND key = :name AND path = :path AND value = :value;

-- name: waiters_unindexed
SELECT id, run_id, step_key, kind, expr, idx FROM waiters
WHERE kind IN ('event', 'cancel') AND key = :name AND path IS NULL;

-- name: invoke_waiter
SELECT id, run_id, step_key, idx FROM waiters WHERE kind = 'invoke' AND key = :key;

-- name: run_trigger
SELECT workflow, payload, trigger FROM runs WHERE id = :id;

-- name: event_by_id
SELECT ts FROM events WHERE id = :id;

-- name: delete_event
DELETE FROM events WHERE id = :id;

-- name: delete_event_keys
DELETE FROM event_keys WHERE event_seq IN (SELECT seq FROM events WHERE id = :id);

-- name: insert_event
INSERT INTO events (id, name, data, ts) VALUES (:id, :name, :data, :ts)
RETURNING seq;

-- name: event_paths_of
SELECT path FROM event_paths WHERE name = :name;

-- name: file_event_path
INSERT INTO event_paths (name, path, since) VALUES (:name, :path, :now)
ON CONFLICT (name, path) DO NOTHING;

-- name: event_path_since
SELECT since FROM event_paths WHERE name = :name AND path = :path;

-- name: insert_event_key
INSERT INTO event_keys (event_seq, name, path, value, ts)
VALUES (:event_seq, :name, :path, :value, :ts);

-- name: events_by_key
-- A lookback through the index: the events of a name whose value at a path is the
-- one a wait needs, since a time.
SELECT e.id, e.name, e.data, e.ts FROM event_keys AS k JOIN events AS e ON e.seq = k.event_seq
WHERE k.name = :name AND k.path = :path AND k.value = :value AND k.ts >= :since
ORDER BY k.ts, k.event_seq;

-- name: events_since
SELECT id, name, data, ts FROM events
WHERE name = :name AND ts >= :since
ORDER BY ts, seq;

-- name: purge_events
DELETE FROM events WHERE ts <= :before;

-- name: purge_event_keys
DELETE FROM event_keys WHERE ts <= :before;

-- name: list_events
SELECT seq, id, name, data, ts FROM events
WHERE (CAST(:name AS TEXT) IS NULL OR name = CAST(:name AS TEXT))
  AND (CAST(:cursor AS BIGINT) IS NULL OR seq < CAST(:cursor AS BIGINT))
ORDER BY seq DESC
LIMIT :limit;

-- name: triggers_for_event
SELECT workflow, expr FROM triggers WHERE event = :event;

-- name: upsert_workflow
INSERT INTO workflows (id, cancel_on, flow, updated_at) VALUES (:id, :cancel_on, :flow, :now)
ON CONFLICT (id) DO UPDATE SET cancel_on = excluded.cancel_on, flow = excluded.flow,
    updated_at = excluded.updated_at;

-- name: delete_workflow_triggers
DELETE FROM triggers WHERE workflow = :workflow;

-- name: insert_trigger
INSERT INTO triggers (workflow, event, expr) VALUES (:workflow, :event, :expr);

-- name: first_message
-- Where rows are locked, the caller holds the run's, which every sender to its
-- mailbox takes.
SELECT seq, name, data, sent_at FROM messages
WHERE run_id = :run_id AND consumed_by IS NULL
  AND (CAST(:name AS TEXT) IS NULL OR name = CAST(:name AS TEXT))
ORDER BY seq
LIMIT 1;

-- name: queued_messages
-- For a typed wait, which takes the oldest whose data fits its schema.
SELECT seq, name, data, sent_at FROM messages
WHERE run_id = :run_id AND consumed_by IS NULL
  AND (CAST(:name AS TEXT) IS NULL OR name = CAST(:name AS TEXT))
ORDER BY seq;

-- name: consume_message
UPDATE messages SET consumed_by = :step_key, consumed_at = :now WHERE seq = :seq;

-- name: insert_message
INSERT INTO messages (run_id, name, data, sent_at) VALUES (:run_id, :name, :data, :now)
RETURNING seq;

-- name: message_waiters
-- The run's message waiters this name would wake, first filed first: the first
-- whose schema (if any) the data fits takes it.
SELECT step_key, idx, json_schema FROM waiters
WHERE run_id = :run_id AND kind = 'message' AND (key IS NULL OR key = :name)
ORDER BY id;

-- name: list_messages
SELECT name, data, sent_at, consumed_by FROM messages WHERE run_id = :run_id ORDER BY seq;

-- name: events_unindexed
-- The stored events of a name not yet in the index at a path: added once, when a
-- wait first needs the path to cover them.
SELECT e.seq, e.data, e.ts FROM events AS e
WHERE e.name = :name
  AND NOT EXISTS (SELECT 1 FROM event_keys AS k WHERE k.event_seq = e.seq AND k.path = :path)
ORDER BY e.seq;

-- name: event_path_covered
-- Every stored event of the name is in the index at the path: since before any time.
UPDATE event_paths SET since = -1 WHERE name = :name AND path = :path;

-- name: run_version
-- What changes whenever the run, one of its steps or its mailbox does: a page that
-- shows the run asks for this before it asks for all of it again.
SELECT r.status, r.updated_at, r.due_at,
       (SELECT count(*) FROM steps AS s WHERE s.run_id = r.id),
       (SELECT max(coalesce(s.ended_at, s.started_at)) FROM steps AS s WHERE s.run_id = r.id),
       (SELECT max(s.attempts) FROM steps AS s WHERE s.run_id = r.id),
       (SELECT count(*) FROM messages AS m WHERE m.run_id = r.id),
       (SELECT count(m.consumed_by) FROM messages AS m WHERE m.run_id = r.id)
FROM runs AS r WHERE r.id = :id;

-- name: save_step_leased
-- A step's result in one statement, in the common case: stored only while this lease
-- holds the run and no cancel is pending. No row written: the caller finds out
-- which (the fence).
INSERT INTO steps (run_id, key, kind, status, output, error, attempts, started_at, ended_at,
                   pos, spec, due_at, need)
SELECT :run_id, :key, :kind, :status, :output, :error, :attempts, :started_at, :ended_at, :pos,
       :spec, :due_at, :need
FROM runs WHERE id = :run_id AND lease_token = :token AND NOT cancel_requested
ON CONFLICT (run_id, key) DO UPDATE SET
    kind = excluded.kind, status = excluded.status, output = excluded.output,
    error = excluded.error, attempts = excluded.attempts, started_at = excluded.started_at,
    ended_at = excluded.ended_at, pos = coalesce(excluded.pos, steps.pos),
    spec = coalesce(excluded.spec, steps.spec),
    due_at = excluded.due_at, need = coalesce(excluded.need, steps.need);

-- name: insert_step_attempt
-- Operating runs (failed attempts, retries, forks, cascading cancels, retention)
-- from here on.
INSERT INTO step_attempts (run_id, key, attempt, error, started_at, ended_at)
VALUES (:run_id, :key, :attempts, :error, :started_at, :ended_at);

-- name: select_step_attempts
SELECT key, attempt, error, started_at, ended_at FROM step_attempts
WHERE run_id = :run_id ORDER BY seq;

-- name: insert_run_change
INSERT INTO run_changes (run_id, at, action, detail) VALUES (:run_id, :now, :action, :detail);

-- name: select_run_changes
SELECT action, at, detail FROM run_changes WHERE run_id = :run_id ORDER BY seq;

-- name: select_all_steps
SELECT run_id, key, kind, status, output, error, attempts, started_at, ended_at, pos, spec,
       due_at, need
FROM steps WHERE run_id = :run_id;

-- name: delete_unfinished_steps
-- What a retry runs again: the steps that failed, were cancelled or wait to be retried.
DELETE FROM steps WHERE run_id = :run_id AND status IN ('failed', 'cancelled', 'retrying');

-- name: reopen_run
UPDATE runs
SET status = 'queued', output = NULL, error = NULL, ended_at = NULL, due_at = :now,
    lease_token = NULL, waiting_for = NULL, cancel_requested = false, cancel_reason = NULL,
    updated_at = :now
WHERE id = :run_id;

-- name: live_children
SELECT id FROM runs WHERE parent_id = :id AND ended_at IS NULL;

-- name: find_runs
-- Runs by filter, oldest first, for the bulk operations (seq > :after pages on).
SELECT seq, id FROM runs
WHERE seq > :after
  AND (CAST(:workflow AS text) IS NULL OR workflow = :workflow)
  AND (CAST(:status AS text) IS NULL OR status = :status)
  AND (CAST(:since AS double precision) IS NULL OR created_at >= :since)
  AND (CAST(:until AS double precision) IS NULL OR created_at < :until)
  AND (NOT :live OR ended_at IS NULL)
ORDER BY seq
LIMIT :limit;

-- name: count_runs
SELECT count(*) FROM runs
WHERE (CAST(:workflow AS text) IS NULL OR workflow = :workflow)
  AND (CAST(:status AS text) IS NULL OR status = :status)
  AND (CAST(:since AS double precision) IS NULL OR created_at >= :since)
  AND (CAST(:until AS double precision) IS NULL OR created_at < :until)
  AND (NOT :live OR ended_at IS NULL);

-- name: expired_runs
-- Ended runs of one workflow that ended before :cutoff, oldest first.
SELECT id FROM runs
WHERE workflow = :workflow AND ended_at IS NOT NULL AND ended_at < :cutoff
ORDER BY ended_at
LIMIT :limit;

-- name: old_runs
-- Ended runs (of any workflow, or of :workflow) that ended before :cutoff.
SELECT id FROM runs
WHERE ended_at IS NOT NULL AND ended_at < :cutoff
  AND (CAST(:workflow AS text) IS NULL OR workflow = :workflow)
ORDER BY ended_at
LIMIT :limit;

-- name: note_version
UPDATE runs SET version = coalesce(version, :version), last_version = :version
WHERE id = :run_id;

-- name: delete_step_waiters
DELETE FROM waiters WHERE run_id = :run_id AND step_key = :key;

-- name: delete_condition_waiters
DELETE FROM waiters WHERE run_id = :run_id AND step_key = :key AND idx = :idx;

-- name: update_step_output
UPDATE steps SET output = :output WHERE run_id = :run_id AND key = :key;

-- name: step_summary
SELECT count(*), max(pos) FROM steps WHERE run_id = :run_id;

-- Dashboard reads (store/core/dashboard_reads.py, whose runs search builds its own
-- statement): the keys that sign its sessions and forms, the runs an event started
-- or resumed, where a run came from and what it invoked, and its waits in full.

-- name: insert_dashboard_key
INSERT INTO dashboard_keys (name, value, created_at) VALUES (:name, :value, :now)
ON CONFLICT (name) DO NOTHING;

-- name: select_dashboard_key
SELECT value FROM dashboard_keys WHERE name = :name;

-- name: select_event
SELECT seq, id, name, data, ts FROM events WHERE id = :id;

-- name: runs_triggered_between
-- Runs started by an event, created from :since to :until (an event starts its runs
-- in its own transaction, so at its own time).
SELECT id, trigger FROM runs
WHERE trigger IS NOT NULL AND created_at >= :since AND created_at <= :until
ORDER BY created_at DESC
LIMIT :limit;

-- name: event_steps_ended_since
-- Wait steps that took an event (or may have: any, all), ended from :since on,
-- the latest first (past the limit, the newest events keep their links). The kinds
-- are spelled as steps_event_ended's condition (SQLite 0020), for SQLite to use it.
SELECT run_id, key, output FROM steps
WHERE (kind = 'event' OR kind = 'any' OR kind = 'all') AND ended_at >= :since
  AND output IS NOT NULL
ORDER BY ended_at DESC
LIMIT :limit;

-- name: select_run_origin
SELECT trigger, parent_id FROM runs WHERE id = :id;

-- name: select_child_runs
-- The runs a run invoked, in the order it invoked them.
SELECT id FROM runs WHERE parent_id = :id ORDER BY seq LIMIT 1000;

-- name: waiting_step_specs
SELECT key, spec FROM steps WHERE run_id = :run_id AND status = 'waiting';

-- name: run_wait_conditions
SELECT step_key, idx, kind, key, path, value, expr FROM waiters
WHERE run_id = :run_id AND kind <> 'cancel'
ORDER BY id;

-- Metrics (store/core/metrics_reads.py), read at each scrape of /metrics: the runs
-- not ended by workflow and status here, and the parked runs by workflow and wait
-- kind with the time the oldest of each parked in sqlite.sql and postgres.sql (the
-- kind is read from waiting_for, as each dialect reads JSON). Neither reads an
-- ended run.

-- name: metrics_open_runs
-- Queued and running runs of each workflow. The workflows are found by a skip scan
-- (the next name after the last, one index probe each) and every (workflow, status)
-- is counted on its own range of runs_workflow_status, so however many ended runs
-- the index holds, none is read.
WITH RECURSIVE names (workflow) AS (
    SELECT min(workflow) FROM runs
    UNION ALL
    SELECT (SELECT min(workflow) FROM runs WHERE workflow > names.workflow)
    FROM names WHERE names.workflow IS NOT NULL
)
SELECT workflow,
       (SELECT count(*) FROM runs WHERE runs.workflow = names.workflow AND status = 'queued'),
       (SELECT count(*) FROM runs WHERE runs.workflow = names.workflow AND status = 'running')
FROM names
WHERE workflow IS NOT NULL;

-- Callback tokens (store/core/tokens.py).

-- name: insert_token
INSERT INTO tokens (id, run_id, step_key, name, json_schema, created_at, expires_at)
VALUES (:id, :run_id, :step_key, :name, :schema, :now, :expires_at)
ON CONFLICT (id) DO NOTHING;

-- name: select_token
SELECT t.id, t.run_id, t.step_key, t.name, t.json_schema, t.created_at, t.expires_at,
       t.completed_at, t.data, r.workflow, r.status, r.cancel_requested
FROM tokens t JOIN runs r ON r.id = t.run_id
WHERE t.id = :id;

-- name: complete_token
UPDATE tokens SET completed_at = :now, data = :data WHERE id = :id AND completed_at IS NULL;

-- name: token_data
SELECT data FROM tokens WHERE id = :id AND completed_at IS NOT NULL;

-- name: token_waiters
SELECT id, run_id, step_key, idx FROM waiters
WHERE kind = 'token' AND key = :key AND run_id = :run_id
ORDER BY id;

-- name: token_secrets
SELECT value, created_at, valid_until FROM token_secrets
WHERE valid_until IS NULL OR valid_until > :now;

-- name: insert_token_secret
INSERT INTO token_secrets (value, created_at) VALUES (:value, :now);

-- name: retire_token_secret
UPDATE token_secrets SET valid_until = :until WHERE valid_until IS NULL;

-- name: forget_token_secrets
DELETE FROM token_secrets WHERE valid_until IS NOT NULL AND valid_until <= :now;

-- The approvals inbox (store/core/dashboard_reads.py): the typed waits of runs not
-- ended, from the partial index waiters_people, soonest deadline first and those
-- without one last. The step gives when the wait began and what kind it is, a
-- token its name.

-- name: inbox_waits
SELECT w.run_id, r.workflow, w.step_key, s.kind, w.idx, w.kind, w.key,
       COALESCE(t.name, w.key), w.json_schema, w.expires_at, s.started_at
FROM waiters w
JOIN runs r ON r.id = w.run_id
LEFT JOIN steps s ON s.run_id = w.run_id AND s.key = w.step_key
LEFT JOIN tokens t ON w.kind = 'token' AND t.id = w.key
WHERE w.json_schema IS NOT NULL AND r.ended_at IS NULL
ORDER BY (w.expires_at IS NULL), w.expires_at, w.id
LIMIT :limit;

-- name: inbox_count
-- One per waiting step (a wait on several typed conditions is one thing to answer),
-- read from the partial index alone.
SELECT count(*) FROM (
    SELECT DISTINCT run_id, step_key FROM waiters WHERE json_schema IS NOT NULL
) AS people;

-- Flow control (store/core/flow.py): run keys, executing runs per key, rate buckets,
-- debounce.

-- name: insert_run_key
INSERT INTO run_keys (run_id, limit_id, value) VALUES (:run_id, :limit_id, :value)
ON CONFLICT (run_id, limit_id) DO UPDATE SET value = excluded.value;

-- name: delete_run_keys
DELETE FROM run_keys WHERE run_id = :run_id;

-- name: run_keys_of_run
SELECT limit_id, value FROM run_keys WHERE run_id = :run_id;

-- name: pending_debounce
-- The run a debounce key gathers starts into: created, not started yet.
SELECT r.id, r.created_at, r.due_at FROM run_keys AS k JOIN runs AS r ON r.id = k.run_id
WHERE k.limit_id = :limit_id AND k.value = :value AND r.status = 'queued'
ORDER BY r.created_at
LIMIT 1;

-- name: debounce_run
-- A later start for the run a debounce key gathers: its data, its trigger, its due time.
UPDATE runs SET payload = :payload, trigger = :trigger, due_at = :due_at, updated_at = :now,
    trace = :trace, priority = :priority
WHERE id = :id AND status = 'queued';

-- name: push_run
-- A run its rate does not let start yet: queued until its turn.
UPDATE runs SET due_at = :due_at WHERE id = :id AND status = 'queued';

-- name: rate_bucket
SELECT tat FROM flow_rates WHERE limit_id = :limit_id AND value = :value;

-- name: set_rate_bucket
INSERT INTO flow_rates (limit_id, value, tat) VALUES (:limit_id, :value, :tat)
ON CONFLICT (limit_id, value) DO UPDATE SET tat = excluded.tat;

-- name: executing_of_key
-- How many runs of a workflow hold a concurrency key value and execute now.
SELECT count(*) FROM run_keys AS k JOIN runs AS r ON r.id = k.run_id
WHERE k.limit_id = :limit_id AND k.value = :value AND r.status = 'running'
  AND r.workflow = :workflow;

-- name: runs_ahead
-- The due runs a claim takes before a run of :priority (up to :most of them).
SELECT count(*) FROM (
    SELECT 1 FROM runs
    WHERE due_at <= :now AND status = 'queued' AND NOT cancel_requested
      AND priority > :priority
    LIMIT :most
) AS ahead;

-- name: purge_rate_buckets
-- Buckets whose every start lies in the past hold nothing a claim would read.
DELETE FROM flow_rates WHERE tat <= :now;

-- Cron schedules (store/core/schedules.py) ------------------------------------------

-- name: schedule_marks
SELECT workflow, covered_until FROM schedules;

-- name: cover_schedule
-- The mark never moves back: a worker that read an older one cannot undo a newer.
INSERT INTO schedules (workflow, covered_until, updated_at)
VALUES (:workflow, :covered, :now)
ON CONFLICT (workflow) DO UPDATE SET
    covered_until = CASE WHEN excluded.covered_until > schedules.covered_until
                         THEN excluded.covered_until ELSE schedules.covered_until END,
    updated_at = excluded.updated_at;
