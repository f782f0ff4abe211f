ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'user';
UPDATE users SET role = 'admin' WHERE admin = 1;
ALTER TABLE users ADD COLUMN suspended BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN deleted BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN group_id BYTEA;
ALTER TABLE invites ADD COLUMN user_id BYTEA;
CREATE TABLE security_groups (id BYTEA PRIMARY KEY, network_id BYTEA NOT NULL REFERENCES networks(id), name TEXT NOT NULL, settings TEXT NOT NULL, created_at BIGINT NOT NULL, UNIQUE (network_id, name));
CREATE TABLE network_settings (network_id BYTEA PRIMARY KEY REFERENCES networks(id), settings TEXT NOT NULL);
CREATE TABLE audit_log (network_id BYTEA NOT NULL, seq BIGINT NOT NULL, at BIGINT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, source TEXT NOT NULL, details TEXT NOT NULL, prev_hash BYTEA NOT NULL, hash BYTEA NOT NULL, PRIMARY KEY (network_id, seq));
CREATE TABLE device_wipes (device_id BYTEA PRIMARY KEY, user_id BYTEA NOT NULL, requested_at BIGINT NOT NULL, confirmed_at BIGINT);
CREATE TABLE password_resets (code_hash BYTEA PRIMARY KEY, user_id BYTEA NOT NULL, expires_at BIGINT NOT NULL)
