-- The lookups of a claim, each planned on its own partial index whatever the
-- statistics say, so that a claim costs what it takes (its batch), not what is
-- queued, and its plan does not change with a backlog.
--
-- The due runs a claim takes are read in due order. ORDER BY due_at LIMIT n over a
-- partial index of 0010 is that walk, but the planner takes it only when its
-- statistics say many rows match: without them (a fresh table, a backlog that grew
-- since autovacuum's last ANALYZE) it expects a few dozen, reads every match
-- through a bitmap and sorts them all (10 ms at 10,000 queued, against 0.3 ms for
-- the walk), and a generic plan of an OR across statuses walks every run that has a
-- due time. Inside this function sorting, bitmap and sequential scans are off, so
-- the walk of the lookup's own partial index is the only plan left, whatever the
-- statistics say; each lookup's plan is cached per session. An index scan also
-- marks the entries of runs that ended or moved on as dead the first time it meets
-- them, so later claims skip them until a vacuum removes them; a bitmap scan reads
-- them all again each time (a claim after 10,000 runs ended read 5,900 of them).
--
-- ``lookup``: 'ranked', ready runs of a priority other than 0 (runs_ready_priority),
-- highest first; 'plain', ready runs of priority 0 (runs_ready); 'waiting', parked
-- runs at their deadline not asked to cancel (runs_waiting_due); 'cancelling', runs
-- asked to cancel (runs_cancel_due). Each of those is locked, skipping those locked,
-- and comes with its ctid: locked, it stays where it lies until the commit, so a
-- claim's update finds it by ctid (a join on id is planned, without statistics, as
-- a scan of every run). 'executing': the runs leased now (runs_status), neither
-- locked nor in order, for a claim to count the concurrency keys they hold; ``now``
-- and ``lim`` unused.
-- ``with_keys``: each run's keys too (``limit_id<US>value``), read in the same
-- statement. Each statement of a function that may write sees what was committed
-- before it began, after the statement that called it began: keys read by the
-- caller could miss those of a run created in between, which this one sees.
-- ``workflow || ''`` keeps the planner off the workflow indexes, which hold every
-- parked run too.
CREATE FUNCTION claim_lookup(
    names text[], now double precision, lim integer, lookup text, with_keys boolean
)
RETURNS TABLE (id text, workflow text, status text, cancel_requested boolean,
               due_at double precision, priority integer, tid tid, keys text[])
LANGUAGE plpgsql VOLATILE ROWS 100
SET enable_sort = off
SET enable_bitmapscan = off
SET enable_seqscan = off
SET search_path FROM CURRENT
AS $$
BEGIN
    IF lookup = 'ranked' THEN
        RETURN QUERY
        SELECT r.id, r.workflow, r.status, r.cancel_requested, r.due_at, r.priority, r.ctid,
               CASE WHEN with_keys THEN ARRAY(
                   SELECT k.limit_id || chr(31) || k.value FROM run_keys AS k
                   WHERE k.run_id = r.id) END
        FROM runs AS r
        WHERE r.due_at <= now AND r.priority <> 0 AND r.workflow || '' = ANY(names)
          AND r.status <> 'waiting' AND NOT r.cancel_requested
        ORDER BY r.priority DESC, r.due_at
        LIMIT lim
        FOR UPDATE SKIP LOCKED;
    ELSIF lookup = 'plain' THEN
        RETURN QUERY
        SELECT r.id, r.workflow, r.status, r.cancel_requested, r.due_at, r.priority, r.ctid,
               CASE WHEN with_keys THEN ARRAY(
                   SELECT k.limit_id || chr(31) || k.value FROM run_keys AS k
                   WHERE k.run_id = r.id) END
        FROM runs AS r
        WHERE r.due_at <= now AND r.priority + 0 = 0 AND r.workflow || '' = ANY(names)
          AND r.status <> 'waiting' AND NOT r.cancel_requested
        ORDER BY r.due_at
        LIMIT lim
        FOR UPDATE SKIP LOCKED;
    ELSIF lookup = 'waiting' THEN
        RETURN QUERY
        SELECT r.id, r.workflow, r.status, r.cancel_requested, r.due_at, r.priority, r.ctid,
               CASE WHEN with_keys THEN ARRAY(
                   SELECT k.limit_id || chr(31) || k.value FROM run_keys AS k
                   WHERE k.run_id = r.id) END
        FROM runs AS r
        WHERE r.due_at <= now AND r.status = 'waiting' AND NOT r.cancel_requested
          AND r.workflow || '' = ANY(names)
        ORDER BY r.due_at
        LIMIT lim
        FOR UPDATE SKIP LOCKED;
    ELSIF lookup = 'cancelling' THEN
        RETURN QUERY
        SELECT r.id, r.workflow, r.status, r.cancel_requested, r.due_at, r.priority, r.ctid,
               CASE WHEN with_keys THEN ARRAY(
                   SELECT k.limit_id || chr(31) || k.value FROM run_keys AS k
                   WHERE k.run_id = r.id) END
        FROM runs AS r
        WHERE r.due_at <= now AND r.cancel_requested AND r.workflow || '' = ANY(names)
        ORDER BY r.due_at
        LIMIT lim
        FOR UPDATE SKIP LOCKED;
    ELSIF lookup = 'executing' THEN
        RETURN QUERY
        SELECT r.id, r.workflow, r.status, r.cancel_requested, r.due_at, r.priority, r.ctid,
               CASE WHEN with_keys THEN ARRAY(
                   SELECT k.limit_id || chr(31) || k.value FROM run_keys AS k
                   WHERE k.run_id = r.id) END
        FROM runs AS r
        WHERE r.status = 'running' AND r.workflow || '' = ANY(names);
    ELSE
        RAISE EXCEPTION 'claim_lookup: unknown lookup %', lookup;
    END IF;
END
$$;
