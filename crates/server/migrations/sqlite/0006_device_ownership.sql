CREATE TABLE devices (device_id BLOB PRIMARY KEY, network_id BLOB NOT NULL REFERENCES networks(id), user_id BLOB NOT NULL, claimed_at INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);
CREATE INDEX devices_by_user ON devices (user_id);
CREATE TABLE retention_coverage (device_id BLOB NOT NULL, conversation_id BLOB NOT NULL, network_id BLOB NOT NULL, first_seq INTEGER NOT NULL, last_seq INTEGER NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (device_id, conversation_id))
