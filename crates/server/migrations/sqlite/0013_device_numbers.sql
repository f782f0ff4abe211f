-- A room's message adds an entry for every member device to the queue's
-- per-device index, which is ordered by device: each message rewrote
-- every leaf page of that index (measured: 43 % of the committer's work in
-- a 1,000-device room, and most of the bytes written). The index is now
-- keyed by a small number the relay gives each device (`device_numbers`),
-- not by its 16-byte id, so the same entries fill about half the pages.
-- Numbers are the relay's own: a device cannot pick one to share another's
-- index range, as it could pick an id sharing another's prefix.
-- Queue rows keep the device id: every read still matches it too.
CREATE TABLE device_numbers (no INTEGER PRIMARY KEY, device_id BLOB NOT NULL UNIQUE);
INSERT INTO device_numbers (device_id) SELECT DISTINCT device_id FROM queue ORDER BY device_id;
CREATE TABLE queue_new (id INTEGER PRIMARY KEY AUTOINCREMENT, device_id BLOB NOT NULL, device_no INTEGER NOT NULL, envelope INTEGER NOT NULL REFERENCES envelopes(id), tail BLOB NOT NULL, retention INTEGER NOT NULL, enqueued_at INTEGER NOT NULL);
INSERT INTO queue_new (id, device_id, device_no, envelope, tail, retention, enqueued_at) SELECT q.id, q.device_id, n.no, q.envelope, q.tail, q.retention, q.enqueued_at FROM queue q JOIN device_numbers n ON n.device_id = q.device_id ORDER BY q.id;
-- Queue positions are never reused, even those of rows already acknowledged.
INSERT INTO sqlite_sequence (name, seq) SELECT 'queue_new', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'queue_new');
UPDATE sqlite_sequence SET seq = MAX(seq, COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'queue'), 0)) WHERE name = 'queue_new';
DROP TABLE queue;
ALTER TABLE queue_new RENAME TO queue;
CREATE INDEX queue_by_device ON queue (device_no, id);
CREATE UNIQUE INDEX queue_by_envelope ON queue (envelope, device_id);
