CREATE TABLE login_failures (network_id BYTEA NOT NULL, username TEXT NOT NULL, source TEXT NOT NULL, failures BIGINT NOT NULL, wait_until BIGINT NOT NULL, updated_at BIGINT NOT NULL, PRIMARY KEY (network_id, username, source));
CREATE INDEX login_failures_by_age ON login_failures (updated_at)
