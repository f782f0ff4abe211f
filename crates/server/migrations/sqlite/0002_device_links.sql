CREATE TABLE device_links (device_id BLOB PRIMARY KEY, user_id BLOB NOT NULL REFERENCES users(id), signing_key BLOB NOT NULL, link_key BLOB NOT NULL, sealed BLOB, created_at INTEGER NOT NULL);
CREATE INDEX device_links_by_user ON device_links (user_id);
