-- Named queries for the PostgreSQL store. Tables are found through the
-- connection's search_path, which names the store's schema.

-- name: migrate_lock
SELECT pg_advisory_xact_lock(hashtext('tarry.migrate'), hashtext(%(schema)s));

-- name: create_meta
CREATE TABLE IF NOT EXISTS tarry_meta (key text PRIMARY KEY, value text NOT NULL);

-- name: schema_version
SELECT value FROM tarry_meta WHERE key = 'schema_version';

-- name: set_schema_version
INSERT INTO tarry_meta (key, value) VALUES ('schema_version', %(version)s)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: notify
SELECT pg_notify(%(channel)s, '');

-- name: key_lock
SELECT pg_advisory_xact_lock(hashtextextended(%(lock)s, 0));

-- name: insert_run
INSERT INTO runs (id, workflow, status, payload, trigger, parent_id, created_at, updated_at,
                  due_at)
VALUES (%(id)s, %(workflow)s, 'queued', %(payload)s, %(trigger)s, %(parent)s, %(now)s, %(now)s,
        %(now)s)
ON CONFLICT (id) DO NOTHING;

-- name: insert_plain_run
-- The common start in one statement: insert and notify, when the workflow has no
-- cancel_on conditions (whose waiters need the transaction of insert_run). Returns
-- whether that held, and whether a run was inserted.
WITH plain AS (
    SELECT NOT EXISTS (
        SELECT 1 FROM workflows WHERE id = %(workflow)s AND cancel_on <> '[]'::bytea
    ) AS ok
), ins AS (
    INSERT INTO runs (id, workflow, status, payload, trigger, parent_id, created_at,
                      updated_at, due_at)
    SELECT %(id)s, %(workflow)s, 'queued', %(payload)s, %(trigger)s, %(parent)s, %(now)s,
           %(now)s, %(now)s
    FROM plain WHERE plain.ok
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), note AS (
    SELECT pg_notify(%(channel)s, '') FROM ins
)
SELECT (SELECT ok FROM plain), (SELECT count(*) FROM ins), (SELECT count(*) FROM note);

-- name: due_runs
SELECT id, workflow, status, cancel_requested, due_at FROM runs
WHERE due_at <= %(now)s AND workflow = ANY(%(workflows)s)
ORDER BY due_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: claim_plain
-- Lease the due runs that need only a lease (not a timed-out wait, not a requested
-- cancellation: those take the full claim), in one statement. One row per run
-- leased, then the new token, the next due time of what is left, and whether
-- runs needing the full claim are due; a single row of NULLs and those two when
-- nothing was leased.
WITH due AS (
    SELECT id FROM runs
    WHERE due_at <= %(now)s AND workflow = ANY(%(workflows)s)
      AND status <> 'waiting' AND NOT cancel_requested
    ORDER BY due_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), leased AS (
    UPDATE runs AS r
    SET status = 'running', lease_token = md5(random()::text || clock_timestamp() || r.id),
        due_at = %(lease_until)s, updated_at = %(now)s, waiting_for = NULL
    FROM due
    WHERE r.id = due.id
    RETURNING r.seq, r.id, r.workflow, r.status, r.payload, r.output, r.error, r.created_at,
              r.updated_at, r.ended_at, r.due_at, r.waiting_for, r.cancel_requested,
              r.trigger, r.lease_token
)
SELECT l.seq, l.id, l.workflow, l.status, l.payload, l.output, l.error, l.created_at,
       l.updated_at, l.ended_at, l.due_at, l.waiting_for, l.cancel_requested, l.trigger,
       l.lease_token,
       (SELECT min(due_at) FROM runs
        WHERE due_at IS NOT NULL AND workflow = ANY(%(workflows)s)
          AND id NOT IN (SELECT id FROM due)),
       EXISTS (SELECT 1 FROM runs
               WHERE due_at <= %(now)s AND workflow = ANY(%(workflows)s)
                 AND (status = 'waiting' OR cancel_requested))
FROM (SELECT 1) AS one LEFT JOIN leased AS l ON true;

