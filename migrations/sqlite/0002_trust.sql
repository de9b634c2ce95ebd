-- Trust and robustness (sqlite). Keep in step with migrations/postgres/0002_trust.sql.

-- Failed attempts at processing an inbound message (an error or a panic), by the message's identity, so
-- that a message that fails the same way every time is quarantined after three attempts, never retried for
-- ever. Kept in its own transaction, outside the unit of work that failed.
CREATE TABLE inbound_attempts (
    message_key  TEXT PRIMARY KEY,
    attempts     BIGINT NOT NULL,
    last_error   TEXT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- Commands that came without proof of their sender, held until the sender replies CONFIRM to the challenge
-- the bot sent to their address (challenge_message_id), or never.
CREATE TABLE held_commands (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    board_id              TEXT NOT NULL,
    case_reference        TEXT NOT NULL,
    sender                TEXT NOT NULL,
    command_word          TEXT NOT NULL,
    command               TEXT NOT NULL,
    challenge_message_id  TEXT NOT NULL UNIQUE,
    created_at            BIGINT NOT NULL,
    decided_at            BIGINT,
    decision              TEXT
);

-- Delivery per recipient: who has the email already (never sent to twice), who refused it for good (a
-- wrong address fails only that recipient), and when an operator last asked for it to be retried (the
-- give-up period counts from then).
ALTER TABLE outbox ADD COLUMN delivered_to TEXT NOT NULL DEFAULT '[]';
ALTER TABLE outbox ADD COLUMN refused TEXT NOT NULL DEFAULT '[]';
ALTER TABLE outbox ADD COLUMN retried_at BIGINT;
