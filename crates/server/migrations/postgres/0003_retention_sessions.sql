CREATE TABLE retention_sessions (token_hash BYTEA PRIMARY KEY, network_id BYTEA NOT NULL REFERENCES networks(id), device_id BYTEA NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT NOT NULL);
CREATE TABLE retention_logins (nonce BYTEA PRIMARY KEY, expires_at BIGINT NOT NULL)
