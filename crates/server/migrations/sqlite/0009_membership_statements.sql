CREATE TABLE membership_statements (conversation_id BLOB NOT NULL REFERENCES conversations(id), seq INTEGER NOT NULL, body BLOB NOT NULL, PRIMARY KEY (conversation_id, seq));
