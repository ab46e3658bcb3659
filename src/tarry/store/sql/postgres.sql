-- PostgreSQL's own forms of the shared queries (queries.sql), and the statements
-- only it has: advisory locks, NOTIFY, migrations, and the hot paths written as one
-- statement each (a start, a claim, a step's write, an end). Tables are found
-- through the connection's search_path, which names the store's schema. Rows are
-- locked run first, then that run's waiters, in every transaction.

-- name: migrate_lock
SELECT pg_advisory_xact_lock(hashtext('tarry.migrate'), hashtext(:schema));

-- name: create_meta
CREATE TABLE IF NOT EXISTS tarry_meta (key text PRIMARY KEY, value text NOT NULL);

-- name: schema_version
SELECT value FROM tarry_meta WHERE key = 'schema_version';

-- name: set_schema_version
INSERT INTO tarry_meta (key, value) VALUES ('schema_version', :version)
ON CONFLICT (key) DO UPDATE SET value = excluded.value;

-- name: notify
SELECT pg_notify(:channel, '');

-- name: key_lock
SELECT pg_advisory_xact_lock(hashtextextended(:lock, 0));

-- name: shared_lock
SELECT pg_advisory_xact_lock_shared(hashtextextended(:lock, 0));

-- name: fence
UPDATE runs SET updated_at = :now
WHERE id = :run_id AND lease_token = :token
RETURNING cancel_requested;

-- name: lock_run
SELECT seq, id, workflow, status, payload, output, error, created_at, updated_at, ended_at,
       due_at, waiting_for, cancel_requested, trigger, version, last_version
FROM runs WHERE id = :id
FOR UPDATE;

-- name: lock_signal_waiter_run
-- The run waiting on a signal key, its row locked (runs before waiters, as
-- everywhere), in one round trip.
SELECT id FROM runs
WHERE id = (SELECT run_id FROM waiters WHERE kind = 'signal' AND key = :key)
FOR UPDATE;

-- name: lock_signal_waiter
SELECT run_id, step_key, idx, json_schema FROM waiters
WHERE kind = 'signal' AND key = :key AND run_id = :run_id
FOR UPDATE;

-- name: lock_waiter
SELECT id FROM waiters WHERE id = :id FOR UPDATE;

-- name: first_buffered_signal
SELECT id, data FROM signals
WHERE key = :key AND expires_at > :now
ORDER BY id
LIMIT 1
FOR UPDATE;

-- name: buffered_signals
SELECT id, data FROM signals
WHERE key = :key AND expires_at > :now
ORDER BY id
FOR UPDATE;

-- name: select_steps
SELECT run_id, key, kind, status, output, error, attempts, started_at, ended_at, pos, spec,
       due_at, need, trace
FROM steps WHERE run_id = :id
ORDER BY started_at NULLS FIRST, pos NULLS FIRST, key COLLATE "C";

-- name: select_steps_by_run_ids
-- Through the primary key, one run at a time (OFFSET 0 keeps the lateral subquery a
-- lookup by one run_id): with no statistics, or stale ones, ``run_id = ANY(:ids)``
-- or a join is planned as a scan of every step of every run, ended ones included.
SELECT s.run_id, s.key, s.kind, s.status, s.output, s.error, s.attempts, s.started_at,
       s.ended_at, s.pos, s.spec, s.due_at, s.need, s.trace
FROM unnest(:ids::text[]) AS i (id),
     LATERAL (SELECT * FROM steps WHERE steps.run_id = i.id OFFSET 0) AS s
ORDER BY s.run_id, s.started_at NULLS FIRST, s.pos NULLS FIRST, s.key COLLATE "C";

-- name: step_summaries_by_run_ids
-- Each run's step count and highest place, by the primary key one run at a time (as
-- select_steps_by_run_ids, for the same reason).
SELECT i.id, s.n, s.top
FROM unnest(:ids::text[]) AS i (id),
     LATERAL (SELECT count(*) AS n, max(pos) AS top FROM steps WHERE steps.run_id = i.id) AS s;

