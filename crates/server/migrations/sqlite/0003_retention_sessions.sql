CREATE TABLE retention_sessions (token_hash BLOB PRIMARY KEY, network_id BLOB NOT NULL REFERENCES networks(id), device_id BLOB NOT NULL, created_at INTEGER NOT NULL, expires_at INTEGER NOT NULL);
CREATE TABLE retention_logins (nonce BLOB PRIMARY KEY, expires_at INTEGER NOT NULL)
