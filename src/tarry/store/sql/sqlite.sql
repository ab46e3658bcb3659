-- SQLite's own forms of the shared queries (queries.sql): arrays arrive as JSON
-- text read with json_each, and a named query may be several statements, run in
-- order with the same parameters. Every write transaction begins IMMEDIATE, which
-- serialises writers in every process, so no query here needs to lock a row.

-- name: fence
-- Reading the token is as strong as claiming the row: writers are serialised.
SELECT cancel_requested FROM runs WHERE id = :run_id AND lease_token = :token;

-- name: select_steps
SELECT run_id, key, kind, status, output, error, attempts, started_at, ended_at, pos, spec,
       due_at, need, trace
FROM steps WHERE run_id = :id
ORDER BY started_at, pos, key;

-- name: select_steps_by_run_ids
SELECT run_id, key, kind, status, output, error, attempts, started_at, ended_at, pos, spec,
       due_at, need, trace
FROM steps WHERE run_id IN (SELECT value FROM json_each(:ids))
ORDER BY run_id, started_at, pos, key;

-- name: step_summaries_by_run_ids
SELECT i.value, count(s.key), max(s.pos)
FROM json_each(:ids) AS i LEFT JOIN steps AS s ON s.run_id = i.value
GROUP BY i.value;

-- name: due_runs
-- The unary + keeps the planner on runs_due: the workflow index would visit every
-- run of the workflow, parked ones included. Runs of a priority other than 0 come
-- from their own index (runs_due_priority, empty while none has one), highest
-- first; the claim merges the two by (priority, due_at).
SELECT * FROM (
    SELECT id, workflow, status, cancel_requested, due_at, priority FROM runs
    WHERE due_at <= :now AND priority <> 0
      AND +workflow IN (SELECT value FROM json_each(:workflows))
    ORDER BY priority DESC, due_at
    LIMIT :limit)
UNION ALL
SELECT * FROM (
    SELECT id, workflow, status, cancel_requested, due_at, priority FROM runs
    WHERE due_at <= :now AND +workflow IN (SELECT value FROM json_each(:workflows))
      AND +priority = 0
    ORDER BY due_at
    LIMIT :limit);

-- name: due_expired_leases
SELECT id, workflow, status, cancel_requested, due_at, priority FROM runs
WHERE due_at <= :now AND +workflow IN (SELECT value FROM json_each(:workflows))
  AND status = 'running'
ORDER BY due_at
LIMIT :limit;

-- name: next_due
-- Workflows at their cap (``saturated``) wait for a run to end (a wake-up), not for
-- a time, except for the expiry of their leases; those whose due runs all wait for
-- a concurrency key (``blocked``) wait for a run to end, or for a later due time.
SELECT min(due_at) FROM runs
WHERE due_at IS NOT NULL
  AND (+workflow IN (SELECT value FROM json_each(:workflows))
       OR (+workflow IN (SELECT value FROM json_each(:saturated)) AND status = 'running')
       OR (+workflow IN (SELECT value FROM json_each(:blocked)) AND due_at > :now));

-- name: due_gated_runs
-- due_runs of one workflow with flow rules, each with its keys and, for each key, how
-- many of the workflow's executing runs hold it (counted once, from those executing): JSON
-- triples.
WITH executing AS MATERIALIZED (
    SELECT k.limit_id, k.value, count(*) AS n FROM runs AS r JOIN run_keys AS k
        ON k.run_id = r.id
    WHERE r.status = 'running' AND +r.workflow IN (SELECT value FROM json_each(:workflows))
      AND substr(k.limit_id, 1, 2) = 'c:'
    GROUP BY k.limit_id, k.value
)
SELECT d.*, (SELECT json_group_array(json_array(k.limit_id, k.value, coalesce(
                 (SELECT e.n FROM executing AS e
                  WHERE e.limit_id = k.limit_id AND e.value = k.value), 0)))
             FROM run_keys AS k WHERE k.run_id = d.id) FROM (
    SELECT * FROM (
        SELECT id, workflow, status, cancel_requested, due_at, priority FROM runs
        WHERE due_at <= :now AND priority <> 0
          AND +workflow IN (SELECT value FROM json_each(:workflows))
        ORDER BY priority DESC, due_at
        LIMIT :limit)
    UNION ALL
    SELECT * FROM (
        SELECT id, workflow, status, cancel_requested, due_at, priority FROM runs
        WHERE due_at <= :now AND +workflow IN (SELECT value FROM json_each(:workflows))
          AND +priority = 0
        ORDER BY due_at
        LIMIT :limit)) AS d;

-- name: keys_of_runs
SELECT run_id, limit_id, value FROM run_keys
WHERE run_id IN (SELECT value FROM json_each(:ids));

-- name: delete_started_keys
-- A run that starts leaves its rate and debounce keys: a resume is not counted, and
-- a later start opens a new debounce window.
DELETE FROM run_keys
WHERE run_id IN (SELECT value FROM json_each(:ids)) AND substr(limit_id, 1, 2) <> 'c:';

-- name: queued_priorities
SELECT id, workflow, priority, due_at FROM runs WHERE id IN (SELECT value FROM json_each(:ids)) AND +status = 'queued';

-- name: rate_buckets
SELECT value, tat FROM flow_rates
WHERE limit_id = :limit_id AND value IN (SELECT value FROM json_each(:values));

-- name: lease_runs
-- Each id's token by its place in the array: a join of two json_each would parse the
-- tokens again for every id (quadratic in the batch), json_extract parses them once.
UPDATE runs
SET status = 'running', lease_token = v.token, due_at = :lease_until, updated_at = :now,
    waiting_for = NULL