-- name: due_expired_leases
-- The runs of a workflow at its concurrency cap that can still be claimed: those
-- whose lease expired. Taking one over leaves the count of leased runs as it was.
SELECT id, workflow, status, cancel_requested, due_at FROM runs
WHERE due_at <= %(now)s AND workflow = ANY(%(workflows)s) AND status = 'running'
ORDER BY due_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: next_due
-- Workflows at their cap (``saturated``) wait for a run to end (a wake-up), not for
-- a time, except for the expiry of their leases.
SELECT min(due_at) FROM runs
WHERE due_at IS NOT NULL
  AND (workflow = ANY(%(workflows)s)
       OR (workflow = ANY(%(saturated)s) AND status = 'running'));

-- name: count_leased
SELECT count(*) FROM runs WHERE workflow = %(workflow)s AND status = 'running';

-- name: lease_runs
UPDATE runs AS r
SET status = 'running', lease_token = v.token, due_at = %(lease_until)s,
    updated_at = %(now)s, waiting_for = NULL
FROM unnest(%(ids)s::text[], %(tokens)s::text[]) AS v (id, token)
WHERE r.id = v.id
RETURNING r.seq, r.id, r.workflow, r.status, r.payload, r.output, r.error, r.created_at,
          r.updated_at, r.ended_at, r.due_at, r.waiting_for, r.cancel_requested, r.trigger;

-- name: expire_waiting_steps
UPDATE steps
SET status = CASE kind WHEN 'sleep' THEN 'completed' ELSE 'timed_out' END,
    output = NULL, ended_at = %(now)s
WHERE run_id = ANY(%(ids)s) AND status = 'waiting';

-- name: delete_wait_waiters_of_runs
DELETE FROM waiters WHERE run_id = ANY(%(ids)s) AND kind != 'cancel';

-- name: delete_run_waiters
DELETE FROM waiters WHERE run_id = %(run_id)s;

-- name: select_steps_by_run_ids
SELECT run_id, key, kind, status, output, error, attempts, started_at, ended_at
FROM steps WHERE run_id = ANY(%(ids)s)
ORDER BY run_id, started_at NULLS FIRST, key COLLATE "C";

-- name: select_run
SELECT seq, id, workflow, status, payload, output, error, created_at, updated_at, ended_at,
       due_at, waiting_for, cancel_requested, trigger
FROM runs WHERE id = %(id)s;

-- name: lock_run
SELECT seq, id, workflow, status, payload, output, error, created_at, updated_at, ended_at,
       due_at, waiting_for, cancel_requested, trigger
FROM runs WHERE id = %(id)s
FOR UPDATE;

-- name: select_steps
SELECT run_id, key, kind, status, output, error, attempts, started_at, ended_at
FROM steps WHERE run_id = %(id)s
ORDER BY started_at NULLS FIRST, key COLLATE "C";

-- name: select_step
SELECT run_id, key, kind, status, output, error, attempts, started_at, ended_at
FROM steps WHERE run_id = %(run_id)s AND key = %(key)s;

-- name: fence
UPDATE runs SET updated_at = %(now)s
WHERE id = %(run_id)s AND lease_token = %(token)s
RETURNING cancel_requested;

-- name: renew_leases
UPDATE runs AS r SET due_at = %(lease_until)s
FROM unnest(%(ids)s::text[], %(tokens)s::text[]) AS v (id, token)
WHERE r.id = v.id AND r.lease_token = v.token
RETURNING r.id, r.cancel_requested;

-- name: save_step
-- The lease check and the write in one statement: the run's row is locked (as a
-- claim would lock it) only if this worker still holds the lease, and the step is
-- stored only then. No row back: the lease was lost and nothing was written.
WITH fence AS (
    SELECT cancel_requested FROM runs
    WHERE id = %(run_id)s AND lease_token = %(token)s
    FOR NO KEY UPDATE
), saved AS (
    INSERT INTO steps (run_id, key, kind, status, output, error, attempts, started_at,
                       ended_at)
    SELECT %(run_id)s, %(key)s, %(kind)s, %(status)s, %(output)s, %(error)s, %(attempts)s,
           %(started_at)s, %(ended_at)s
    FROM fence
    ON CONFLICT (run_id, key) DO UPDATE SET
        kind = excluded.kind, status = excluded.status, output = excluded.output,
        error = excluded.error, attempts = excluded.attempts, started_at = excluded.started_at,
        ended_at = excluded.ended_at
    RETURNING 1
)
SELECT cancel_requested FROM fence;

