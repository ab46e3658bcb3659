-- name: insert_run
INSERT INTO runs (id, workflow, status, payload, trigger, parent_id, created_at, updated_at,
                  due_at)
VALUES (:id, :workflow, 'queued', :payload, :trigger, :parent, :now, :now, :now)
ON CONFLICT (id) DO NOTHING;

-- name: due_runs
-- The unary + keeps the planner on runs_due: the workflow index would visit every
-- run of the workflow, parked ones included.
SELECT id, workflow, status, cancel_requested FROM runs
WHERE due_at <= :now AND +workflow IN (SELECT value FROM json_each(:workflows))
ORDER BY due_at
LIMIT :limit;

-- name: due_expired_leases
-- The runs of workflows at their concurrency cap that can still be claimed: those
-- whose lease expired.
SELECT id, workflow, status, cancel_requested FROM runs
WHERE due_at <= :now AND +workflow IN (SELECT value FROM json_each(:workflows))
  AND status = 'running'
ORDER BY due_at
LIMIT :limit;

-- name: next_lease_expiry
SELECT min(due_at) FROM runs
WHERE due_at IS NOT NULL AND status = 'running'
  AND +workflow IN (SELECT value FROM json_each(:workflows));

-- name: next_due
SELECT min(due_at) FROM runs
WHERE due_at IS NOT NULL AND +workflow IN (SELECT value FROM json_each(:workflows));

-- name: lease_run
UPDATE runs
SET status = 'running', lease_token = :token, due_at = :lease_until, updated_at = :now,
    waiting_for = NULL
WHERE id = :id;

-- name: expire_waiting_steps
UPDATE steps
SET status = CASE kind WHEN 'sleep' THEN 'completed' ELSE 'timed_out' END,
    output = NULL, ended_at = :now
WHERE run_id = :run_id AND status = 'waiting';

-- name: delete_wait_waiters
DELETE FROM waiters WHERE run_id = :run_id AND kind != 'cancel';

-- name: delete_step_waiters
DELETE FROM waiters WHERE run_id = :run_id AND step_key = :step_key;

-- name: delete_run_waiters
DELETE FROM waiters WHERE run_id = :run_id;

-- name: select_runs_by_ids
SELECT seq, id, workflow, status, payload, output, error, created_at, updated_at, ended_at,
       due_at, waiting_for, cancel_requested, trigger
FROM runs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: select_steps_by_run_ids
SELECT run_id, key, kind, status, output, error, attempts, started_at, ended_at
FROM steps WHERE run_id IN (SELECT value FROM json_each(:ids))
ORDER BY run_id, started_at, key;

-- name: select_run
SELECT seq, id, workflow, status, payload, output, error, created_at, updated_at, ended_at,
       due_at, waiting_for, cancel_requested, trigger
FROM runs WHERE id = :id;

-- name: select_steps
SELECT run_id, key, kind, status, output, error, attempts, started_at, ended_at
FROM steps WHERE run_id = :id
ORDER BY started_at, key;

-- name: fence
-- Every write transaction begins IMMEDIATE, which serialises writers in every
-- process, so reading the token is as strong a check as claiming the row.
SELECT cancel_requested FROM runs WHERE id = :run_id AND lease_token = :token;

-- name: renew_lease
UPDATE runs SET due_at = :lease_until
WHERE id = :run_id AND lease_token = :token
RETURNING cancel_requested;

-- name: upsert_step
INSERT INTO steps (run_id, key, kind, status, output, error, attempts, started_at, ended_at)
VALUES (:run_id, :key, :kind, :status, :output, :error, :attempts, :started_at, :ended_at)
ON CONFLICT (run_id, key) DO UPDATE SET
    kind = excluded.kind, status = excluded.status, output = excluded.output,
    error = excluded.error, attempts = excluded.attempts, started_at = excluded.started_at,
    ended_at = excluded.ended_at;

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

-- name: end_run_with_cancel_reason
UPDATE runs
SET status = 'cancelled', error = cancel_reason, ended_at = :now, updated_at = :now,
    due_at = NULL, lease_token = NULL, waiting_for = NULL
WHERE id = :run_id;

-- name: cancel_waiting_steps
UPDATE steps SET status = 'cancelled', ended_at = :now
WHERE run_id = :run_id AND status = 'waiting';

