CREATE TABLE login_failures (network_id BYTEA NOT NULL, username TEXT NOT NULL, source TEXT NOT NULL, failures BIGINT NOT NULL, wait_until BIGINT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (network_id, username, source));
CREATE INDEX login_failures_by_age ON login_failures (updated_at);
CREATE TABLE spent_messages (message_id BYTEA PRIMARY KEY, conversation_id BYTEA NOT NULL, sender_device BYTEA NOT NULL, seq BIGINT NOT NULL, forget_at BIGINT NOT NULL);
CREATE INDEX spent_messages_by_age ON spent_messages (forget_at);
ALTER TABLE blobs ADD COLUMN expires_at BIGINT;
ALTER TABLE blobs ADD COLUMN retention_fetched BIGINT NOT NULL DEFAULT 0;
CREATE INDEX blobs_by_expiry ON blobs (expires_at);
CREATE INDEX blobs_by_uploader ON blobs (uploader);
CREATE INDEX blobs_by_network ON blobs (network_id);
ALTER TABLE retention_coverage ADD COLUMN last_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX blobs_by_conversation ON blobs (conversation_id);
CREATE FUNCTION envelopes_spent() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO spent_messages (message_id, conversation_id, sender_device, seq, forget_at) VALUES (OLD.message_id, OLD.conversation_id, OLD.sender_device, OLD.seq, OLD.received_at + 2678700000) ON CONFLICT (message_id) DO NOTHING; RETURN OLD; END $$;
CREATE TRIGGER envelopes_spent AFTER DELETE ON envelopes FOR EACH ROW EXECUTE FUNCTION envelopes_spent()
