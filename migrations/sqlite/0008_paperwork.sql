-- The boards' paperwork (sqlite). Keep in step with migrations/postgres/0008_paperwork.sql.

-- Files an outgoing email carries (the board's record form as a Word document): a JSON list of
-- {filename, content_type, data_base64}.
ALTER TABLE outbox ADD COLUMN attachments TEXT NOT NULL DEFAULT '[]';