-- name: upsert_step
INSERT INTO steps (run_id, key, kind, status, output, error, attempts, started_at, ended_at)
VALUES (%(run_id)s, %(key)s, %(kind)s, %(status)s, %(output)s, %(error)s, %(attempts)s,
        %(started_at)s, %(ended_at)s)
ON CONFLICT (run_id, key) DO UPDATE SET
    kind = excluded.kind, status = excluded.status, output = excluded.output,
    error = excluded.error, attempts = excluded.attempts, started_at = excluded.started_at,
    ended_at = excluded.ended_at;

-- name: release_run
UPDATE runs
SET status = %(status)s, lease_token = NULL, due_at = %(due_at)s,
    waiting_for = %(waiting_for)s, updated_at = %(now)s
WHERE id = %(run_id)s;

-- name: finish_orphan
-- The common end in one statement, for a run that no parent invoked (a child's end
-- must resume its parent, in the transaction of finish). No row back: the lease was
-- lost, or the run has a parent.
WITH ended AS (
    UPDATE runs
    SET status = %(status)s, output = %(output)s, error = %(error)s, ended_at = %(now)s,
        updated_at = %(now)s, due_at = NULL, lease_token = NULL, waiting_for = NULL
    WHERE id = %(run_id)s AND lease_token = %(token)s AND parent_id IS NULL
    RETURNING id
), gone AS (
    DELETE FROM waiters WHERE run_id IN (SELECT id FROM ended)
)
SELECT id FROM ended;

-- name: end_run
UPDATE runs
SET status = %(status)s, output = %(output)s, error = %(error)s, ended_at = %(now)s,
    updated_at = %(now)s, due_at = NULL, lease_token = NULL, waiting_for = NULL
WHERE id = %(run_id)s;

-- name: end_run_with_cancel_reason
UPDATE runs
SET status = 'cancelled', error = cancel_reason, ended_at = %(now)s, updated_at = %(now)s,
    due_at = NULL, lease_token = NULL, waiting_for = NULL
WHERE id = %(run_id)s;

-- name: cancel_waiting_steps
UPDATE steps SET status = 'cancelled', ended_at = %(now)s
WHERE run_id = %(run_id)s AND status = 'waiting';

-- name: request_cancel
UPDATE runs SET cancel_requested = true, cancel_reason = %(reason)s, updated_at = %(now)s
WHERE id = %(run_id)s;

-- name: first_buffered_signal
SELECT id, data FROM signals
WHERE key = %(key)s AND expires_at > %(now)s
ORDER BY id
LIMIT 1
FOR UPDATE;

-- name: delete_signal
DELETE FROM signals WHERE id = %(id)s;

-- name: buffer_signal
INSERT INTO signals (key, data, created_at, expires_at)
VALUES (%(key)s, %(data)s, %(now)s, %(expires_at)s);

-- name: purge_signals
DELETE FROM signals WHERE expires_at <= %(now)s;

-- name: signal_waiter
SELECT run_id, step_key, idx FROM waiters WHERE kind = 'signal' AND key = %(key)s;

-- name: lock_signal_waiter_run
-- The run waiting on a signal key, its row locked (runs before waiters, as
-- everywhere), in one round trip.
SELECT id FROM runs
WHERE id = (SELECT run_id FROM waiters WHERE kind = 'signal' AND key = %(key)s)
FOR UPDATE;

-- name: lock_signal_waiter
SELECT run_id, step_key, idx FROM waiters
WHERE kind = 'signal' AND key = %(key)s AND run_id = %(run_id)s
FOR UPDATE;

-- name: insert_waiter
INSERT INTO waiters (run_id, step_key, kind, key, expires_at, path, value, expr, idx)
VALUES (%(run_id)s, %(step_key)s, %(kind)s, %(key)s, %(expires_at)s, %(path)s, %(value)s,
        %(expr)s, %(idx)s);