-- name: due_runs
-- Ready runs of a priority other than 0 (runs_ready_priority, empty while none has
-- one), highest first, then those of priority 0, then the parked at their deadline
-- and those asked to cancel, each lookup read in due order on its own partial index
-- by claim_lookup (0019 says why a function); the claim merges them by (priority,
-- due_at).
WITH ranked AS (
    SELECT id, workflow, status, cancel_requested, due_at, priority
    FROM claim_lookup(:workflows, :now, :limit, 'ranked', false)
), plain AS (
    SELECT id, workflow, status, cancel_requested, due_at, priority
    FROM claim_lookup(:workflows, :now, :limit, 'plain', false)
), other AS (
    -- Parked at their deadline, or asked to cancel, whatever their priority: two
    -- lookups, each on its own index (an OR across them walks every due time).
    SELECT id, workflow, status, cancel_requested, due_at, priority
    FROM claim_lookup(:workflows, :now, :limit, 'waiting', false)
    UNION ALL
    SELECT id, workflow, status, cancel_requested, due_at, priority
    FROM claim_lookup(:workflows, :now, :limit, 'cancelling', false)
)
SELECT * FROM ranked UNION ALL SELECT * FROM plain UNION ALL SELECT * FROM other;

-- name: due_expired_leases
-- The runs of a workflow at its concurrency cap that can still be claimed: those
-- whose lease expired. Taking one over leaves the count of leased runs as it was.
SELECT id, workflow, status, cancel_requested, due_at, priority FROM runs
WHERE due_at <= :now AND workflow || '' = ANY(:workflows) AND status = 'running'
ORDER BY due_at
LIMIT :limit
FOR UPDATE SKIP LOCKED;

-- name: next_due
-- Workflows at their cap (``saturated``) wait for a run to end (a wake-up), not for
-- a time, except for the expiry of their leases; those whose due runs all wait for
-- a concurrency key (``blocked``) wait for a run to end, or for a later due time.
SELECT min(due_at) FROM runs
WHERE due_at IS NOT NULL
  AND (workflow || '' = ANY(:workflows)
       OR (workflow || '' = ANY(:saturated) AND status = 'running')
       OR (workflow || '' = ANY(:blocked) AND due_at > :now));

