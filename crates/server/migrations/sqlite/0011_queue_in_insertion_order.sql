-- Acknowledging a message touched four indexes keyed by the random message
-- id (the queue's (device, message) and by-message indexes, the envelope's
-- key and the spent id it inserted), so each commit of acks dirtied pages
-- spread over whole tables, more of them the longer the queue. Now queue
-- rows name their envelope by an id in insertion order, and a delivered
-- envelope stays as a tombstone (its bytes cleared, `forget_at` set) in
-- place of a separate spent-id row: an ack touches pages near each other.
CREATE TABLE envelopes_new (id INTEGER PRIMARY KEY, message_id BLOB NOT NULL UNIQUE, network_id BLOB NOT NULL, conversation_id BLOB NOT NULL REFERENCES conversations(id), seq INTEGER NOT NULL, sender_device BLOB NOT NULL, prefix BLOB NOT NULL, signature BLOB NOT NULL, received_at INTEGER NOT NULL, expires_at INTEGER, forget_at INTEGER);
INSERT INTO envelopes_new (message_id, network_id, conversation_id, seq, sender_device, prefix, signature, received_at, expires_at, forget_at) SELECT s.message_id, c.network_id, s.conversation_id, s.seq, s.sender_device, x'', x'', s.forget_at - 2678700000, NULL, s.forget_at FROM spent_messages s JOIN conversations c ON c.id = s.conversation_id WHERE NOT EXISTS (SELECT 1 FROM envelopes e WHERE e.message_id = s.message_id) ORDER BY s.forget_at;
INSERT INTO envelopes_new (message_id, network_id, conversation_id, seq, sender_device, prefix, signature, received_at, expires_at) SELECT message_id, network_id, conversation_id, seq, sender_device, prefix, signature, received_at, expires_at FROM envelopes ORDER BY received_at;
CREATE TABLE queue_new (id INTEGER PRIMARY KEY AUTOINCREMENT, device_id BLOB NOT NULL, envelope INTEGER NOT NULL REFERENCES envelopes_new(id), tail BLOB NOT NULL, retention INTEGER NOT NULL, enqueued_at INTEGER NOT NULL);
INSERT INTO queue_new (id, device_id, envelope, tail, retention, enqueued_at) SELECT q.id, q.device_id, e.id, q.tail, q.retention, q.enqueued_at FROM queue q JOIN envelopes_new e ON e.message_id = q.message_id ORDER BY q.id;
-- Queue positions are never reused, even those of rows already acknowledged.
INSERT INTO sqlite_sequence (name, seq) SELECT 'queue_new', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'queue_new');
UPDATE sqlite_sequence SET seq = MAX(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'queue'), 0)) WHERE name = 'queue_new';
DROP TABLE queue;
DROP TABLE envelopes;
DROP TABLE spent_messages;
ALTER TABLE envelopes_new RENAME TO envelopes;
ALTER TABLE queue_new RENAME TO queue;
CREATE INDEX queue_by_device ON queue (device_id, id);
CREATE UNIQUE INDEX queue_by_envelope ON queue (envelope, device_id);
CREATE INDEX envelopes_live ON envelopes (id) WHERE forget_at IS NULL;
CREATE INDEX envelopes_by_forget ON envelopes (forget_at) WHERE forget_at IS NOT NULL;
