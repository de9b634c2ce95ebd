-- Retention under UK GDPR (sqlite). Keep in step with migrations/postgres/0009_retention.sql.

-- The cases whose personal data has been removed, once their board's retention period after closing ended.
CREATE TABLE retention_purges (
    case_id    BIGINT PRIMARY KEY REFERENCES cases (id),
    board_id   TEXT NOT NULL,
    purged_at  BIGINT NOT NULL
);

-- The audit log stays append-only, with one exception: an event may be erased, and only erased (its words,
-- details and actor replaced by the fixed marker; its id, board, case, time and kind unchanged), so that a
-- case's personal data can go at the end of the retention period while the trail of what happened, when,
-- stays. Only the events of a case whose purge is recorded (retention_purges, written first), or of no case
-- (refusals, ignored mail), can be erased, and never a retention event itself. Nothing else about an event
-- can change, and none can be deleted.
DROP TRIGGER events_no_update;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
WHEN NOT (NEW.id = OLD.id AND NEW.board_id = OLD.board_id AND NEW.case_id IS OLD.case_id AND NEW.at = OLD.at
          AND NEW.kind = OLD.kind AND NEW.actor = 'removed' AND NEW.summary = '[removed under retention]'
          AND NEW.detail = '{}' AND OLD.kind <> 'retention'
          AND (OLD.case_id IS NULL OR OLD.case_id IN (SELECT case_id FROM retention_purges)))
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

CREATE INDEX inbound_board_received ON inbound (board_id, received_at);
CREATE INDEX cases_board_closed ON cases (board_id, closed_at) WHERE closed_at IS NOT NULL;