-- name: request_cancel
UPDATE runs SET cancel_requested = 1, cancel_reason = :reason, updated_at = :now
WHERE id = :run_id;

-- name: first_buffered_signal
SELECT id, data FROM signals
WHERE key = :key AND expires_at > :now
ORDER BY id
LIMIT 1;

-- name: delete_signal
DELETE FROM signals WHERE id = :id;

-- name: buffer_signal
INSERT INTO signals (key, data, created_at, expires_at)
VALUES (:key, :data, :now, :expires_at);

-- name: purge_signals
DELETE FROM signals WHERE expires_at <= :now;

-- name: signal_waiter
SELECT run_id, step_key, idx FROM waiters WHERE kind = 'signal' AND key = :key;

-- name: insert_waiter
INSERT INTO waiters (run_id, step_key, kind, key, expires_at, path, value, expr, idx)
VALUES (:run_id, :step_key, :kind, :key, :expires_at, :path, :value, :expr, :idx);

-- name: resolve_step
UPDATE steps SET status = :status, output = :output, error = :error, ended_at = :now
WHERE run_id = :run_id AND key = :key;

-- name: wake_run
UPDATE runs SET status = 'queued', due_at = :now, waiting_for = NULL, updated_at = :now
WHERE id = :run_id AND status = 'waiting';

-- name: waiters_by_value
SELECT id, run_id, step_key, kind, expr, idx FROM waiters
WHERE kind IN ('event', 'cancel') AND key = :name AND path = :path AND value = :value;

-- name: waiters_unindexed
SELECT id, run_id, step_key, kind, expr, idx FROM waiters
WHERE kind IN ('event', 'cancel') AND key = :name AND path IS NULL;

-- name: run_trigger
SELECT workflow, payload, trigger FROM runs WHERE id = :id;

-- name: event_by_id
SELECT ts FROM events WHERE id = :id;

-- name: delete_event
DELETE FROM events WHERE id = :id;

-- name: insert_event
INSERT INTO events (id, name, data, ts) VALUES (:id, :name, :data, :ts);

-- name: events_since
SELECT id, name, data, ts FROM events
WHERE name = :name AND ts >= :since
ORDER BY ts, seq;

-- name: triggers_for_event
SELECT workflow, expr FROM triggers WHERE event = :event;

-- name: workflow_cancel_on
SELECT cancel_on FROM workflows WHERE id = :id;

-- name: upsert_workflow
INSERT INTO workflows (id, cancel_on, updated_at) VALUES (:id, :cancel_on, :now)
ON CONFLICT (id) DO UPDATE SET cancel_on = excluded.cancel_on, updated_at = excluded.updated_at;

-- name: delete_workflow_triggers
DELETE FROM triggers WHERE workflow = :workflow;

-- name: insert_trigger
INSERT INTO triggers (workflow, event, expr) VALUES (:workflow, :event, :expr);

-- name: purge_events
DELETE FROM events WHERE ts <= :before;

-- name: first_message
SELECT seq, name, data, sent_at FROM messages
WHERE run_id = :run_id AND consumed_by IS NULL AND (:name IS NULL OR name = :name)
ORDER BY seq
LIMIT 1;

-- name: consume_message
UPDATE messages SET consumed_by = :step_key, consumed_at = :now WHERE seq = :seq;

-- name: insert_message
INSERT INTO messages (run_id, name, data, sent_at) VALUES (:run_id, :name, :data, :now)
RETURNING seq;

-- name: message_waiter
SELECT step_key, idx FROM waiters
WHERE run_id = :run_id AND kind = 'message' AND (key IS NULL OR key = :name)
ORDER BY id
LIMIT 1;

-- name: list_messages
SELECT name, data, sent_at, consumed_by FROM messages WHERE run_id = :run_id ORDER BY seq;

-- name: invoke_waiter
SELECT run_id, step_key, idx FROM waiters WHERE kind = 'invoke' AND key = :key;

-- name: run_status
SELECT status FROM runs WHERE id = :id;

-- name: count_leased
SELECT count(*) FROM runs WHERE workflow = :workflow AND status = 'running';

-- name: list_events
SELECT seq, id, name, data, ts FROM events
WHERE (:name IS NULL OR name = :name) AND (:cursor IS NULL OR seq < :cursor)
ORDER BY seq DESC
LIMIT :limit;
