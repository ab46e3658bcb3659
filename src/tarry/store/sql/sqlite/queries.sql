-- name: insert_run
INSERT INTO runs (id, workflow, status, payload, created_at, updated_at, due_at)
VALUES (:id, :workflow, 'queued', :payload, :now, :now, :now)
ON CONFLICT (id) DO NOTHING;

-- name: due_runs
SELECT id, status, cancel_requested FROM runs
WHERE due_at <= :now AND workflow IN (SELECT value FROM json_each(:workflows))
ORDER BY due_at
LIMIT :limit;

-- name: next_due
SELECT min(due_at) FROM runs
WHERE due_at IS NOT NULL AND workflow IN (SELECT value FROM json_each(:workflows));

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

-- name: delete_run_waiters
DELETE FROM waiters WHERE run_id = :run_id;

-- name: select_runs_by_ids
SELECT seq, id, workflow, status, payload, output, error, created_at, updated_at, ended_at,
       due_at, waiting_for, cancel_requested
FROM runs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: select_steps_by_run_ids
SELECT run_id, key, kind, status, output, error, attempts, started_at, ended_at
FROM steps WHERE run_id IN (SELECT value FROM json_each(:ids))
ORDER BY run_id, started_at, key;

-- name: select_run
SELECT seq, id, workflow, status, payload, output, error, created_at, updated_at, ended_at,
       due_at, waiting_for, cancel_requested
FROM runs WHERE id = :id;

-- name: select_steps
SELECT run_id, key, kind, status, output, error, attempts, started_at, ended_at
FROM steps WHERE run_id = :id
ORDER BY started_at, key;

-- name: fence
UPDATE runs SET updated_at = :now
WHERE id = :run_id AND lease_token = :token
RETURNING cancel_requested;

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
SELECT run_id, step_key FROM waiters WHERE kind = 'signal' AND key = :key;

-- name: insert_waiter
INSERT INTO waiters (run_id, step_key, kind, key, expires_at)
VALUES (:run_id, :step_key, :kind, :key, :expires_at);

-- name: resolve_step
UPDATE steps SET status = :status, output = :output, error = :error, ended_at = :now
WHERE run_id = :run_id AND key = :key;

-- name: wake_run
UPDATE runs SET status = 'queued', due_at = :now, waiting_for = NULL, updated_at = :now
WHERE id = :run_id AND status = 'waiting';
