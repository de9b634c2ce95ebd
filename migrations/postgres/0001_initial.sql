-- The initial schema (PostgreSQL). Keep in step with migrations/sqlite/0001_initial.sql.
-- Instants are milliseconds since the Unix epoch; dates are YYYY-MM-DD text; structured data is JSON text.

CREATE TABLE boards (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    policy_id   TEXT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- The last case number used per board and year, for references like BRAD-2027-0042.
CREATE TABLE case_sequences (
    board_id     TEXT NOT NULL,
    year         BIGINT NOT NULL,
    last_number  BIGINT NOT NULL,
    PRIMARY KEY (board_id, year)
);

CREATE TABLE cases (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reference   TEXT NOT NULL UNIQUE,
    board_id    TEXT NOT NULL REFERENCES boards (id),
    status      TEXT NOT NULL,
    stage       BIGINT NOT NULL,
    opened_at   BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    closed_at   BIGINT,
    version     BIGINT NOT NULL,
    data        TEXT NOT NULL
);
CREATE INDEX cases_board_status ON cases (board_id, status);

CREATE TABLE participants (
    case_id  BIGINT NOT NULL REFERENCES cases (id),
    email    TEXT NOT NULL,
    name     TEXT,
    agency   TEXT,
    role     TEXT NOT NULL,
    stage    BIGINT NOT NULL,
    PRIMARY KEY (case_id, email)
);
CREATE INDEX participants_email ON participants (email);

-- The audit trail: append-only, enforced below.
CREATE TABLE events (
    id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    board_id  TEXT NOT NULL,
    case_id   BIGINT REFERENCES cases (id),
    at        BIGINT NOT NULL,
    kind      TEXT NOT NULL,
    actor     TEXT NOT NULL,
    summary   TEXT NOT NULL,
    detail    TEXT NOT NULL
);
CREATE INDEX events_case ON events (case_id, id);
CREATE FUNCTION events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END
$$;
CREATE TRIGGER events_no_change BEFORE UPDATE OR DELETE ON events
FOR EACH ROW EXECUTE FUNCTION events_append_only();

CREATE TABLE deadlines (
    case_id   BIGINT NOT NULL REFERENCES cases (id),
    label     TEXT NOT NULL,
    stage     BIGINT,
    due_date  TEXT NOT NULL,
    kind      TEXT NOT NULL,
    PRIMARY KEY (case_id, label)
);

CREATE TABLE timers (
    id             BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    case_id        BIGINT NOT NULL REFERENCES cases (id),
    key            TEXT NOT NULL,
    kind           TEXT NOT NULL,
    label          TEXT NOT NULL,
    due_date       TEXT NOT NULL,
    fire_at        BIGINT NOT NULL,
    claimed_until  BIGINT,
    fired_at       BIGINT,
    late           BIGINT NOT NULL DEFAULT 0,
    UNIQUE (case_id, key)
);
CREATE INDEX timers_pending ON timers (fire_at) WHERE fired_at IS NULL;

CREATE TABLE outbox (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id       TEXT NOT NULL UNIQUE,
    board_id         TEXT NOT NULL,
    case_id          BIGINT REFERENCES cases (id),
    case_reference   TEXT,
    kind             TEXT NOT NULL,
    envelope         TEXT NOT NULL,
    subject          TEXT NOT NULL,
    body_text        TEXT NOT NULL,
    body_html        TEXT,
    headers          TEXT NOT NULL,
    created_at       BIGINT NOT NULL,
    next_attempt_at  BIGINT NOT NULL,
    attempts         BIGINT NOT NULL DEFAULT 0,
    claimed_until    BIGINT,
    sent_at          BIGINT,
    failed_at        BIGINT,
    last_error       TEXT
);
CREATE INDEX outbox_pending ON outbox (next_attempt_at) WHERE sent_at IS NULL AND failed_at IS NULL;

-- Every raw inbound message, kept until the board's retention period ends.
CREATE TABLE inbound (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    board_id      TEXT,
    mailbox       TEXT NOT NULL,
    uidvalidity   BIGINT,
    uid           BIGINT,
    message_id    TEXT NOT NULL UNIQUE,
    received_at   BIGINT NOT NULL,
    raw           BYTEA NOT NULL,
    outcome       TEXT,
    case_id       BIGINT REFERENCES cases (id),
    problems      TEXT,
    processed_at  BIGINT
);
CREATE UNIQUE INDEX inbound_uid ON inbound (mailbox, uidvalidity, uid) WHERE uid IS NOT NULL;