-- name: due_gated_runs
-- due_runs of one workflow with flow rules (its claims hold the workflow's lock),
-- each with its keys and, for each key, how many of the workflow's executing runs
-- hold it (counted once, from the runs executing). Each lookup as due_runs's, with
-- the runs' keys read in its own statement (0019 says why).
WITH executing AS MATERIALIZED (
    SELECT slot, count(*) AS n
    FROM claim_lookup(:workflows, NULL, NULL, 'executing', true) AS r, unnest(r.keys) AS slot
    WHERE substr(slot, 1, 2) = 'c:'
    GROUP BY slot
), due AS MATERIALIZED (
    SELECT * FROM claim_lookup(:workflows, :now, :limit, 'ranked', true)
    UNION ALL SELECT * FROM claim_lookup(:workflows, :now, :limit, 'plain', true)
    UNION ALL SELECT * FROM claim_lookup(:workflows, :now, :limit, 'waiting', true)
    UNION ALL SELECT * FROM claim_lookup(:workflows, :now, :limit, 'cancelling', true)
), counted AS (
    SELECT d.id, array_agg(slot || chr(31) || coalesce(e.n, 0)) AS keys
    FROM due AS d CROSS JOIN unnest(d.keys) AS slot LEFT JOIN executing AS e USING (slot)
    GROUP BY d.id
)
SELECT d.id, d.workflow, d.status, d.cancel_requested, d.due_at, d.priority,
       coalesce(c.keys, '{}')
FROM due AS d LEFT JOIN counted AS c USING (id);

-- name: keys_of_runs
SELECT run_id, limit_id, value FROM run_keys WHERE run_id = ANY(:ids);

-- name: delete_started_keys
-- A run that starts leaves its rate and debounce keys: a resume is not counted, and
-- a later start opens a new debounce window.
DELETE FROM run_keys WHERE run_id = ANY(:ids) AND substr(limit_id, 1, 2) <> 'c:';

-- name: queued_priorities
SELECT id, workflow, priority, due_at FROM runs WHERE id = ANY(:ids) AND status = 'queued';

-- name: rate_buckets
SELECT value, tat FROM flow_rates WHERE limit_id = :limit_id AND value = ANY(:values);

-- name: lease_woken_run
-- A run a delivery just made due, leased to the sending process's worker if it takes
-- the run's workflow (Handoff): left to a claim if a cancel is pending or it is not
-- due after all.
UPDATE runs
SET status = 'running', lease_token = :token, due_at = :lease_until, updated_at = :now,
    waiting_for = NULL
WHERE id = :id AND status = 'queued' AND NOT cancel_requested
  AND workflow = ANY(:workflows)
RETURNING seq, id, workflow, status, payload, output, error, created_at, updated_at,
          ended_at, due_at, waiting_for, cancel_requested, trigger, version, last_version,
          trace;

-- name: lease_runs
-- Each run found by its id, then updated where it lies (its rows are locked, so it
-- stays there): a join on id alone is planned, without statistics, as a scan of
-- every run.
UPDATE runs AS r
SET status = 'running', lease_token = v.token, due_at = :lease_until,
    updated_at = :now, waiting_for = NULL
FROM (SELECT x.tid, i.token
      FROM unnest(:ids::text[], :tokens::text[]) AS i (id, token),
           LATERAL (SELECT ctid AS tid FROM runs WHERE runs.id = i.id OFFSET 0) AS x) AS v
WHERE r.ctid = v.tid
RETURNING r.seq, r.id, r.workflow, r.status, r.payload, r.output, r.error, r.created_at,
          r.updated_at, r.ended_at, r.due_at, r.waiting_for, r.cancel_requested, r.trigger,
          r.version, r.last_version, r.trace;

-- name: renew_leases
UPDATE runs AS r SET due_at = :lease_until
FROM unnest(:ids::text[], :tokens::text[]) AS v (id, token)
WHERE r.id = v.id AND r.lease_token = v.token
RETURNING r.id, r.cancel_requested;

-- name: expire_waiting_steps
UPDATE steps
SET status = CASE kind WHEN 'sleep' THEN 'completed' ELSE 'timed_out' END,
    output = CASE WHEN need IS NULL THEN NULL ELSE output END, ended_at = :now
WHERE run_id = ANY(:ids) AND status = 'waiting' AND (due_at IS NULL OR due_at <= :now);

-- name: delete_wait_waiters_of_runs
-- The waiters of the waits that timed out (those of other waits stay filed).
DELETE FROM waiters
WHERE run_id = ANY(:ids) AND kind != 'cancel' AND expires_at IS NOT NULL AND expires_at <= :now;

-- name: resolve_wait
-- Deliver to one wait in one statement: its waiters go (never the run's cancel
-- waiters, filed under no step), its step gets the result, the run is due now.
WITH gone AS (
    DELETE FROM waiters WHERE run_id = :run_id AND step_key = :key
), note AS (
    SELECT pg_notify(:channel, '')
), resolved AS (
    UPDATE steps SET status = :status, output = :output, error = :error,
        ended_at = :now, trace = :trace
    WHERE run_id = :run_id AND key = :key
), woken AS (
    UPDATE runs SET status = 'queued', due_at = :now, waiting_for = NULL,
        updated_at = :now
    WHERE id = :run_id AND status = 'waiting'
)
SELECT count(*) FROM note;

-- name: insert_plain_run
-- The common start in one statement: insert and notify, when the workflow has no
-- cancel_on conditions (whose waiters need the transaction of insert_run). Returns
-- whether that held, and whether a run was inserted.
WITH plain AS (
    SELECT NOT EXISTS (
        SELECT 1 FROM workflows
        WHERE id = :workflow AND (cancel_on <> '[]'::bytea OR flow IS NOT NULL)
    ) AS ok
), ins AS (
    INSERT INTO runs (id, workflow, status, payload, trigger, parent_id, created_at,
                      updated_at, due_at, version, last_version, trace)
    SELECT :id, :workflow, 'queued', :payload, :trigger, :parent, :now,
           :now, :now, :version, :version, :trace
    FROM plain WHERE plain.ok
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), note AS (
    SELECT pg_notify(:channel, '') FROM ins
)
SELECT (SELECT ok FROM plain), (SELECT count(*) FROM ins), (SELECT count(*) FROM note);

-- name: claim_plain
-- Lease the due runs that need only a lease (not a timed-out wait, not a requested
-- cancellation: those take the full claim), in one statement. One row per run
-- leased, then the new token, the run's due time before this claim (when it became
-- due), the next due time of what is left, and whether
-- runs needing the full claim are due; a single row of NULLs and those two when
-- nothing was leased.
-- Each lookup of due runs is answered by its partial index (0010), however many runs
-- are parked and whatever the statistics say: ``workflow || ''`` keeps the planner
-- off the workflow indexes, which hold every parked run too (sqlite.sql's unary +).
-- A ready run of a priority other than 0 (runs_ready_priority, empty while none has
-- one) must go first: then nothing is leased here and the full claim orders them.
WITH ranked AS (
    SELECT due_at FROM runs
    WHERE due_at <= :now AND priority <> 0 AND status <> 'waiting' AND NOT cancel_requested
      AND workflow || '' = ANY(:workflows)
    ORDER BY priority DESC, due_at
    LIMIT 1
), due AS (
    -- In due order whatever the statistics say (0019): with none ranked, every
    -- ready run has priority 0.
    SELECT id, tid, due_at FROM claim_lookup(:workflows, :now, :limit, 'plain', false)
    WHERE NOT EXISTS (SELECT 1 FROM ranked)
), leased AS (
    UPDATE runs AS r
    SET status = 'running', lease_token = md5(random()::text || clock_timestamp() || r.id),
        due_at = :lease_until, updated_at = :now, waiting_for = NULL
    WHERE r.ctid = ANY(ARRAY(SELECT tid FROM due))
    RETURNING r.seq, r.id, r.workflow, r.status, r.payload, r.output, r.error, r.created_at,
              r.updated_at, r.ended_at, r.due_at, r.waiting_for, r.cancel_requested,
              r.trigger, r.version, r.last_version, r.trace, r.lease_token
)
SELECT l.seq, l.id, l.workflow, l.status, l.payload, l.output, l.error, l.created_at,
       l.updated_at, l.ended_at, l.due_at, l.waiting_for, l.cancel_requested, l.trigger,
       l.version, l.last_version, l.trace, l.lease_token, d.due_at AS due_before,
       (SELECT min(due_at) FROM runs
        WHERE due_at IS NOT NULL AND workflow || '' = ANY(:workflows)
          AND id NOT IN (SELECT id FROM due)),
       -- Two lookups, not one with OR across statuses, so that each has its index;
       -- each the first by due_at rather than EXISTS, which a generic plan may
       -- answer with a sequential scan it expects to stop early.
       (SELECT due_at FROM runs
        WHERE due_at <= :now AND status = 'waiting' AND workflow || '' = ANY(:workflows)
        ORDER BY due_at LIMIT 1) IS NOT NULL
       OR (SELECT due_at FROM runs
           WHERE due_at <= :now AND cancel_requested AND workflow || '' = ANY(:workflows)
           ORDER BY due_at LIMIT 1) IS NOT NULL
       OR EXISTS (SELECT 1 FROM ranked)
FROM (SELECT 1) AS one LEFT JOIN (leased AS l JOIN due AS d ON d.id = l.id) ON true;

-- name: save_step
-- The lease check and the write in one statement: the run's row is locked (as a
-- claim would lock it) only if this worker still holds the lease, and the step is
-- stored only then. No row back: the lease was lost and nothing was written.
WITH fence AS (
    SELECT cancel_requested FROM runs
    WHERE id = :run_id AND lease_token = :token
    FOR NO KEY UPDATE
), saved AS (
    INSERT INTO steps (run_id, key, kind, status, output, error, attempts, started_at,
                       ended_at, pos, spec, due_at, need)
    SELECT :run_id, :key, :kind, :status, :output, :error, :attempts,
           :started_at, :ended_at, :pos, :spec, :due_at, :need
    FROM fence
    ON CONFLICT (run_id, key) DO UPDATE SET
        kind = excluded.kind, status = excluded.status, output = excluded.output,
        error = excluded.error, attempts = excluded.attempts, started_at = excluded.started_at,
        ended_at = excluded.ended_at, pos = coalesce(excluded.pos, steps.pos),
    spec = coalesce(excluded.spec, steps.spec),
    due_at = excluded.due_at, need = coalesce(excluded.need, steps.need)
    RETURNING 1
)
SELECT cancel_requested FROM fence;

