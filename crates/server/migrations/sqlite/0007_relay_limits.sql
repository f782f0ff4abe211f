CREATE TABLE login_failures (network_id BLOB NOT NULL, username TEXT NOT NULL, source TEXT NOT NULL, failures INTEGER NOT NULL, wait_until INTEGER NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (network_id, username, source));
CREATE INDEX login_failures_by_age ON login_failures (updated_at);
CREATE TABLE spent_messages (message_id BLOB PRIMARY KEY, conversation_id BLOB NOT NULL, sender_device BLOB NOT NULL, seq INTEGER NOT NULL, forget_at INTEGER NOT NULL);
CREATE INDEX spent_messages_by_age ON spent_messages (forget_at);
ALTER TABLE blobs ADD COLUMN expires_at INTEGER;
ALTER TABLE blobs ADD COLUMN retention_fetched INTEGER NOT NULL DEFAULT 0;
CREATE INDEX blobs_by_expiry ON blobs (expires_at);
CREATE INDEX blobs_by_uploader ON blobs (uploader);
CREATE INDEX blobs_by_network ON blobs (network_id);
ALTER TABLE retention_coverage ADD COLUMN last_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX blobs_by_conversation ON blobs (conversation_id);
CREATE TRIGGER envelopes_spent AFTER DELETE ON envelopes BEGIN INSERT INTO spent_messages (message_id, conversation_id, sender_device, seq, forget_at) VALUES (OLD.message_id, OLD.conversation_id, OLD.sender_device, OLD.seq, OLD.received_at + 2678700000) ON CONFLICT (message_id) DO NOTHING; END
