CREATE TABLE device_list_history (user_id BYTEA NOT NULL REFERENCES users(id), version BIGINT NOT NULL, body BYTEA NOT NULL, PRIMARY KEY (user_id, version));
INSERT INTO device_list_history (user_id, version, body) SELECT user_id, version, body FROM device_lists;
