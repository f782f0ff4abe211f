-- See the SQLite migration of the same number: queue rows name their
-- envelope by an id in insertion order, and a delivered envelope stays as a
-- tombstone (bytes cleared, `forget_at` set) in place of a spent-id row.
ALTER TABLE envelopes ADD COLUMN id BIGSERIAL;
ALTER TABLE envelopes ADD COLUMN forget_at BIGINT;
DROP TRIGGER envelopes_spent ON envelopes;
DROP FUNCTION envelopes_spent();
INSERT INTO envelopes (message_id, network_id, conversation_id, seq, sender_device, prefix, signature, received_at, expires_at, forget_at) SELECT s.message_id, c.network_id, s.conversation_id, s.seq, s.sender_device, ''::bytea, ''::bytea, s.forget_at - 2678700000, NULL, s.forget_at FROM spent_messages s JOIN conversations c ON c.id = s.conversation_id ORDER BY s.forget_at ON CONFLICT (message_id) DO NOTHING;
DROP TABLE spent_messages;
ALTER TABLE queue ADD COLUMN envelope BIGINT;
UPDATE queue SET envelope = e.id FROM envelopes e WHERE e.message_id = queue.message_id;
ALTER TABLE queue ALTER COLUMN envelope SET NOT NULL;
-- Drops its foreign key, the (device_id, message_id) key and queue_by_message with it.
ALTER TABLE queue DROP COLUMN message_id;
ALTER TABLE envelopes DROP CONSTRAINT envelopes_pkey;
ALTER TABLE envelopes ADD PRIMARY KEY (id);
ALTER TABLE envelopes ADD CONSTRAINT envelopes_message_id_key UNIQUE (message_id);
ALTER TABLE queue ADD CONSTRAINT queue_envelope_fkey FOREIGN KEY (envelope) REFERENCES envelopes(id);
CREATE UNIQUE INDEX queue_by_envelope ON queue (envelope, device_id);
CREATE INDEX envelopes_live ON envelopes (id) WHERE forget_at IS NULL;
CREATE INDEX envelopes_by_forget ON envelopes (forget_at) WHERE forget_at IS NOT NULL;
