CREATE TABLE membership_statements (conversation_id BYTEA NOT NULL, seq BIGINT NOT NULL, body BYTEA NOT NULL, PRIMARY KEY (conversation_id, seq));
