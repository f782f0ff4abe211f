use std::sync::Arc;
use strongroom_crypto::envelope::DeliveryParts;

use super::{blob, id16, int, DeviceRef, Sink, Store, StoreError, WriteTimings};

/// An accepted envelope, split for storage.
#[derive(Debug, Clone)]
pub struct StoredEnvelope {
    /// Message id.
    pub message_id: [u8; 16],
    /// Network.
    pub network_id: [u8; 16],
    /// Conversation.
    pub conversation_id: [u8; 16],
    /// Sending device.
    pub sender_device: [u8; 16],
    /// The part every recipient shares.
    pub prefix: Vec<u8>,
    /// The sender's signature.
    pub signature: Vec<u8>,
    /// When the message's TTL runs out (ms), if it has one.
    pub expires_at: Option<i64>,
}

/// A queued delivery for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedRow {
    /// Position in the device's queue.
    pub queue_id: i64,
    /// Message id.
    pub message_id: [u8; 16],
    /// Conversation.
    pub conversation_id: [u8; 16],
    /// Per-conversation sequence number.
    pub seq: u64,
    /// When the relay accepted the message (ms): the archive's trusted
    /// time, against which a sender's clock is judged.
    pub received_at: u64,
    /// The delivered-form envelope.
    pub envelope: Vec<u8>,
}

/// What the relay queued for a retention device in one conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CoverageRow {
    /// The conversation.
    pub conversation_id: [u8; 16],
    /// Lowest sequence number queued for the device.
    pub first_seq: u64,
    /// Highest.
    pub last_seq: u64,
    /// How many envelopes were queued for it in all.
    pub count: u64,
    /// How many of them are still queued (not acknowledged).
    pub queued: u64,
}

/// What storing an envelope did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Newly stored with this sequence number.
    Stored(u64),
    /// Already stored (same sender and conversation): its sequence number.
    Duplicate(u64),
    /// The message id is taken by another sender or conversation.
    IdConflict,
}

/// A delivered envelope's id is remembered (its row stays, bytes cleared,
/// as a tombstone) until no replay of it could pass the timestamp checks:
/// received + the replay window + the allowed skew.
const SPENT_FOR_MS: i64 = 2_678_700_000;
const _SPENT_FOR_MS: () = assert!(
    strongroom_crypto::envelope::DEFAULT_REPLAY_WINDOW_MS + strongroom_crypto::envelope::MAX_SKEW_MS
        == SPENT_FOR_MS as u64
);

/// Turns the envelopes that `pick` (more of a `WHERE`, starting with `AND`)
/// names and no queue references any more into tombstones, in two
/// statements run in this order in one transaction: their rows keep what a
/// spent id kept (id, conversation, sender, sequence number, time) with no
/// timer, remembered until `forget_at` (`expire` removes them then); then
/// the bytes of every tombstone `pick` names are deleted (`envelope_bodies`;
/// deleted rows free their pages, which SQLite merges and reuses). Marking
/// first: on PostgreSQL each statement sees what committed before it, so a
/// transaction that marks an envelope always deletes its bytes too. On
/// SQLite the row stays where it is, so its message-id index entry is not
/// touched.
pub(super) fn tombstone(pick: &str) -> [String; 2] {
    [
        format!(
            "UPDATE envelopes SET {} WHERE forget_at IS NULL AND NOT EXISTS (SELECT 1 FROM queue WHERE queue.envelope = envelopes.id) {pick}",
            tombstone_set()
        ),
        format!("DELETE FROM envelope_bodies WHERE envelope IN (SELECT id FROM envelopes WHERE forget_at IS NOT NULL {pick})"),
    ]
}

/// A body left under a reused envelope id (SQLite reuses the highest id
/// once its tombstone is forgotten) gives way to the new one.
pub(super) const BODY_CONFLICT: &str =
    "ON CONFLICT (envelope) DO UPDATE SET prefix = excluded.prefix, signature = excluded.signature";

/// What marking an envelope as a tombstone sets: no timer, and when it is
/// forgotten.
pub(super) fn tombstone_set() -> String {
    format!("expires_at = NULL, forget_at = received_at + {SPENT_FOR_MS}")
}

/// Deletes the bytes of every envelope that is not live: what a tombstone
/// left behind in any way (the expiry pass runs it).
const ORPHANED_BODIES: &str = "DELETE FROM envelope_bodies WHERE NOT EXISTS \
     (SELECT 1 FROM envelopes e WHERE e.id = envelope_bodies.envelope AND e.forget_at IS NULL)";

impl Store {
    /// Stores an envelope once and queues a tail per recipient device: when
    /// this returns `Stored`, the message is durable. Concurrent calls are
    /// committed together (group commit): one transaction and one fsync for
    /// everything that arrived while the previous commit was in flight.
    /// `tails`: (device, tail, is a retention device).
    /// Takes the envelope and tails by value: they move to the committer
    /// without a copy.
    pub async fn store_envelope(
        &self,
        env: StoredEnvelope,
        tails: Vec<Tail>,
        now: i64,
    ) -> Result<StoreOutcome, StoreError> {
        let job = Box::new(EnvelopeJob { env, tails, now, queued: std::time::Instant::now() });
        let Some(committer) = &self.envelopes else { return self.store_alone(&job).await };
        let (reply, answer) = tokio::sync::oneshot::channel();
        if let Err(e) = committer.send(Job::Envelope(job, reply)).await {
            let Job::Envelope(job, _) = e.0 else { return Err(StoreError::Corrupt("the committer stopped")) };
            return self.store_alone(&job).await;
        }
        answer.await.unwrap_or(Err(StoreError::Corrupt("the committer stopped")))
    }

    /// One envelope in its own transaction.
    async fn store_alone(&self, job: &EnvelopeJob) -> Result<StoreOutcome, StoreError> {
        // The sink is read once: rows committed without queue ids are not
        // handed to one set in between.
        let sink = self.sink.get();
        let mut tx = self.write_queue().await?;
        let (outcomes, queued) = self.store_many(&mut tx, &[job], sink.is_some()).await?;
        tx.commit().await?;
        deliver(sink, &[job], &outcomes, &queued);
        outcomes.into_iter().next().ok_or(StoreError::Corrupt("no outcome"))
    }

