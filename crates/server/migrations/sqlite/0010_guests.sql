ALTER TABLE invites ADD COLUMN guest INTEGER NOT NULL DEFAULT 0;
ALTER TABLE invites ADD COLUMN invited_by BLOB;
ALTER TABLE invites ADD COLUMN group_id BLOB;
ALTER TABLE users ADD COLUMN invited_by BLOB;
ALTER TABLE users ADD COLUMN last_active_at INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN expired_at INTEGER;
CREATE INDEX users_guests ON users (role) WHERE role = 'guest';
