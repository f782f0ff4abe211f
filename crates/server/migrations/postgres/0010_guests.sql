ALTER TABLE invites ADD COLUMN guest BIGINT NOT NULL DEFAULT 0;
ALTER TABLE invites ADD COLUMN invited_by BYTEA;
ALTER TABLE invites ADD COLUMN group_id BYTEA;
ALTER TABLE users ADD COLUMN invited_by BYTEA;
ALTER TABLE users ADD COLUMN last_active_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN expired_at BIGINT;
CREATE INDEX users_guests ON users (role) WHERE role = 'guest';