    /// Stores a group of envelopes in a few statements: one lookup of
    /// existing ids, one sequence update per conversation (in a global
    /// order, so concurrent groups on PostgreSQL never deadlock), and
    /// multi-row inserts. Outcomes are in the order of `jobs`; with a sink,
    /// also the queue id of each (device, message) row.
    async fn store_many(
        &self,
        tx: &mut super::WriteTx<'_>,
        jobs: &[&EnvelopeJob],
        want_queue_ids: bool,
    ) -> Result<(Vec<StoreOutcome>, QueueIds), StoreError> {
        use std::collections::HashMap;
        let mut known = Known::new();
        // Ids stored, or delivered to everyone and swept (a replay of one is a
        // duplicate, not a new message to queue again): one statement.
        // (Delivered ones stay as tombstones until `forget_at`.)
        for chunk in jobs.chunks(MAX_ROWS_PER_STATEMENT) {
            let sql = format!(
                "SELECT message_id, conversation_id, sender_device, seq FROM envelopes WHERE message_id IN ({})",
                placeholders(self.backend, chunk.len(), 1, 0),
            );
            let mut q = sqlx::query(&sql).persistent(false);
            for j in chunk {
                q = q.bind(j.env.message_id.to_vec());
            }
            for row in q.fetch_all(&mut *tx.tx).await? {
                let entry = (id16(&row, "conversation_id")?, id16(&row, "sender_device")?, Some(int(&row, "seq")?));
                known.insert(id16(&row, "message_id")?, entry);
            }
        }
        let fresh = fresh_by_conversation(jobs, &mut known);
        let mut seqs: HashMap<usize, i64> = HashMap::new();
        for (conversation, members) in &fresh {
            let n = i64::try_from(members.len()).unwrap_or(i64::MAX);
            let last = int(
                &sqlx::query(
                    &self.sql("UPDATE conversations SET last_seq = last_seq + $2 WHERE id = $1 RETURNING last_seq"),
                )
                .bind(conversation.to_vec())
                .bind(n)
                .fetch_one(&mut *tx.tx)
                .await?,
                "last_seq",
            )?;
            for (k, i) in members.iter().enumerate() {
                seqs.insert(*i, last - n + 1 + i64::try_from(k).unwrap_or(0));
            }
        }
        let mut new: Vec<(usize, i64)> = seqs.iter().map(|(i, s)| (*i, *s)).collect();
        new.sort_unstable();
        // Queue rows name their envelope by its id (in insertion order).
        let mut envelope_ids: HashMap<[u8; 16], i64> = HashMap::new();
        for chunk in new.chunks(MAX_ROWS_PER_STATEMENT / 7) {
            let sql = format!(
                "INSERT INTO envelopes (message_id, network_id, conversation_id, seq, sender_device, received_at, expires_at) VALUES {} \
                 RETURNING id, message_id",
                placeholders(self.backend, chunk.len(), 7, 0)
            );
            let mut q = sqlx::query(&sql).persistent(false);
            for (i, seq) in chunk {
                let j = jobs.get(*i).ok_or(StoreError::Corrupt("group index"))?;
                let e = &j.env;
                q = q
                    .bind(e.message_id.to_vec())
                    .bind(e.network_id.to_vec())
                    .bind(e.conversation_id.to_vec())
                    .bind(*seq)
                    .bind(e.sender_device.to_vec())
                    .bind(j.now)
                    .bind(e.expires_at);
            }
            for row in q.fetch_all(&mut *tx.tx).await? {
                envelope_ids.insert(id16(&row, "message_id")?, int(&row, "id")?);
            }
        }
        // Their bytes, in a table of their own (deleted at delivery).
        for chunk in new.chunks(MAX_ROWS_PER_STATEMENT / 3) {
            let sql = format!(
                "INSERT INTO envelope_bodies (envelope, prefix, signature) VALUES {} {BODY_CONFLICT}",
                placeholders(self.backend, chunk.len(), 3, 0)
            );
            let mut q = sqlx::query(&sql).persistent(false);
            for (i, _) in chunk {
                let e = &jobs.get(*i).ok_or(StoreError::Corrupt("group index"))?.env;
                let id = *envelope_ids.get(&e.message_id).ok_or(StoreError::Corrupt("envelope id"))?;
                q = q.bind(id).bind(e.prefix.clone()).bind(e.signature.clone());
            }
            q.execute(&mut *tx.tx).await?;
        }
        let by_envelope: HashMap<i64, [u8; 16]> = envelope_ids.iter().map(|(m, e)| (*e, *m)).collect();
        let rows: Vec<(&EnvelopeJob, &Tail)> =
            new.iter().filter_map(|(i, _)| jobs.get(*i)).flat_map(|j| j.tails.iter().map(move |t| (*j, t))).collect();
        let mut queued = QueueIds::new();
        let returning = if want_queue_ids { " RETURNING id, device_id, envelope" } else { "" };
        // Each device's number (migration 0013), given first if it has none;
        // in one order everywhere, so two nodes' groups cannot deadlock on them.
        let mut devices: Vec<[u8; 16]> = rows.iter().map(|(_, (d, _, _))| *d).collect();
        devices.sort_unstable();
        devices.dedup();
        for chunk in devices.chunks(MAX_ROWS_PER_STATEMENT) {
            let sql = number_devices(self.backend, chunk.len());
            let mut q = sqlx::query(&sql).persistent(false);
            for device in chunk {
                q = q.bind(device.to_vec());
            }
            q.execute(&mut *tx.tx).await?;
        }
        let sqlite = self.backend == super::Backend::Sqlite;
        for chunk in rows.chunks(MAX_ROWS_PER_STATEMENT / 6) {
            let sql = format!(
                "INSERT INTO queue (device_id, envelope, tail, retention, enqueued_at, device_no) VALUES {}{returning}",
                queue_values(self.backend, chunk.len())
            );
            let mut q = sqlx::query(&sql).persistent(false);
            for (j, (device, tail, retention)) in chunk {
                let envelope = *envelope_ids.get(&j.env.message_id).ok_or(StoreError::Corrupt("envelope id"))?;
                q = q.bind(device.to_vec()).bind(envelope).bind(tail.clone()).bind(i64::from(*retention)).bind(j.now);
                if sqlite {
                    q = q.bind(device.to_vec());
                }
            }
            for row in q.fetch_all(&mut *tx.tx).await? {
                if !returning.is_empty() {
                    let message =
                        *by_envelope.get(&int(&row, "envelope")?).ok_or(StoreError::Corrupt("envelope id"))?;
                    queued.insert((id16(&row, "device_id")?, message), int(&row, "id")?);
                }
            }
        }
        self.cover_retention(tx, jobs, &new).await?;
        Ok((outcomes(jobs, &known, &seqs)?, queued))
    }