-- name: finish_orphan
-- The common end in one statement, for a run that no parent invoked (a child's end
-- must resume its parent, in the transaction of finish) and nobody asked to cancel
-- (a pending cancel wins over the end). No row back: the lease was lost, or the
-- run needs the full path.
WITH ended AS (
    UPDATE runs
    SET status = :status, output = :output, error = :error, ended_at = :now,
        updated_at = :now, due_at = NULL, lease_token = NULL, waiting_for = NULL
    WHERE id = :run_id AND lease_token = :token AND parent_id IS NULL
      AND NOT cancel_requested
    RETURNING id
), gone AS (
    DELETE FROM waiters WHERE run_id IN (SELECT id FROM ended)
)
SELECT id FROM ended;

-- name: server_clock
SELECT extract(epoch FROM clock_timestamp())::float8;

-- name: delete_runs
-- A purge of ended runs: each with everything kept for it.
WITH s AS (DELETE FROM steps WHERE run_id = ANY(:ids)),
     a AS (DELETE FROM step_attempts WHERE run_id = ANY(:ids)),
     c AS (DELETE FROM run_changes WHERE run_id = ANY(:ids)),
     w AS (DELETE FROM waiters WHERE run_id = ANY(:ids)),
     m AS (DELETE FROM messages WHERE run_id = ANY(:ids)),
     k AS (DELETE FROM tokens WHERE run_id = ANY(:ids)),
     f AS (DELETE FROM run_keys WHERE run_id = ANY(:ids))