FROM (SELECT i.value AS id, json_extract(:tokens, '$[' || i.key || ']') AS token
      FROM json_each(:ids) AS i) AS v
WHERE runs.id = v.id
RETURNING seq, id, workflow, status, payload, output, error, created_at, updated_at,
          ended_at, due_at, waiting_for, cancel_requested, trigger, version, last_version,
          trace;

-- name: lease_woken_run
-- A run a delivery just made due, leased to the sending process's worker if it takes
-- the run's workflow (Handoff): left to a claim if a cancel is pending or it is not
-- due after all.
UPDATE runs
SET status = 'running', lease_token = :token, due_at = :lease_until, updated_at = :now,
    waiting_for = NULL
WHERE id = :id AND status = 'queued' AND NOT cancel_requested
  AND workflow IN (SELECT value FROM json_each(:workflows))
RETURNING seq, id, workflow, status, payload, output, error, created_at, updated_at,
          ended_at, due_at, waiting_for, cancel_requested, trigger, version, last_version,
          trace;

-- name: renew_leases
UPDATE runs SET due_at = :lease_until
FROM (SELECT i.value AS id, json_extract(:tokens, '$[' || i.key || ']') AS token
      FROM json_each(:ids) AS i) AS v
WHERE runs.id = v.id AND runs.lease_token = v.token
RETURNING id, cancel_requested;

-- name: expire_waiting_steps
UPDATE steps
SET status = CASE kind WHEN 'sleep' THEN 'completed' ELSE 'timed_out' END,
    output = CASE WHEN need IS NULL THEN NULL ELSE output END, ended_at = :now
WHERE run_id IN (SELECT value FROM json_each(:ids)) AND status = 'waiting'
  AND (due_at IS NULL OR due_at <= :now);

-- name: delete_wait_waiters_of_runs
-- The waiters of the waits that timed out (those of other waits stay filed).
DELETE FROM waiters
WHERE run_id IN (SELECT value FROM json_each(:ids)) AND kind != 'cancel'
  AND expires_at IS NOT NULL AND expires_at <= :now;

-- name: resolve_wait
-- Deliver to one wait: its waiters go (never the run's cancel waiters, filed under
-- no step), its step gets the result, the run is due now.
DELETE FROM waiters WHERE run_id = :run_id AND step_key = :key;
UPDATE steps SET status = :status, output = :output, error = :error, ended_at = :now,
    trace = :trace
WHERE run_id = :run_id AND key = :key;
UPDATE runs SET status = 'queued', due_at = :now, waiting_for = NULL, updated_at = :now
WHERE id = :run_id AND status = 'waiting';

-- name: delete_runs
-- A purge of ended runs: each with everything kept for it.
DELETE FROM steps WHERE run_id IN (SELECT value FROM json_each(:ids));
DELETE FROM step_attempts WHERE run_id IN (SELECT value FROM json_each(:ids));
DELETE FROM run_changes WHERE run_id IN (SELECT value FROM json_each(:ids));
DELETE FROM waiters WHERE run_id IN (SELECT value FROM json_each(:ids));
DELETE FROM messages WHERE run_id IN (SELECT value FROM json_each(:ids));
DELETE FROM tokens WHERE run_id IN (SELECT value FROM json_each(:ids));
DELETE FROM run_keys WHERE run_id IN (SELECT value FROM json_each(:ids));
DELETE FROM runs WHERE id IN (SELECT value FROM json_each(:ids)) AND ended_at IS NOT NULL;

-- name: select_runs_by_ids
SELECT seq, id, workflow, status, payload, output, error, created_at, updated_at, ended_at,
       due_at, waiting_for, cancel_requested, trigger, version, last_version
FROM runs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: run_triggers
SELECT id, workflow, payload, trigger FROM runs WHERE id IN (SELECT value FROM json_each(:ids));

-- name: deliver_waits
-- Of these waiters (:ids), the first of each run, in waiter order: run_id, step_key,
-- idx, resolved. Every one is still there (the write transaction excludes every other
-- writer); resolving them is resolve_waits' (resolved is 0).
SELECT run_id, step_key, idx, 0, min(id) AS first FROM waiters
WHERE id IN (SELECT CAST(value AS INTEGER) FROM json_each(:ids))
GROUP BY run_id ORDER BY first;

-- name: resolve_waits
-- resolve_wait for a set of waits, all given the same :output. Each wait is found by
-- its run (through the index) and then its (run, step) pair, a JSON array in :pairs.
DELETE FROM waiters WHERE run_id IN (SELECT value FROM json_each(:run_ids))
  AND json_array(run_id, step_key) IN (SELECT value FROM json_each(:pairs));
UPDATE steps SET status = 'completed', output = :output, error = NULL, ended_at = :now,
    trace = :trace
WHERE run_id IN (SELECT value FROM json_each(:run_ids))
  AND json_array(run_id, key) IN (SELECT value FROM json_each(:pairs));
UPDATE runs SET status = 'queued', due_at = :now, waiting_for = NULL, updated_at = :now
WHERE id IN (SELECT value FROM json_each(:run_ids)) AND +status = 'waiting';

-- name: metrics_parked_runs
-- The parked runs by wait kind and workflow, and when the oldest of each parked (a
-- parked run keeps the time it parked as updated_at: nothing writes it until it is
-- claimed again). From runs_status, so only parked runs are read.
SELECT json_extract(CAST(waiting_for AS TEXT), '$.kind') AS kind, workflow, count(*),
       min(updated_at)
FROM runs
WHERE status = 'waiting'
GROUP BY 1, workflow;
