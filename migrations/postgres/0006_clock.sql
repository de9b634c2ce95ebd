-- The case clock (postgres). Keep in step with migrations/sqlite/0006_clock.sql.

-- An email to a board role whose address is still a placeholder (.invalid) is held, not sent: held_role
-- names the role, held_reason says why in words an operator can act on. Once the board file gives the role
-- a real address, the daemon re-addresses the held email to it on start and sends it.
ALTER TABLE outbox ADD COLUMN held_role TEXT;
ALTER TABLE outbox ADD COLUMN held_reason TEXT;

-- When a timer was written (the moment of the change that scheduled it): one written after its own moment
-- (an overdue notice for a deadline already missed) is not late when it goes at once; one whose moment
-- passed while the daemon was down is.
ALTER TABLE timers ADD COLUMN created_at BIGINT;

-- The scheduler sleeps until the earliest moment a pending timer can be acted on: its fire_at, or, for one
-- claimed (or put off until working hours), the end of that claim.
-- Each query matches its index's condition exactly, so it walks the index whatever the statistics say.
CREATE INDEX timers_unclaimed ON timers (fire_at) WHERE fired_at IS NULL AND claimed_until IS NULL;
CREATE INDEX timers_claimed ON timers (claimed_until) WHERE fired_at IS NULL AND claimed_until IS NOT NULL;