DELETE FROM runs WHERE id = ANY(:ids) AND ended_at IS NOT NULL;

-- name: select_runs_by_ids
SELECT seq, id, workflow, status, payload, output, error, created_at, updated_at, ended_at,
       due_at, waiting_for, cancel_requested, trigger, version, last_version
FROM runs WHERE id = ANY(:ids);

-- name: run_triggers
SELECT id, workflow, payload, trigger FROM runs WHERE id = ANY(:ids);

-- name: deliver_waits
-- One output for many waiters (:ids, of the runs :run_ids), decided and written in one
-- statement. The runs' rows are locked in id order (deliveries to overlapping sets
-- queue instead of deadlocking), then, once every one is held (the one-time filter on
-- `locked`), the waiters still there, in id order; of each run the first of them is
-- chosen. A plain wait chosen is resolved here (resolve_wait for a set: its waiter
-- goes, its step completes with :output, its run is due now), the runs' rows updated
-- in the order they were made (that of most of their index entries; in hash order the
-- update took a fifth longer); a wait for several conditions (idx) is the caller's.
-- One row per run chosen, in waiter order: run_id, step_key, idx, resolved.
WITH locked AS (
    SELECT id, seq FROM runs WHERE id = ANY(:run_ids) ORDER BY id FOR UPDATE
), there AS (
    SELECT id, run_id, step_key, idx FROM waiters
    WHERE id = ANY(:ids::bigint[]) AND (SELECT count(*) FROM locked) >= 0
    ORDER BY id FOR UPDATE
), chosen AS (
    SELECT DISTINCT ON (run_id) id, run_id, step_key, idx FROM there ORDER BY run_id, id
), plain AS (
    SELECT c.run_id, c.step_key, l.seq FROM chosen AS c JOIN locked AS l ON l.id = c.run_id
    WHERE c.idx IS NULL ORDER BY l.seq
), gone AS (
    DELETE FROM waiters USING plain
    WHERE waiters.run_id = plain.run_id AND waiters.step_key = plain.step_key
), resolved AS (
    UPDATE steps SET status = 'completed', output = :output, error = NULL, ended_at = :now,
        trace = :trace
    FROM plain WHERE steps.run_id = plain.run_id AND steps.key = plain.step_key
), woken AS (
    UPDATE runs SET status = 'queued', due_at = :now, waiting_for = NULL, updated_at = :now
    FROM plain WHERE runs.seq = plain.seq AND runs.status = 'waiting'
)
SELECT run_id, step_key, idx, idx IS NULL FROM chosen ORDER BY id;