    /// Records, per retention device and conversation, which sequence
    /// numbers were queued for it (first, last and how many), so `retention
    /// verify` can tell a queue drained without archiving from one still
    /// waiting. One upsert per (device, conversation) in the group; nothing
    /// when retention is off.
    async fn cover_retention(
        &self,
        tx: &mut super::WriteTx<'_>,
        jobs: &[&EnvelopeJob],
        new: &[(usize, i64)],
    ) -> Result<(), StoreError> {
        let cover = coverage(jobs, new);
        if cover.is_empty() {
            return Ok(());
        }
        let (max, min) = match self.backend {
            super::Backend::Postgres => ("GREATEST", "LEAST"),
            super::Backend::Sqlite => ("MAX", "MIN"),
        };
        let rows: Vec<_> = cover.into_iter().collect();
        for chunk in rows.chunks(MAX_ROWS_PER_STATEMENT / 7) {
            let sql = format!(
                "INSERT INTO retention_coverage (device_id, conversation_id, network_id, first_seq, last_seq, count, last_at) VALUES {} \
                 ON CONFLICT (device_id, conversation_id) DO UPDATE SET \
                 first_seq = {min}(retention_coverage.first_seq, excluded.first_seq), \
                 last_seq = {max}(retention_coverage.last_seq, excluded.last_seq), \
                 count = retention_coverage.count + excluded.count, \
                 last_at = {max}(retention_coverage.last_at, excluded.last_at)",
                placeholders(self.backend, chunk.len(), 7, 0)
            );
            let mut q = sqlx::query(&sql).persistent(false);
            for ((device, conversation), (network, first, last, count, at)) in chunk {
                q = q
                    .bind(device.to_vec())
                    .bind(conversation.to_vec())
                    .bind(network.to_vec())
                    .bind(*first)
                    .bind(*last)
                    .bind(*count)
                    .bind(*at);
            }
            q.execute(&mut *tx.tx).await?;
        }
        Ok(())
    }

    /// What the relay queued for a retention device, per conversation, and
    /// how much of it is still queued.
    pub async fn retention_coverage(&self, owner: &DeviceRef) -> Result<Vec<CoverageRow>, StoreError> {
        if !owner.is_retention() {
            return Err(StoreError::NotOwned);
        }
        let rows = sqlx::query(&self.sql(
            "SELECT conversation_id, first_seq, last_seq, count FROM retention_coverage \
             WHERE device_id = $1 AND network_id = $2 ORDER BY conversation_id",
        ))
        .bind(owner.device.to_vec())
        .bind(owner.network.to_vec())
        .fetch_all(&self.pool)
        .await?;
        let queued = sqlx::query(&self.queue_sql(
            "SELECT e.conversation_id, COUNT(*) AS n FROM queue q JOIN envelopes e ON e.id = q.envelope \
             WHERE {device} AND q.retention = 1 GROUP BY e.conversation_id",
            "q.",
            "$1",
        ))
        .bind(owner.device.to_vec())
        .fetch_all(&self.pool)
        .await?;
        let mut waiting = std::collections::HashMap::new();
        for r in &queued {
            waiting.insert(id16(r, "conversation_id")?, u64::try_from(int(r, "n")?).unwrap_or(0));
        }
        let n = |r: &sqlx::any::AnyRow, c: &str| -> Result<u64, StoreError> {
            u64::try_from(int(r, c)?).map_err(|_| StoreError::Corrupt("negative sequence number"))
        };
        rows.iter()
            .map(|r| {
                let conversation_id = id16(r, "conversation_id")?;
                Ok(CoverageRow {
                    conversation_id,
                    first_seq: n(r, "first_seq")?,
                    last_seq: n(r, "last_seq")?,
                    count: n(r, "count")?,
                    queued: waiting.get(&conversation_id).copied().unwrap_or(0),
                })
            })
            .collect()
    }

    /// Up to `limit` queued messages for the device after queue position
    /// `after`, oldest first. Only retention devices read retention rows,
    /// and only the device's owner reads its queue.
    ///
    /// At most `max_bytes` of envelopes are loaded (at least one row): the
    /// sizes are read first, so a queue of large envelopes never has to be
    /// held in memory all at once.
    pub async fn queued(
        &self,
        owner: &DeviceRef,
        after: i64,
        limit: i64,
        max_bytes: usize,
    ) -> Result<Vec<QueuedRow>, StoreError> {
        Ok(self.queued_page(owner, after, limit, max_bytes).await?.0)
    }

