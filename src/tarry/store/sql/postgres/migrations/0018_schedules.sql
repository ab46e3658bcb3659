-- Cron schedules: for each cron workflow, the time up to which its slots were dealt
-- with (started, or skipped as missed), so that a worker starting after a gap knows
-- which slots it missed. Moved forward only, in the transaction that starts a slot.
CREATE TABLE schedules (
    workflow text PRIMARY KEY,
    covered_until double precision NOT NULL,
    updated_at double precision NOT NULL
);
