CREATE TABLE login_failures (network_id BLOB NOT NULL, username TEXT NOT NULL, source TEXT NOT NULL, failures INTEGER NOT NULL, wait_until INTEGER NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (network_id, username, source));
CREATE INDEX login_failures_by_age ON login_failures (updated_at);
ALTER TABLE blobs ADD COLUMN expires_at INTEGER;
ALTER TABLE blobs ADD COLUMN retention_fetched INTEGER NOT NULL DEFAULT 0;
CREATE INDEX blobs_by_expiry ON blobs (expires_at);
CREATE INDEX blobs_by_uploader ON blobs (uploader);
CREATE INDEX blobs_by_network ON blobs (network_id);
ALTER TABLE retention_coverage ADD COLUMN last_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX blobs_by_conversation ON blobs (conversation_id);
ALTER TABLE envelopes ADD COLUMN swept INTEGER NOT NULL DEFAULT 0;
CREATE INDEX envelopes_live ON envelopes (swept, received_at)
