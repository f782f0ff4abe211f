//! The numbers the relay gives devices on SQLite (migration 0013): the
//! queue's per-device index is keyed by them, not by the 16-byte id, so a
//! room's message (an entry per device) rewrites half as many index pages.
//! A number, once committed, names its device for good: numbers are never
//! reused or changed, so the committer keeps those it has seen.

use std::collections::HashMap;

use rusqlite::{OptionalExtension, Transaction};

use super::StoreError;

/// Most numbers kept; past it the cache starts over (each is one read away).
const KEEP: usize = 1 << 20;

/// The committer's numbers: those committed, and those its open
/// transaction gave out (gone if it rolls back).
#[derive(Default)]
pub(super) struct DeviceNumbers {
    known: HashMap<[u8; 16], i64>,
    fresh: HashMap<[u8; 16], i64>,
}

impl DeviceNumbers {
    /// `device`'s number, given it in `tx` if it has none yet.
    pub(super) fn get(&mut self, tx: &Transaction<'_>, device: &[u8; 16]) -> Result<i64, StoreError> {
        if let Some(n) = self.known.get(device).or_else(|| self.fresh.get(device)) {
            return Ok(*n);
        }
        let mut find = tx.prepare_cached("SELECT no FROM device_numbers WHERE device_id = ?1")?;
        let n = match find.query_row([&device[..]], |r| r.get::<_, i64>(0)).optional()? {
            Some(n) => n,
            None => {
                tx.prepare_cached("INSERT INTO device_numbers (device_id) VALUES (?1)")?.execute([&device[..]])?;
                tx.last_insert_rowid()
            }
        };
        self.fresh.insert(*device, n);
        Ok(n)
    }

    /// `device`'s committed number, if this committer has seen it.
    pub(super) fn known(&self, device: &[u8; 16]) -> Option<i64> {
        self.known.get(device).copied()
    }

    /// The transaction committed: what it gave out is for good.
    pub(super) fn committed(&mut self) {
        if self.known.len() + self.fresh.len() > KEEP {
            self.known.clear();
        }
        self.known.extend(self.fresh.drain());
    }

    /// The transaction rolled back: what it gave out never existed.
    pub(super) fn rolled_back(&mut self) {
        self.fresh.clear();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::DeviceNumbers;

    fn db() -> rusqlite::Connection {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE device_numbers (no INTEGER PRIMARY KEY, device_id BLOB NOT NULL UNIQUE);")
            .unwrap();
        c
    }

    #[test]
    fn a_device_keeps_its_number_and_a_rolled_back_one_is_forgotten() {
        let mut c = db();
        let mut numbers = DeviceNumbers::default();
        let tx = c.transaction().unwrap();
        let a = numbers.get(&tx, &[1; 16]).unwrap();
        let b = numbers.get(&tx, &[2; 16]).unwrap();
        assert_ne!(a, b);
        assert_eq!(numbers.get(&tx, &[1; 16]).unwrap(), a);
        tx.commit().unwrap();
        numbers.committed();

        // Given out in a transaction that rolled back: the number is not kept,
        // and the device gets one that exists.
        let tx = c.transaction().unwrap();
        let lost = numbers.get(&tx, &[3; 16]).unwrap();
        drop(tx);
        numbers.rolled_back();
        let tx = c.transaction().unwrap();
        let again = numbers.get(&tx, &[3; 16]).unwrap();
        tx.commit().unwrap();
        numbers.committed();
        let stored: i64 =
            c.query_row("SELECT no FROM device_numbers WHERE device_id = ?1", [&[3u8; 16][..]], |r| r.get(0)).unwrap();
        assert_eq!(again, stored);
        let _ = lost;

        // A number another writer gave is read, not given twice.
        c.execute("INSERT INTO device_numbers (device_id) VALUES (?1)", [&[4u8; 16][..]]).unwrap();
        let theirs: i64 =
            c.query_row("SELECT no FROM device_numbers WHERE device_id = ?1", [&[4u8; 16][..]], |r| r.get(0)).unwrap();
        let tx = c.transaction().unwrap();
        assert_eq!(numbers.get(&tx, &[4; 16]).unwrap(), theirs);
        assert_eq!(numbers.get(&tx, &[1; 16]).unwrap(), a);
    }
}
