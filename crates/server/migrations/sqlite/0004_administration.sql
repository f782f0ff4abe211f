ALTER TABLE users ADD COLUMN role TEXT NOT NULL DEFAULT 'user';
UPDATE users SET role = 'admin' WHERE admin = 1;
ALTER TABLE users ADD COLUMN suspended INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN group_id BLOB;
ALTER TABLE invites ADD COLUMN user_id BLOB;
CREATE TABLE security_groups (id BLOB PRIMARY KEY, network_id BLOB NOT NULL REFERENCES networks(id), name TEXT NOT NULL, settings TEXT NOT NULL, created_at INTEGER NOT NULL, UNIQUE (network_id, name));
CREATE TABLE network_settings (network_id BLOB PRIMARY KEY REFERENCES networks(id), settings TEXT NOT NULL);
CREATE TABLE audit_log (network_id BLOB NOT NULL, seq INTEGER NOT NULL, at INTEGER NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL, target TEXT NOT NULL, source TEXT NOT NULL, details TEXT NOT NULL, prev_hash BLOB NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (network_id, seq));
CREATE TABLE device_wipes (device_id BLOB PRIMARY KEY, user_id BLOB NOT NULL, requested_at INTEGER NOT NULL, confirmed_at INTEGER);
CREATE TABLE password_resets (code_hash BLOB PRIMARY KEY, user_id BLOB NOT NULL, expires_at INTEGER NOT NULL)
