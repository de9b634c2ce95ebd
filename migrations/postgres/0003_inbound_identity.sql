-- An inbound message's identity is its Message-ID *and* a hash of its content (PostgreSQL). Keep in step
-- with migrations/sqlite/0003_inbound_identity.sql. Two different messages that share a Message-ID (a
-- client that reuses ids, or a forger who guessed one) are both kept and both processed; the same message
-- seen again is still seen once. Rows kept before this have an empty hash and match any content.
ALTER TABLE inbound ADD COLUMN content_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE inbound DROP CONSTRAINT inbound_message_id_key;
ALTER TABLE inbound ADD CONSTRAINT inbound_message_id_content_hash_key UNIQUE (message_id, content_hash);
CREATE INDEX inbound_message_id ON inbound (message_id);
