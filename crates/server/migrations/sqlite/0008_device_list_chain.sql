CREATE TABLE device_list_history (user_id BLOB NOT NULL REFERENCES users(id), version INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (user_id, version));
INSERT INTO device_list_history (user_id, version, body) SELECT user_id, version, body FROM device_lists;
