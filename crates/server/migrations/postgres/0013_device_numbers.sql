-- See the SQLite migration of the same number: the queue's per-device
-- index is keyed by a number the relay gives each device, not its 16-byte id.
CREATE TABLE device_numbers (no BIGSERIAL PRIMARY KEY, device_id BYTEA NOT NULL UNIQUE);
INSERT INTO device_numbers (device_id) SELECT DISTINCT device_id FROM queue ORDER BY device_id;
ALTER TABLE queue ADD COLUMN device_no BIGINT;
UPDATE queue SET device_no = n.no FROM device_numbers n WHERE n.device_id = queue.device_id;
ALTER TABLE queue ALTER COLUMN device_no SET NOT NULL;
DROP INDEX queue_by_device;
CREATE INDEX queue_by_device ON queue (device_no, id);
