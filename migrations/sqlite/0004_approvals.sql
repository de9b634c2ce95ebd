-- Records from organisations a board does not know yet (sqlite). Keep in step with
-- migrations/postgres/0004_approvals.sql. Care providers and voluntary organisations are partners in every
-- seed: a record from an unknown domain is held for the board's approval, not refused.

-- A record held until board staff reply APPROVE or REJECT to the request the bot sent them
-- (request_message_id). The record itself is the kept inbound message.
CREATE TABLE held_records (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    board_id            TEXT NOT NULL,
    inbound_id          BIGINT NOT NULL REFERENCES inbound (id),
    sender              TEXT NOT NULL,
    domain              TEXT NOT NULL,
    request_message_id  TEXT NOT NULL UNIQUE,
    created_at          BIGINT NOT NULL,
    decided_at          BIGINT,
    decision            TEXT,
    decided_by          TEXT
);

-- Domains a board's staff approved: their records open cases at once from then on.
CREATE TABLE approved_domains (
    board_id     TEXT NOT NULL,
    domain       TEXT NOT NULL,
    approved_by  TEXT NOT NULL,
    approved_at  BIGINT NOT NULL,
    PRIMARY KEY (board_id, domain)
);

-- Rate limits count the board's emails of the last 24 hours.
CREATE INDEX outbox_board_created ON outbox (board_id, created_at);
