-- An inbound message's identity is its Message-ID *and* a hash of its content (SQLite). Keep in step with
-- migrations/postgres/0003_inbound_identity.sql. Two different messages that share a Message-ID (a client
-- that reuses ids, or a forger who guessed one) are both kept and both processed; the same message seen
-- again is still seen once. Rows kept before this have an empty hash and match any content.
CREATE TABLE inbound_new (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    board_id      TEXT,
    mailbox       TEXT NOT NULL,
    uidvalidity   BIGINT,
    uid           BIGINT,
    message_id    TEXT NOT NULL,
    content_hash  TEXT NOT NULL DEFAULT '',
    received_at   BIGINT NOT NULL,
    raw           BLOB NOT NULL,
    outcome       TEXT,
    case_id       BIGINT REFERENCES cases (id),
    problems      TEXT,
    processed_at  BIGINT,
    UNIQUE (message_id, content_hash)
);
INSERT INTO inbound_new (id, board_id, mailbox, uidvalidity, uid, message_id, received_at, raw, outcome, case_id,
                         problems, processed_at)
SELECT id, board_id, mailbox, uidvalidity, uid, message_id, received_at, raw, outcome, case_id, problems, processed_at
FROM inbound;
DROP TABLE inbound;
ALTER TABLE inbound_new RENAME TO inbound;
CREATE UNIQUE INDEX inbound_uid ON inbound (mailbox, uidvalidity, uid) WHERE uid IS NOT NULL;
