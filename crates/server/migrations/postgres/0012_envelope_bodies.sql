-- See the SQLite migration of the same number: an envelope's bytes live in
-- a table of their own, whose rows are deleted at delivery; the tombstone
-- left in `envelopes` is a small row.
-- No foreign key: a body is written with its envelope and deleted when the
-- envelope becomes a tombstone, before any envelope row is deleted
-- (`messages::tombstone`, `expire`); a key would cost a check per row.
CREATE TABLE envelope_bodies (envelope BIGINT PRIMARY KEY, prefix BYTEA NOT NULL, signature BYTEA NOT NULL);
INSERT INTO envelope_bodies (envelope, prefix, signature) SELECT id, prefix, signature FROM envelopes WHERE forget_at IS NULL;
ALTER TABLE envelopes DROP COLUMN prefix, DROP COLUMN signature;