-- name: park_signal
-- The common park in one statement: a run waiting on one signal key that nobody
-- else waits on and no buffered signal answers, its step new, its deadline (if
-- any) ahead, its lease held and no cancel pending. The batch took the key's lock
-- just before (postgres_batch.PRELUDES), so this statement's snapshot sees every
-- send made under it: a signal is either buffered and seen here (no row: the full
-- park consumes it) or delivered to the waiter filed here. No row parked: the full
-- path decides (a lost lease, a cancel, a conflict, a wait answered now).
WITH parked AS (
    UPDATE runs
    SET status = 'waiting', lease_token = NULL, due_at = CAST(:deadline AS double precision),
        waiting_for = :waiting_for, updated_at = :now
    WHERE id = :run_id AND lease_token = :token AND NOT cancel_requested
      AND (CAST(:deadline AS double precision) IS NULL
           OR CAST(:deadline AS double precision) > :now)
      AND NOT EXISTS (SELECT 1 FROM waiters WHERE kind = 'signal' AND key = :key)
      AND NOT EXISTS (SELECT 1 FROM signals WHERE key = :key AND expires_at > :now)
      AND NOT EXISTS (SELECT 1 FROM steps WHERE run_id = :run_id AND key = :step_key)
    RETURNING id
), step AS (
    INSERT INTO steps (run_id, key, kind, status, attempts, started_at, pos, spec, due_at)
    SELECT id, :step_key, :kind, 'waiting', 1, :started_at, :pos, :spec, :due FROM parked
), waiter AS (
    INSERT INTO waiters (run_id, step_key, kind, key, expires_at)
    SELECT id, :step_key, 'signal', :key, CAST(:deadline AS double precision) FROM parked
), note AS (
    SELECT pg_notify(:channel, '') FROM parked
    WHERE CAST(:deadline AS double precision) IS NOT NULL
)
SELECT count(*), (SELECT count(*) FROM note) FROM parked;

-- name: key_locks
-- The locks of a set of statements (postgres_merge), in the sorted order given.
SELECT count(pg_advisory_xact_lock(hashtextextended(l, 0)))
FROM unnest(:locks::text[]) AS l;

