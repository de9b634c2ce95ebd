-- Digests (sqlite). Keep in step with migrations/postgres/0007_digests.sql.

-- One row per digest sent: a scheduled one by the moment it was due (so that several daemons send it once,
-- and the next digest says what changed since this one), an on-demand one by the moment it was asked for.
CREATE TABLE digests (
    board_id       TEXT NOT NULL,
    scheduled_for  BIGINT NOT NULL,
    sent_at        BIGINT NOT NULL,
    on_demand      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (board_id, scheduled_for)
);

-- The digest reads a board's open cases and those changed since the last digest.
CREATE INDEX cases_board_updated ON cases (board_id, updated_at);
