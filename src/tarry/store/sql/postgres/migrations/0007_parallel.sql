-- Concurrency inside a run: each waiting step keeps its own deadline (a run parked
-- on the waits of several branches times out each on its own), and a wait for
-- several arrivals (wait_for_all, a k-of-n quorum) how many it needs.
ALTER TABLE steps ADD COLUMN due_at double precision;
ALTER TABLE steps ADD COLUMN need integer;