-- name: park_signals
-- park_signal for a set of runs, each on its own signal key, in one statement (the
-- batch took every key's lock just before). One row per run: whether it parked and
-- whether that made it due (a deadline). The checks are lookups per run (OFFSET 0
-- keeps each NOT EXISTS a lookup rather than a join reading a whole table).
WITH p AS (
    SELECT run_id, token, key, step_key, kind, deadline,
           decode(waiting_for, 'hex') AS waiting_for, started_at, pos, spec, due, now
    FROM json_to_recordset(CAST(:rows AS json))
        AS p (run_id text, token text, key text, step_key text, kind text, deadline float8,
              waiting_for text, started_at float8, pos integer, spec text, due float8,
              now float8)
), parked AS (
    UPDATE runs AS r
    SET status = 'waiting', lease_token = NULL, due_at = p.deadline,
        waiting_for = p.waiting_for, updated_at = p.now
    FROM p
    WHERE r.id = p.run_id AND r.lease_token = p.token AND NOT r.cancel_requested
      AND (p.deadline IS NULL OR p.deadline > p.now)
      AND NOT EXISTS (SELECT 1 FROM waiters AS w
                      WHERE w.kind = 'signal' AND w.key = p.key OFFSET 0)
      AND NOT EXISTS (SELECT 1 FROM signals AS s
                      WHERE s.key = p.key AND s.expires_at > p.now OFFSET 0)
      AND NOT EXISTS (SELECT 1 FROM steps AS s
                      WHERE s.run_id = p.run_id AND s.key = p.step_key OFFSET 0)
    RETURNING r.id
), filed AS (
    SELECT p.* FROM p JOIN parked ON parked.id = p.run_id
), step AS (
    INSERT INTO steps (run_id, key, kind, status, attempts, started_at, pos, spec, due_at)
    SELECT run_id, step_key, kind, 'waiting', 1, started_at, pos, spec, due FROM filed
), waiter AS (
    INSERT INTO waiters (run_id, step_key, kind, key, expires_at)
    SELECT run_id, step_key, 'signal', key, deadline FROM filed
), note AS (
    SELECT pg_notify(:channel, '')
    WHERE EXISTS (SELECT 1 FROM filed WHERE deadline IS NOT NULL)
)
SELECT p.run_id, (f.run_id IS NOT NULL)::int,
       (f.deadline IS NOT NULL AND (SELECT count(*) FROM note) > 0)::int
FROM p LEFT JOIN filed AS f ON f.run_id = p.run_id;

-- name: insert_plain_runs
-- insert_plain_run for a set of new runs in one statement. One row per run: its id,
-- whether its workflow has no cancel_on conditions, whether it was inserted, and
-- whether the NOTIFY went out.
WITH p AS (
    SELECT id, workflow, decode(payload, 'hex') AS payload, decode(trigger, 'hex') AS trigger,
           parent, version, now, trace
    FROM json_to_recordset(CAST(:rows AS json))
        AS p (id text, workflow text, payload text, trigger text, parent text, version text,
              now float8, trace text)
), plain AS (
    SELECT p.*, NOT EXISTS (
        SELECT 1 FROM workflows AS w
        WHERE w.id = p.workflow AND (w.cancel_on <> '[]'::bytea OR w.flow IS NOT NULL)
        OFFSET 0
    ) AS ok
    FROM p
), ins AS (
    INSERT INTO runs (id, workflow, status, payload, trigger, parent_id, created_at,
                      updated_at, due_at, version, last_version, trace)
    SELECT id, workflow, 'queued', payload, trigger, parent, now, now, now, version, version,
           trace
    FROM plain WHERE ok
    ON CONFLICT (id) DO NOTHING
    RETURNING id
), note AS (
    SELECT pg_notify(:channel, '') WHERE EXISTS (SELECT 1 FROM ins)
)
SELECT plain.id, plain.ok, (ins.id IS NOT NULL)::int,
       (ins.id IS NOT NULL AND (SELECT count(*) FROM note) > 0)::int
FROM plain LEFT JOIN ins ON ins.id = plain.id;

-- name: save_steps
-- save_step for a set of runs (one step each) in one statement: each run's row
-- locked only if its lease holds, its step stored only then. One row per run whose
-- lease held: its id and whether a cancel is pending.
WITH p AS (
    SELECT run_id, token, key, kind, status, decode(output, 'hex') AS output,
           decode(error, 'hex') AS error, attempts, started_at, ended_at, pos, spec, due_at,
           need
    FROM json_to_recordset(CAST(:rows AS json))
        AS p (run_id text, token text, key text, kind text, status text, output text,
              error text, attempts integer, started_at float8, ended_at float8, pos integer,
              spec text, due_at float8, need integer)
), fence AS (
    SELECT r.id, r.cancel_requested
    FROM p JOIN runs AS r ON r.id = p.run_id AND r.lease_token = p.token
    FOR NO KEY UPDATE OF r
), saved AS (
    INSERT INTO steps (run_id, key, kind, status, output, error, attempts, started_at,
                       ended_at, pos, spec, due_at, need)
    SELECT p.run_id, p.key, p.kind, p.status, p.output, p.error, p.attempts, p.started_at,
           p.ended_at, p.pos, p.spec, p.due_at, p.need
    FROM p JOIN fence ON fence.id = p.run_id
    ON CONFLICT (run_id, key) DO UPDATE SET
        kind = excluded.kind, status = excluded.status, output = excluded.output,
        error = excluded.error, attempts = excluded.attempts, started_at = excluded.started_at,
        ended_at = excluded.ended_at, pos = coalesce(excluded.pos, steps.pos),
    spec = coalesce(excluded.spec, steps.spec),
    due_at = excluded.due_at, need = coalesce(excluded.need, steps.need)
    RETURNING 1
)
SELECT id, cancel_requested FROM fence;

-- name: finish_orphans
-- finish_orphan for a set of runs in one statement (keep the two alike). One row
-- per run ended.
WITH p AS (
    SELECT run_id, token, status, decode(output, 'hex') AS output,
           decode(error, 'hex') AS error, now
    FROM json_to_recordset(CAST(:rows AS json))
        AS p (run_id text, token text, status text, output text, error text, now float8)
), ended AS (
    UPDATE runs
    SET status = p.status, output = p.output, error = p.error, ended_at = p.now,
        updated_at = p.now, due_at = NULL, lease_token = NULL, waiting_for = NULL
    FROM p
    WHERE runs.id = p.run_id AND runs.lease_token = p.token AND runs.parent_id IS NULL
      AND NOT runs.cancel_requested
    RETURNING runs.id
), gone AS (
    DELETE FROM waiters WHERE run_id = ANY(ARRAY(SELECT id FROM ended))
)
SELECT id, id FROM ended;

-- name: metrics_parked_runs
-- The parked runs by wait kind and workflow, and when the oldest of each parked (a
-- parked run keeps the time it parked as updated_at: nothing writes it until it is
-- claimed again). From runs_status, so only parked runs are read.
SELECT convert_from(waiting_for, 'UTF8')::jsonb ->> 'kind' AS kind, workflow, count(*),
       min(updated_at)
FROM runs
WHERE status = 'waiting'
GROUP BY 1, workflow;
