CREATE TABLE login_failures (network_id BLOB NOT NULL, username TEXT NOT NULL, source TEXT NOT NULL, failures INTEGER NOT NULL, wait_until INTEGER NOT NULL, updated_at INTEGER NOT NULL, PRIMARY KEY (network_id, username, source));
CREATE INDEX login_failures_by_age ON login_failures (updated_at)