    /// [`Store::queued`], and whether more rows wait after these (the page
    /// was full, or cut short by `max_bytes`).
    pub async fn queued_page(
        &self,
        owner: &DeviceRef,
        after: i64,
        limit: i64,
        max_bytes: usize,
    ) -> Result<(Vec<QueuedRow>, bool), StoreError> {
        // Rows written but not yet on disk are not read (`durable_queue`).
        let durable = self.durable_queue.load(std::sync::atomic::Ordering::Acquire);
        let sizes = sqlx::query(&self.queue_sql(PAGE_SIZES, "q.", "$1"))
            .bind(owner.device.to_vec())
            .bind(after)
            .bind(limit)
            .bind(i64::from(owner.is_retention()))
            .bind(durable)
            .fetch_all(&self.pool)
            .await?;
        let (mut total, mut take) = (0usize, 0i64);
        for r in &sizes {
            total = total.saturating_add(usize::try_from(int(r, "size")?).unwrap_or(usize::MAX));
            if take > 0 && total > max_bytes {
                break;
            }
            take += 1;
        }
        if take == 0 {
            return Ok((Vec::new(), false));
        }
        let more = sizes.len() as i64 > take || take == limit;
        let limit = take;
        let rows = sqlx::query(&self.queue_sql(PAGE_ROWS, "q.", "$1"))
            .bind(owner.device.to_vec())
            .bind(after)
            .bind(limit)
            .bind(owner.user.to_vec())
            .bind(owner.network.to_vec())
            .bind(i64::from(owner.is_retention()))
            .bind(durable)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(QueuedRow {
                    queue_id: int(r, "id")?,
                    message_id: id16(r, "message_id")?,
                    conversation_id: id16(r, "conversation_id")?,
                    seq: u64::try_from(int(r, "seq")?).unwrap_or(0),
                    received_at: u64::try_from(int(r, "received_at")?).unwrap_or(0),
                    envelope: DeliveryParts::join(&blob(r, "prefix")?, &blob(r, "tail")?, &blob(r, "signature")?),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()
            .map(|rows| (rows, more))
    }

    /// Removes acknowledged messages from `device`'s queue, then any envelope
    /// no queue references any more. Returns how many were removed. Acks
    /// from every connection are committed together, like envelopes.
    /// Only retention devices remove retention rows (`owner` comes from a
    /// session, whose device was checked against its owner).
    pub async fn ack(&self, owner: &DeviceRef, message_ids: &[[u8; 16]]) -> Result<u64, StoreError> {
        if message_ids.is_empty() {
            return Ok(0);
        }
        let job = AckJob { device: owner.device, retention: owner.is_retention(), ids: message_ids.to_vec() };
        let Some(committer) = &self.acks else { return self.ack_alone(&job).await };
        let (reply, answer) = tokio::sync::oneshot::channel();
        if let Err(e) = committer.send(Job::Ack(job, reply)).await {
            let Job::Ack(job, _) = e.0 else { return Err(StoreError::Corrupt("the committer stopped")) };
            return self.ack_alone(&job).await;
        }
        answer.await.unwrap_or(Err(StoreError::Corrupt("the committer stopped")))
    }

    async fn ack_alone(&self, job: &AckJob) -> Result<u64, StoreError> {
        let mut tx = self.write_queue().await?;
        let n = self.ack_many(&mut tx, &[job]).await?;
        tx.commit().await?;
        n.into_iter().next().ok_or(StoreError::Corrupt("no outcome"))
    }

    /// Acks of a group: one delete per device (and chunk), then one sweep of
    /// the envelopes they leave unreferenced.
    async fn ack_many(&self, tx: &mut super::WriteTx<'_>, jobs: &[&AckJob]) -> Result<Vec<u64>, StoreError> {
        let mut removed = Vec::with_capacity(jobs.len());
        for j in jobs {
            let mut n = 0;
            for chunk in j.ids.chunks(MAX_ROWS_PER_STATEMENT) {
                let sql = format!(
                    "DELETE FROM queue WHERE device_id = {} AND retention = {} \
                     AND envelope IN (SELECT id FROM envelopes WHERE message_id IN ({}))",
                    placeholders(self.backend, 1, 1, 0),
                    placeholders(self.backend, 1, 1, 1),
                    placeholders(self.backend, chunk.len(), 1, 2)
                );
                let mut q = sqlx::query(&sql).persistent(false).bind(j.device.to_vec()).bind(i64::from(j.retention));
                for m in chunk {
                    q = q.bind(m.to_vec());
                }
                n += q.execute(&mut *tx.tx).await?.rows_affected();
            }
            removed.push(n);
        }
        let mut ids: Vec<[u8; 16]> = jobs.iter().flat_map(|j| j.ids.iter().copied()).collect();
        ids.sort_unstable();
        ids.dedup();
        for chunk in ids.chunks(MAX_ROWS_PER_STATEMENT) {
            let pick = format!("AND message_id IN ({})", placeholders(self.backend, chunk.len(), 1, 0));
            for sql in tombstone(&pick) {
                let mut q = sqlx::query(&sql).persistent(false);
                for m in chunk {
                    q = q.bind(m.to_vec());
                }
                q.execute(&mut *tx.tx).await?;
            }
        }
        Ok(removed)
    }

    /// Drops undelivered messages older than the horizon and those whose TTL
    /// ran out — never from a retention device's queue — turns envelopes no
    /// queue references into tombstones, and forgets tombstones whose replay
    /// window has passed. Returns the number of queue entries dropped.
    pub async fn expire(&self, now: i64, horizon_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.write_queue().await?;
        let old = sqlx::query(&self.sql("DELETE FROM queue WHERE retention = 0 AND enqueued_at < $1"))
            .bind(now - horizon_ms)
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
        let ttl = sqlx::query(&self.sql(
            "DELETE FROM queue WHERE retention = 0 AND envelope IN \
             (SELECT id FROM envelopes WHERE forget_at IS NULL AND expires_at IS NOT NULL AND expires_at < $1)",
        ))
        .bind(now)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        // Every unreferenced envelope becomes a tombstone; then every body
        // not of a live envelope goes (not a scan of a month of tombstones).
        let [mark, _] = tombstone("");
        sqlx::query(&mark).execute(&mut *tx.tx).await?;
        sqlx::query(ORPHANED_BODIES).execute(&mut *tx.tx).await?;
        sqlx::query(&self.sql("DELETE FROM envelopes WHERE forget_at IS NOT NULL AND forget_at < $1"))
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        tx.commit().await?;
        Ok(old + ttl)
    }

    /// Queue depth: (ordinary devices, retention devices).
    pub async fn queue_depth(&self) -> Result<(u64, u64), StoreError> {
        let rows =
            sqlx::query("SELECT retention, COUNT(*) AS n FROM queue GROUP BY retention").fetch_all(&self.pool).await?;
        let mut depth = (0, 0);
        for r in &rows {
            let n = u64::try_from(int(r, "n")?).unwrap_or(0);
            if int(r, "retention")? == 0 {
                depth.0 = n;
            } else {
                depth.1 = n;
            }
        }
        Ok(depth)
    }

    /// Number of stored envelopes.
    pub async fn envelope_count(&self) -> Result<u64, StoreError> {
        let r =
            sqlx::query("SELECT COUNT(*) AS n FROM envelopes WHERE forget_at IS NULL").fetch_one(&self.pool).await?;
        Ok(u64::try_from(int(&r, "n")?).unwrap_or(0))
    }
}

/// Hands committed rows to the sink, in queue order.
pub(super) fn deliver(sink: Option<&Sink>, jobs: &[&EnvelopeJob], outcomes: &[StoreOutcome], queued: &QueueIds) {
    let Some(sink) = sink else { return };
    for (j, outcome) in jobs.iter().zip(outcomes) {
        let StoreOutcome::Stored(seq) = outcome else { continue };
        for (device, tail, _) in &j.tails {
            let Some(queue_id) = queued.get(&(*device, j.env.message_id)) else { continue };
            sink(device, &|| QueuedRow {
                queue_id: *queue_id,
                message_id: j.env.message_id,
                conversation_id: j.env.conversation_id,
                seq: *seq,
                received_at: u64::try_from(j.now).unwrap_or(0),
                envelope: DeliveryParts::join(&j.env.prefix, tail, &j.env.signature),
            });
        }
    }
}

/// Most rows (or ids) per multi-row statement: well under SQLite's and
/// PostgreSQL's limits on bound parameters.
const MAX_ROWS_PER_STATEMENT: usize = 500;

/// The sizes of a device's queued rows after a position (`queued_page`).
const PAGE_SIZES: &str =
    "SELECT q.id, CAST(LENGTH(q.tail) + LENGTH(b.prefix) + LENGTH(b.signature) AS BIGINT) AS size \
     FROM queue q JOIN envelope_bodies b ON b.envelope = q.envelope \
     WHERE {device} AND q.id > $2 AND q.retention = $4 AND q.id <= $5 ORDER BY q.id LIMIT $3";

/// A device's queued rows after a position, with their envelopes (`queued_page`).
const PAGE_ROWS: &str =
    "SELECT q.id, e.message_id, q.tail, e.conversation_id, e.seq, e.received_at, b.prefix, b.signature \
     FROM queue q JOIN envelopes e ON e.id = q.envelope JOIN envelope_bodies b ON b.envelope = e.id \
     JOIN devices d ON d.device_id = q.device_id AND d.user_id = $4 AND d.network_id = $5 \
          AND e.network_id = d.network_id \
     WHERE {device} AND q.id > $2 AND q.retention = $6 AND q.id <= $7 ORDER BY q.id LIMIT $3";

/// `rows` rows of queue values: device, envelope, tail, retention, time,
/// then the device's number, read by its id: on PostgreSQL the first
/// parameter again (each row binds five), on SQLite a sixth (plain `?`,
/// see [`placeholders`]; each row binds the device twice).
fn queue_values(backend: super::Backend, rows: usize) -> String {
    let number = "(SELECT no FROM device_numbers WHERE device_id = ";
    (0..rows)
        .map(|r| match backend {
            super::Backend::Postgres => {
                let p: Vec<String> = (1..=5).map(|c| format!("${}", r * 5 + c)).collect();
                format!("({}, {number}${}))", p.join(", "), r * 5 + 1)
            }
            super::Backend::Sqlite => format!("(?, ?, ?, ?, ?, {number}?))"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Gives each of `rows` device ids (parameters) a number if it has none.
/// On PostgreSQL only the missing ones are inserted: a conflicting insert
/// would still draw a value from the sequence, a thousand for a room.
fn number_devices(backend: super::Backend, rows: usize) -> String {
    match backend {
        super::Backend::Postgres => format!(
            "INSERT INTO device_numbers (device_id) SELECT v.d FROM (VALUES {}) AS v(d) \
             WHERE NOT EXISTS (SELECT 1 FROM device_numbers n WHERE n.device_id = v.d) ORDER BY v.d \
             ON CONFLICT (device_id) DO NOTHING",
            (1..=rows).map(|i| format!("(${i}::bytea)")).collect::<Vec<_>>().join(", ")
        ),
        super::Backend::Sqlite => format!(
            "INSERT INTO device_numbers (device_id) VALUES {} ON CONFLICT (device_id) DO NOTHING",
            vec!["(?)"; rows].join(", ")
        ),
    }
}

/// `rows` groups of `width` placeholders after the first `skip`:
/// `($1, $2), ($3, $4)`, or `$1, $2` for one column. On SQLite plain `?`
/// (bound in order): numbered ones make binding quadratic in their count.
fn placeholders(backend: super::Backend, rows: usize, width: usize, skip: usize) -> String {
    let numbered = backend == super::Backend::Postgres;
    let mut out = String::with_capacity(rows * width * 6);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        if width > 1 {
            out.push('(');
        }
        for c in 0..width {
            if c > 0 {
                out.push_str(", ");
            }
            if numbered {
                out.push('$');
                out.push_str(&(skip + r * width + c + 1).to_string());
            } else {
                out.push('?');
            }
        }
        if width > 1 {
            out.push(')');
        }
    }
    out
}

/// Queue ids of the rows just inserted: (device, message) → id.
pub(super) type QueueIds = std::collections::HashMap<([u8; 16], [u8; 16]), i64>;

/// A recipient device's part: (device, tail, is a retention device).
pub type Tail = ([u8; 16], Vec<u8>, bool);

/// Ids a group names that are stored already (or spent): (conversation,
/// sender, seq if stored before this group).
pub(super) type Known = std::collections::HashMap<[u8; 16], ([u8; 16], [u8; 16], Option<i64>)>;

/// Per (retention device, conversation): (network, first seq, last seq,
/// count, last queued at).
pub(super) type Coverage = std::collections::BTreeMap<([u8; 16], [u8; 16]), ([u8; 16], i64, i64, i64, i64)>;

/// The new envelopes of a group (index into `jobs`) per conversation, in
/// order; an id seen twice in the group is the first one's duplicate.
/// `known` holds the ids stored before; the new ones are added.
pub(super) fn fresh_by_conversation(
    jobs: &[&EnvelopeJob],
    known: &mut Known,
) -> std::collections::BTreeMap<[u8; 16], Vec<usize>> {
    let mut fresh: std::collections::BTreeMap<[u8; 16], Vec<usize>> = std::collections::BTreeMap::new();
    for (i, j) in jobs.iter().enumerate() {
        if let std::collections::hash_map::Entry::Vacant(v) = known.entry(j.env.message_id) {
            v.insert((j.env.conversation_id, j.env.sender_device, None));
            fresh.entry(j.env.conversation_id).or_default().push(i);
        }
    }
    fresh
}

/// What storing each job of a group did, in the order of `jobs`, given the
/// ids known before it and the sequence numbers of its new envelopes.
pub(super) fn outcomes(
    jobs: &[&EnvelopeJob],
    known: &Known,
    seqs: &std::collections::HashMap<usize, i64>,
) -> Result<Vec<StoreOutcome>, StoreError> {
    jobs.iter()
        .enumerate()
        .map(|(i, j)| {
            if let Some(seq) = seqs.get(&i) {
                return Ok(StoreOutcome::Stored(u64::try_from(*seq).unwrap_or(0)));
            }
            let (conversation, sender, seq) =
                known.get(&j.env.message_id).ok_or(StoreError::Corrupt("group outcome"))?;
            if *conversation != j.env.conversation_id || *sender != j.env.sender_device {
                return Ok(StoreOutcome::IdConflict);
            }
            // Stored before, or by an earlier envelope of this group.
            let seq = match seq {
                Some(s) => *s,
                None => jobs
                    .iter()
                    .position(|o| o.env.message_id == j.env.message_id)
                    .and_then(|first| seqs.get(&first))
                    .copied()
                    .unwrap_or(0),
            };
            Ok(StoreOutcome::Duplicate(u64::try_from(seq).unwrap_or(0)))
        })
        .collect()
}

/// Which sequence numbers a group queued for each retention device, per
/// conversation (`new`: (index into `jobs`, seq) of each new envelope).
pub(super) fn coverage(jobs: &[&EnvelopeJob], new: &[(usize, i64)]) -> Coverage {
    let mut cover = Coverage::new();
    for (i, seq) in new {
        let Some(j) = jobs.get(*i) else { continue };
        for (device, _, retention) in &j.tails {
            if *retention {
                let e =
                    cover.entry((*device, j.env.conversation_id)).or_insert((j.env.network_id, *seq, *seq, 0, j.now));
                e.1 = e.1.min(*seq);
                e.2 = e.2.max(*seq);
                e.3 += 1;
                e.4 = e.4.max(j.now);
            }
        }
    }
    cover
}

/// One envelope waiting for the group committer.
pub(crate) struct EnvelopeJob {
    pub(super) env: StoredEnvelope,
    pub(super) tails: Vec<Tail>,
    pub(super) now: i64,
    /// When it reached the committer's queue (`WriteTimings`).
    pub(super) queued: std::time::Instant,
}

/// One device's acks waiting for the group committer.
pub(crate) struct AckJob {
    pub(super) device: [u8; 16],
    /// A retention device's acks remove retention rows only; anyone else's, never.
    pub(super) retention: bool,
    pub(super) ids: Vec<[u8; 16]>,
}

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, StoreError>>;

/// Work for the group committer.
pub(crate) enum Job {
    Envelope(Box<EnvelopeJob>, Reply<StoreOutcome>),
    Ack(AckJob, Reply<u64>),
}

/// Most jobs in one commit.
const GROUP_MAX: usize = 512;
/// Most rows one commit writes: envelopes with their queue rows.
const GROUP_ROWS: usize = 4096;
/// Most queue rows one commit deletes for acks. Acks wait, sends do not: a
/// room's thousand devices acknowledging at once are spread over several
/// commits, with the sends that arrive meanwhile in each.
pub(super) const GROUP_ACK_ROWS: usize = 1024;

impl Job {
    fn rows(&self) -> usize {
        match self {
            Job::Envelope(e, _) => 1 + e.tails.len(),
            Job::Ack(a, _) => a.ids.len(),
        }
    }
}

/// Takes whatever is waiting (at least one; sends first, then acks up to a
/// budget); `None` once both queues are closed and empty.
pub(super) async fn next_group(
    sends: &mut tokio::sync::mpsc::Receiver<Job>,
    acks: &mut tokio::sync::mpsc::Receiver<Job>,
) -> Option<Vec<Job>> {
    let first = tokio::select! {
        biased;
        Some(j) = sends.recv() => j,
        Some(j) = acks.recv() => j,
        else => return None,
    };
    let mut group = vec![first];
    top_up(sends, &mut group, GROUP_ROWS, 0);
    top_up(acks, &mut group, GROUP_ACK_ROWS, 0);
    Some(group)
}

/// Adds waiting sends to `group` up to the budget.
pub(super) fn more_sends(sends: &mut tokio::sync::mpsc::Receiver<Job>, group: &mut Vec<Job>) {
    let rows = group.iter().map(Job::rows).sum();
    top_up(sends, group, GROUP_ROWS, rows);
}

/// Takes jobs from `queue` while the group has room and `rows` (counted
/// from `from`) stay under `budget`. Never waits.
fn top_up(queue: &mut tokio::sync::mpsc::Receiver<Job>, group: &mut Vec<Job>, budget: usize, from: usize) {
    let mut rows = from;
    while group.len() < GROUP_MAX && rows < budget {
        match queue.try_recv() {
            Ok(j) => {
                rows += j.rows();
                group.push(j);
            }
            Err(_) => break,
        }
    }
}

/// A group's envelopes and acks, in group order.
pub(super) fn split(group: &[Job]) -> (Vec<&EnvelopeJob>, Vec<&AckJob>) {
    let envelopes = group.iter().filter_map(|j| if let Job::Envelope(e, _) = j { Some(&**e) } else { None }).collect();
    let acks = group.iter().filter_map(|j| if let Job::Ack(a, _) = j { Some(a) } else { None }).collect();
    (envelopes, acks)
}

/// Answers every job of a committed group, in order.
pub(super) fn answer(group: Vec<Job>, stored: Vec<StoreOutcome>, acked: Vec<u64>) {
    let (mut stored, mut acked) = (stored.into_iter(), acked.into_iter());
    for j in group {
        match j {
            Job::Envelope(_, reply) => {
                let _ = reply.send(stored.next().ok_or(StoreError::Corrupt("group outcome")));
            }
            Job::Ack(_, reply) => {
                let _ = reply.send(acked.next().ok_or(StoreError::Corrupt("group outcome")));
            }
        }
    }
}

/// PostgreSQL: the queue's net growth (rows queued less rows acknowledged)
/// after which its statistics are refreshed at once. Without them the
/// planner took a device's queue for a few rows and read and sorted all of
/// it for every page pushed: a 50,000-message backlog drained at a few
/// hundred a second, and autovacuum only analyzes within a minute or more.
/// Only rows this process queued and acknowledged are counted (in a cluster
/// another may commit the acks), so a process may analyze every few
/// thousand sends; ANALYZE samples a bounded number of rows.
const ANALYZE_AFTER_GROWTH: i64 = 5_000;

/// Stores each group in one transaction, commits once, then answers each
/// job (PostgreSQL, and SQLite without a file; a SQLite file has its own
/// committer, `sqlite_committer.rs`). A database error in the group rolls
/// it back and retries each job alone, so one bad envelope fails only itself.
pub(crate) async fn group_commit(
    store: Store,
    mut sends: tokio::sync::mpsc::Receiver<Job>,
    mut acks: tokio::sync::mpsc::Receiver<Job>,
) {
    let mut grown = 0i64;
    let analyzing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    while let Some(group) = next_group(&mut sends, &mut acks).await {
        let (envelopes, acks) = split(&group);
        let sink = store.sink.get();
        let timings = &store.timings;
        let started = std::time::Instant::now();
        timings.group_started(envelopes.iter().map(|e| e.queued), started);
        let together = async {
            let mut tx = store.write_queue().await?;
            let (stored, queued) = store.store_many(&mut tx, &envelopes, sink.is_some()).await?;
            let acked = store.ack_many(&mut tx, &acks).await?;
            tx.commit().await?;
            WriteTimings::step(&timings.commit, started);
            deliver(sink, &envelopes, &stored, &queued);
            Ok::<_, StoreError>((stored, acked))
        }
        .await;
        match together {
            Ok((stored, acked)) => {
                timings.sends_durable(envelopes.iter().map(|e| e.queued));
                if store.backend == super::Backend::Postgres {
                    grown = grown.saturating_add(net_queued(&envelopes, &stored, &acked)).max(0);
                    if grown >= ANALYZE_AFTER_GROWTH && analyze_queue(&store, &analyzing) {
                        grown = 0;
                    }
                }
                answer(group, stored, acked)
            }
            Err(e) => {
                tracing::warn!(error = %e, jobs = group.len(), "group commit failed; committing one by one");
                for j in group {
                    match j {
                        Job::Envelope(e, reply) => {
                            let stored = store.store_alone(&e).await;
                            if stored.is_ok() {
                                timings.sends_durable(std::iter::once(e.queued));
                            }
                            let _ = reply.send(stored);
                        }
                        Job::Ack(a, reply) => {
                            let _ = reply.send(store.ack_alone(&a).await);
                        }
                    }
                }
            }
        }
    }
}

/// Queue rows a committed group added less those its acks removed.
fn net_queued(envelopes: &[&EnvelopeJob], stored: &[StoreOutcome], acked: &[u64]) -> i64 {
    let queued: usize = envelopes
        .iter()
        .zip(stored)
        .filter(|(_, o)| matches!(o, StoreOutcome::Stored(_)))
        .map(|(e, _)| e.tails.len())
        .sum();
    let removed: u64 = acked.iter().sum();
    i64::try_from(queued).unwrap_or(i64::MAX).saturating_sub(i64::try_from(removed).unwrap_or(i64::MAX))
}

/// Refreshes the queue's statistics beside the committer, one at a time
/// and bounded (it may wait behind a vacuum): whether one was started.
/// The envelopes too: with the queue's alone, the page read joined them
/// by a worse plan (a 100,000 backlog drained in 19 s instead of 6).
fn analyze_queue(store: &Store, analyzing: &Arc<std::sync::atomic::AtomicBool>) -> bool {
    use std::sync::atomic::Ordering;
    if analyzing.swap(true, Ordering::AcqRel) {
        return false;
    }
    let (pool, analyzing) = (store.pool.clone(), analyzing.clone());
    store.runtime.spawn(async move {
        let run = sqlx::query("ANALYZE queue, envelopes, envelope_bodies").execute(&pool);
        match tokio::time::timeout(std::time::Duration::from_secs(30), run).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "refreshing the queue's statistics failed; autovacuum will"),
            Err(_) => tracing::warn!("refreshing the queue's statistics took over 30 s; autovacuum will"),
        }
        analyzing.store(false, Ordering::Release);
    });
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_number_rows_and_columns() {
        use crate::store::Backend::{Postgres, Sqlite};
        assert_eq!(placeholders(Postgres, 2, 2, 0), "($1, $2), ($3, $4)");
        assert_eq!(placeholders(Postgres, 3, 1, 1), "$2, $3, $4");
        assert_eq!(placeholders(Sqlite, 2, 2, 1), "(?, ?), (?, ?)");
        assert_eq!(placeholders(Sqlite, 0, 3, 0), "");
        assert_eq!(
            queue_values(Postgres, 2),
            "($1, $2, $3, $4, $5, (SELECT no FROM device_numbers WHERE device_id = $1)), \
             ($6, $7, $8, $9, $10, (SELECT no FROM device_numbers WHERE device_id = $6))"
        );
        assert_eq!(queue_values(Sqlite, 1), "(?, ?, ?, ?, ?, (SELECT no FROM device_numbers WHERE device_id = ?))");
        assert_eq!(
            number_devices(Postgres, 2),
            "INSERT INTO device_numbers (device_id) SELECT v.d FROM (VALUES ($1::bytea), ($2::bytea)) AS v(d) \
             WHERE NOT EXISTS (SELECT 1 FROM device_numbers n WHERE n.device_id = v.d) ORDER BY v.d \
             ON CONFLICT (device_id) DO NOTHING"
        );
    }

    /// A device's queue is read through the index keyed by its number: a
    /// plan that scans the queue (or reads it by envelope) would read every
    /// device's rows to find one device's.
    #[tokio::test]
    async fn a_devices_queue_is_read_through_its_number() {
        use sqlx::Row;
        let dir = std::env::temp_dir().join(format!("sr-plan-{}", uuid_like()));
        std::fs::create_dir_all(&dir).unwrap();
        let store =
            crate::store::Store::connect(&format!("sqlite://{}?mode=rwc", dir.join("t.db").display())).await.unwrap();
        for (name, sql) in [("sizes", PAGE_SIZES), ("rows", PAGE_ROWS)] {
            let plan: Vec<String> = sqlx::query(&format!("EXPLAIN QUERY PLAN {}", store.queue_sql(sql, "q.", "$1")))
                .bind(vec![1u8; 16])
                .bind(0i64)
                .bind(10i64)
                .bind(vec![2u8; 16])
                .bind(vec![3u8; 16])
                .bind(0i64)
                .bind(100i64)
                .fetch_all(&store.pool)
                .await
                .unwrap()
                .iter()
                .map(|r| r.try_get::<String, _>("detail").unwrap())
                .collect();
            assert!(
                plan.iter().any(|d| d.contains("SEARCH q USING INDEX queue_by_device (device_no=? AND id>? AND id<?)")),
                "{name}: {plan:?}"
            );
        }
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Without the committer (a database in memory, or one whose committer
    /// stopped) rows are queued by multi-row statements: each device gets
    /// its number there too, and its reads find its rows and no one else's.
    #[tokio::test]
    async fn the_statement_path_numbers_devices_too() {
        use sqlx::Row;
        let store =
            crate::store::Store::connect(&format!("sqlite:file:sr-numbers-{}?mode=memory&cache=shared", uuid_like()))
                .await
                .unwrap();
        let (net, user, conv, a, b) = ([1u8; 16], [2u8; 16], [3u8; 16], [4u8; 16], [5u8; 16]);
        let mut c = store.pool.acquire().await.unwrap();
        for sql in [
            "INSERT INTO networks (id, name, network_public, created_at) VALUES (?1, 'n', ?1, 0)",
            "INSERT INTO conversations (id, network_id, kind, last_seq, created_at) VALUES (?3, ?1, 1, 0, 0)",
            "INSERT INTO devices (device_id, network_id, user_id, claimed_at) VALUES (?4, ?1, ?2, 0)",
            "INSERT INTO devices (device_id, network_id, user_id, claimed_at) VALUES (?5, ?1, ?2, 0)",
        ] {
            sqlx::query(sql)
                .bind(net.to_vec())
                .bind(user.to_vec())
                .bind(conv.to_vec())
                .bind(a.to_vec())
                .bind(b.to_vec())
                .execute(&mut *c)
                .await
                .unwrap();
        }
        drop(c);
        for m in 0..3u8 {
            let env = StoredEnvelope {
                message_id: [10 + m; 16],
                network_id: net,
                conversation_id: conv,
                sender_device: a,
                prefix: vec![m],
                signature: vec![0; 64],
                expires_at: None,
            };
            // b gets every message, a only the first.
            let tails = if m == 0 { vec![(a, vec![1], false), (b, vec![2], false)] } else { vec![(b, vec![2], false)] };
            assert!(matches!(store.store_envelope(env, tails, 1).await.unwrap(), StoreOutcome::Stored(_)));
        }
        let numbers = sqlx::query("SELECT COUNT(*) AS n FROM device_numbers").fetch_one(&store.pool).await.unwrap();
        assert_eq!(numbers.get::<i64, _>("n"), 2);
        let mine = |d: [u8; 16]| crate::store::DeviceRef { network: net, user, device: d };
        let ids = |rows: Vec<QueuedRow>| rows.iter().map(|r| r.message_id[0]).collect::<Vec<_>>();
        assert_eq!(ids(store.queued(&mine(a), 0, 100, 1 << 20).await.unwrap()), [10]);
        assert_eq!(ids(store.queued(&mine(b), 0, 100, 1 << 20).await.unwrap()), [10, 11, 12]);
        assert_eq!(store.ack(&mine(b), &[[10; 16], [11; 16]]).await.unwrap(), 2);
        assert_eq!(ids(store.queued(&mine(b), 0, 100, 1 << 20).await.unwrap()), [12]);
        assert_eq!(ids(store.queued(&mine(a), 0, 100, 1 << 20).await.unwrap()), [10]);
        store.close().await;
    }

    fn uuid_like() -> String {
        use rand_core::RngCore;
        format!("{:016x}", rand_core::OsRng.next_u64())
    }
}
