CREATE TABLE devices (device_id BYTEA PRIMARY KEY, network_id BYTEA NOT NULL REFERENCES networks(id), user_id BYTEA NOT NULL, claimed_at BIGINT NOT NULL, revoked BIGINT NOT NULL DEFAULT 0);
CREATE INDEX devices_by_user ON devices (user_id);
CREATE TABLE retention_coverage (device_id BYTEA NOT NULL, conversation_id BYTEA NOT NULL, network_id BYTEA NOT NULL, first_seq BIGINT NOT NULL, last_seq BIGINT NOT NULL, count BIGINT NOT NULL, PRIMARY KEY (device_id, conversation_id))
