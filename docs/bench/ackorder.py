#!/usr/bin/env python3
"""Log frames and CPU per ack for one room's acknowledgement wave, by the
order its rows are committed in (docs/PERFORMANCE.md, eleventh sitting).

The relay's queue table and indexes (migration 0013) in SQLite alone:
DEVICES devices x MESSAGES messages queued a message per commit, then every
row deleted in commits of 1,024 rows, in each order; the write-ahead log is
not checkpointed meanwhile, so its size counts the frames written.

    python3 docs/bench/ackorder.py [DIR]
"""
import os
import sqlite3
import sys
import time

DEVICES, MESSAGES, CHUNK = 1000, 64, 1024
DIR = sys.argv[1] if len(sys.argv) > 1 else "/var/tmp"


def fresh(path):
    for f in (path, path + "-wal", path + "-shm"):
        if os.path.exists(f):
            os.remove(f)
    c = sqlite3.connect(path, isolation_level=None)
    for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "wal_autocheckpoint=0",
                   "cache_size=-65536", "secure_delete=ON"):
        c.execute("PRAGMA " + pragma)
    c.execute("CREATE TABLE queue (id INTEGER PRIMARY KEY AUTOINCREMENT, device_id BLOB NOT NULL, "
              "device_no INTEGER NOT NULL, envelope INTEGER NOT NULL, tail BLOB NOT NULL, "
              "retention INTEGER NOT NULL, enqueued_at INTEGER NOT NULL)")
    c.execute("CREATE INDEX queue_by_device ON queue (device_no, id)")
    c.execute("CREATE UNIQUE INDEX queue_by_envelope ON queue (envelope, device_id)")
    return c


def run(name, key):
    path = os.path.join(DIR, "ackorder.db")
    devices = [os.urandom(16) for _ in range(DEVICES)]
    c = fresh(path)
    for m in range(MESSAGES):
        c.execute("BEGIN IMMEDIATE")
        c.executemany("INSERT INTO queue (device_id, device_no, envelope, tail, retention, enqueued_at) "
                      "VALUES (?, ?, ?, ?, 0, 0)", [(devices[d], d, m, os.urandom(110)) for d in range(DEVICES)])
        c.execute("COMMIT")
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    acks = sorted(((d, m) for d in range(DEVICES) for m in range(MESSAGES)), key=key)
    start = time.process_time()
    for i in range(0, len(acks), CHUNK):
        c.execute("BEGIN IMMEDIATE")
        c.executemany("DELETE FROM queue WHERE envelope = ? AND device_id = ? AND retention = 0",
                      [(m, devices[d]) for d, m in acks[i:i + CHUNK]])
        c.execute("COMMIT")
    cpu = time.process_time() - start
    frames = os.path.getsize(path + "-wal") // (4096 + 24)
    print(f"{name:>34}: {frames:6d} log frames, {cpu * 1e6 / len(acks):5.2f} us CPU per ack")
    c.close()
    for f in (path, path + "-wal", path + "-shm"):
        if os.path.exists(f):
            os.remove(f)


run("by device (a job at a time)", lambda x: (x[0], x[1]))
run("by message", lambda x: (x[1], x[0]))
for block in (64, 256):
    run(f"blocks of {block} devices, by message", lambda x, b=block: (x[0] // b, x[1], x[0]))
