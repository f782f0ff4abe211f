-- A delivered envelope's bytes were cleared in place (an UPDATE that shrinks
-- a row), and SQLite never merges pages that an UPDATE leaves almost empty:
-- the table kept a page per two envelopes for the month a tombstone lives,
-- the cleared bytes stayed in those pages' free space, and each delivery
-- wrote its envelope's page twice. The bytes now live in a table of their
-- own whose rows are deleted at delivery (their pages merged, freed and
-- reused); a tombstone is the small row left in `envelopes`.
-- No foreign key: a body is written with its envelope and deleted when the
-- envelope becomes a tombstone, before any envelope row is deleted
-- (`messages::tombstone`, `expire`); a key would cost a check per row.
CREATE TABLE envelopes_new (id INTEGER PRIMARY KEY, message_id BLOB NOT NULL UNIQUE, network_id BLOB NOT NULL, conversation_id BLOB NOT NULL REFERENCES conversations(id), seq INTEGER NOT NULL, sender_device BLOB NOT NULL, received_at INTEGER NOT NULL, expires_at INTEGER, forget_at INTEGER);
INSERT INTO envelopes_new (id, message_id, network_id, conversation_id, seq, sender_device, received_at, expires_at, forget_at) SELECT id, message_id, network_id, conversation_id, seq, sender_device, received_at, expires_at, forget_at FROM envelopes ORDER BY id;
CREATE TABLE envelope_bodies (envelope INTEGER PRIMARY KEY, prefix BLOB NOT NULL, signature BLOB NOT NULL);
INSERT INTO envelope_bodies (envelope, prefix, signature) SELECT id, prefix, signature FROM envelopes WHERE forget_at IS NULL ORDER BY id;
CREATE TABLE queue_new (id INTEGER PRIMARY KEY AUTOINCREMENT, device_id BLOB NOT NULL, envelope INTEGER NOT NULL REFERENCES envelopes_new(id), tail BLOB NOT NULL, retention INTEGER NOT NULL, enqueued_at INTEGER NOT NULL);
INSERT INTO queue_new (id, device_id, envelope, tail, retention, enqueued_at) SELECT id, device_id, envelope, tail, retention, enqueued_at FROM queue ORDER BY id;
-- Queue positions are never reused, even those of rows already acknowledged.
INSERT INTO sqlite_sequence (name, seq) SELECT 'queue_new', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'queue_new');
UPDATE sqlite_sequence SET seq = MAX(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'queue'), 0)) WHERE name = 'queue_new';
DROP TABLE queue;
DROP TABLE envelopes;
ALTER TABLE envelopes_new RENAME TO envelopes;
ALTER TABLE queue_new RENAME TO queue;
CREATE INDEX queue_by_device ON queue (device_id, id);
CREATE UNIQUE INDEX queue_by_envelope ON queue (envelope, device_id);
CREATE INDEX envelopes_live ON envelopes (id) WHERE forget_at IS NULL;
CREATE INDEX envelopes_by_forget ON envelopes (forget_at) WHERE forget_at IS NOT NULL;