-- name: resolve_wait
-- Deliver to one wait in one statement: its waiters go (never the run's cancel
-- waiters, filed under no step), its step gets the result, the run is due now.
WITH gone AS (
    DELETE FROM waiters WHERE run_id = %(run_id)s AND step_key = %(key)s
), note AS (
    SELECT pg_notify(%(channel)s, '')
), resolved AS (
    UPDATE steps SET status = %(status)s, output = %(output)s, error = %(error)s,
        ended_at = %(now)s
    WHERE run_id = %(run_id)s AND key = %(key)s
), woken AS (
    UPDATE runs SET status = 'queued', due_at = %(now)s, waiting_for = NULL,
        updated_at = %(now)s
    WHERE id = %(run_id)s AND status = 'waiting'
)
SELECT count(*) FROM note;

-- name: waiters_by_value
SELECT id, run_id, step_key, kind, expr, idx FROM waiters
WHERE kind IN ('event', 'cancel') AND key = %(name)s AND path = %(path)s AND value = %(value)s;

-- name: waiters_unindexed
SELECT id, run_id, step_key, kind, expr, idx FROM waiters
WHERE kind IN ('event', 'cancel') AND key = %(name)s AND path IS NULL;

-- name: lock_waiter
SELECT id FROM waiters WHERE id = %(id)s FOR UPDATE;

-- name: run_trigger
SELECT workflow, payload, trigger FROM runs WHERE id = %(id)s;

-- name: event_by_id
SELECT ts FROM events WHERE id = %(id)s;

-- name: delete_event
DELETE FROM events WHERE id = %(id)s;

-- name: insert_event
INSERT INTO events (id, name, data, ts) VALUES (%(id)s, %(name)s, %(data)s, %(ts)s);

-- name: events_since
SELECT id, name, data, ts FROM events
WHERE name = %(name)s AND ts >= %(since)s
ORDER BY ts, seq;

-- name: triggers_for_event
SELECT workflow, expr FROM triggers WHERE event = %(event)s;

-- name: workflow_cancel_on
SELECT cancel_on FROM workflows WHERE id = %(id)s;

-- name: upsert_workflow
INSERT INTO workflows (id, cancel_on, updated_at) VALUES (%(id)s, %(cancel_on)s, %(now)s)
ON CONFLICT (id) DO UPDATE SET cancel_on = excluded.cancel_on, updated_at = excluded.updated_at;

-- name: delete_workflow_triggers
DELETE FROM triggers WHERE workflow = %(workflow)s;

-- name: insert_trigger
INSERT INTO triggers (workflow, event, expr) VALUES (%(workflow)s, %(event)s, %(expr)s);

-- name: purge_events
DELETE FROM events WHERE ts <= %(before)s;

-- name: shared_lock
SELECT pg_advisory_xact_lock_shared(hashtextextended(%(lock)s, 0));

-- name: first_message
-- The caller holds the run's row lock, which every sender to its mailbox takes.
SELECT seq, name, data, sent_at FROM messages
WHERE run_id = %(run_id)s AND consumed_by IS NULL
  AND (%(name)s::text IS NULL OR name = %(name)s::text)
ORDER BY seq
LIMIT 1;

-- name: consume_message
UPDATE messages SET consumed_by = %(step_key)s, consumed_at = %(now)s WHERE seq = %(seq)s;

-- name: insert_message
INSERT INTO messages (run_id, name, data, sent_at)
VALUES (%(run_id)s, %(name)s, %(data)s, %(now)s)
RETURNING seq;

-- name: message_waiter
SELECT step_key, idx FROM waiters
WHERE run_id = %(run_id)s AND kind = 'message' AND (key IS NULL OR key = %(name)s)
ORDER BY id
LIMIT 1;

-- name: list_messages
SELECT name, data, sent_at, consumed_by FROM messages WHERE run_id = %(run_id)s ORDER BY seq;

-- name: invoke_waiter
SELECT id, run_id, step_key, idx FROM waiters WHERE kind = 'invoke' AND key = %(key)s;

-- name: list_events
SELECT seq, id, name, data, ts FROM events
WHERE (%(name)s::text IS NULL OR name = %(name)s::text)
  AND (%(cursor)s::bigint IS NULL OR seq < %(cursor)s::bigint)
ORDER BY seq DESC
LIMIT %(limit)s;
