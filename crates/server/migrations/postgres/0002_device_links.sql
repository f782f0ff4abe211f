CREATE TABLE device_links (device_id BYTEA PRIMARY KEY, user_id BYTEA NOT NULL REFERENCES users(id), signing_key BYTEA NOT NULL, link_key BYTEA NOT NULL, sealed BYTEA, created_at BIGINT NOT NULL);
CREATE INDEX device_links_by_user ON device_links (user_id);
