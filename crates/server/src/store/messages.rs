use strongroom_crypto::envelope::DeliveryParts;

use super::{blob, id16, int, Store, StoreError};

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
    /// The delivered-form envelope.
    pub envelope: Vec<u8>,
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

impl Store {
    /// Stores an envelope once and queues a tail per recipient device: when
    /// this returns `Stored`, the message is durable. Concurrent calls are
    /// committed together (group commit): one transaction and one fsync for
    /// everything that arrived while the previous commit was in flight.
    /// `tails`: (device, tail, is a retention device).
    pub async fn store_envelope(
        &self,
        env: &StoredEnvelope,
        tails: &[([u8; 16], Vec<u8>, bool)],
        now: i64,
    ) -> Result<StoreOutcome, StoreError> {
        let Some(committer) = &self.envelopes else { return self.store_alone(env, tails, now).await };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = EnvelopeJob { env: env.clone(), tails: tails.to_vec(), now, reply };
        if committer.send(job).await.is_err() {
            return self.store_alone(env, tails, now).await;
        }
        answer.await.unwrap_or(Err(StoreError::Corrupt("the committer stopped")))
    }

    /// One envelope in its own transaction.
    async fn store_alone(
        &self,
        env: &StoredEnvelope,
        tails: &[([u8; 16], Vec<u8>, bool)],
        now: i64,
    ) -> Result<StoreOutcome, StoreError> {
        let mut tx = self.write().await?;
        let outcome = self.store_in(&mut tx, env, tails, now).await?;
        tx.commit().await?;
        Ok(outcome)
    }

    async fn store_in(
        &self,
        tx: &mut super::WriteTx<'_>,
        env: &StoredEnvelope,
        tails: &[([u8; 16], Vec<u8>, bool)],
        now: i64,
    ) -> Result<StoreOutcome, StoreError> {
        let existing =
            sqlx::query(&self.sql("SELECT conversation_id, sender_device, seq FROM envelopes WHERE message_id = $1"))
                .bind(env.message_id.to_vec())
                .fetch_optional(&mut *tx.tx)
                .await?;
        if let Some(row) = existing {
            let same = id16(&row, "conversation_id")? == env.conversation_id
                && id16(&row, "sender_device")? == env.sender_device;
            return Ok(if same {
                StoreOutcome::Duplicate(u64::try_from(int(&row, "seq")?).unwrap_or(0))
            } else {
                StoreOutcome::IdConflict
            });
        }
        let seq = int(
            &sqlx::query(
                &self.sql("UPDATE conversations SET last_seq = last_seq + 1 WHERE id = $1 RETURNING last_seq"),
            )
            .bind(env.conversation_id.to_vec())
            .fetch_one(&mut *tx.tx)
            .await?,
            "last_seq",
        )?;
        sqlx::query(&self.sql(
            "INSERT INTO envelopes (message_id, network_id, conversation_id, seq, sender_device, prefix, signature, received_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        ))
        .bind(env.message_id.to_vec())
        .bind(env.network_id.to_vec())
        .bind(env.conversation_id.to_vec())
        .bind(seq)
        .bind(env.sender_device.to_vec())
        .bind(env.prefix.clone())
        .bind(env.signature.clone())
        .bind(now)
        .bind(env.expires_at)
        .execute(&mut *tx.tx)
        .await?;
        for (device, tail, retention) in tails {
            sqlx::query(&self.sql(
                "INSERT INTO queue (device_id, message_id, tail, retention, enqueued_at) VALUES ($1, $2, $3, $4, $5)",
            ))
            .bind(device.to_vec())
            .bind(env.message_id.to_vec())
            .bind(tail.clone())
            .bind(i64::from(*retention))
            .bind(now)
            .execute(&mut *tx.tx)
            .await?;
        }
        Ok(StoreOutcome::Stored(u64::try_from(seq).unwrap_or(0)))
    }

    /// Up to `limit` queued messages for `device` after queue position `after`, oldest first.
    pub async fn queued(&self, device: &[u8; 16], after: i64, limit: i64) -> Result<Vec<QueuedRow>, StoreError> {
        let rows = sqlx::query(&self.sql(
            "SELECT q.id, q.message_id, q.tail, e.conversation_id, e.seq, e.prefix, e.signature \
             FROM queue q JOIN envelopes e ON e.message_id = q.message_id \
             WHERE q.device_id = $1 AND q.id > $2 ORDER BY q.id LIMIT $3",
        ))
        .bind(device.to_vec())
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QueuedRow {
                    queue_id: int(r, "id")?,
                    message_id: id16(r, "message_id")?,
                    conversation_id: id16(r, "conversation_id")?,
                    seq: u64::try_from(int(r, "seq")?).unwrap_or(0),
                    envelope: DeliveryParts::join(&blob(r, "prefix")?, &blob(r, "tail")?, &blob(r, "signature")?),
                })
            })
            .collect()
    }

    /// Removes acknowledged messages from `device`'s queue, then any envelope
    /// no queue references any more. Returns how many were removed.
    pub async fn ack(&self, device: &[u8; 16], message_ids: &[[u8; 16]]) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let mut n = 0;
        for m in message_ids {
            n += sqlx::query(&self.sql("DELETE FROM queue WHERE device_id = $1 AND message_id = $2"))
                .bind(device.to_vec())
                .bind(m.to_vec())
                .execute(&mut *tx.tx)
                .await?
                .rows_affected();
            sqlx::query(&self.sql(
                "DELETE FROM envelopes WHERE message_id = $1 AND NOT EXISTS (SELECT 1 FROM queue WHERE message_id = $1)",
            ))
            .bind(m.to_vec())
            .execute(&mut *tx.tx)
            .await?;
        }
        tx.commit().await?;
        Ok(n)
    }

    /// Drops undelivered messages older than the horizon and those whose TTL
    /// ran out — never from a retention device's queue — then envelopes no
    /// queue references. Returns the number of queue entries dropped.
    pub async fn expire(&self, now: i64, horizon_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let old = sqlx::query(&self.sql("DELETE FROM queue WHERE retention = 0 AND enqueued_at < $1"))
            .bind(now - horizon_ms)
            .execute(&mut *tx.tx)
            .await?
            .rows_affected();
        let ttl = sqlx::query(&self.sql(
            "DELETE FROM queue WHERE retention = 0 AND message_id IN \
             (SELECT message_id FROM envelopes WHERE expires_at IS NOT NULL AND expires_at < $1)",
        ))
        .bind(now)
        .execute(&mut *tx.tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM envelopes WHERE NOT EXISTS (SELECT 1 FROM queue WHERE queue.message_id = envelopes.message_id)")
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
        let r = sqlx::query("SELECT COUNT(*) AS n FROM envelopes").fetch_one(&self.pool).await?;
        Ok(u64::try_from(int(&r, "n")?).unwrap_or(0))
    }
}

/// One envelope waiting for the group committer.
pub(crate) struct EnvelopeJob {
    env: StoredEnvelope,
    tails: Vec<([u8; 16], Vec<u8>, bool)>,
    now: i64,
    reply: tokio::sync::oneshot::Sender<Result<StoreOutcome, StoreError>>,
}

/// Most envelopes in one commit.
const GROUP_MAX: usize = 512;

/// Takes whatever is waiting (at least one), stores it in one transaction,
/// commits once, then answers each. A database error in the group rolls it
/// back and retries each envelope alone, so one bad envelope fails only itself.
pub(crate) async fn group_commit(store: Store, mut jobs: tokio::sync::mpsc::Receiver<EnvelopeJob>) {
    while let Some(first) = jobs.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match jobs.try_recv() {
                Ok(j) => group.push(j),
                Err(_) => break,
            }
        }
        let together = async {
            let mut tx = store.write().await?;
            if store.backend == super::Backend::Postgres {
                // Several processes commit groups at once: take the
                // conversations' row locks in one global order, so two
                // groups touching the same conversations never deadlock.
                let mut ids: Vec<[u8; 16]> = group.iter().map(|j| j.env.conversation_id).collect();
                ids.sort_unstable();
                ids.dedup();
                for id in ids {
                    sqlx::query("SELECT 1 AS one FROM conversations WHERE id = $1 FOR UPDATE")
                        .bind(id.to_vec())
                        .fetch_optional(&mut *tx.tx)
                        .await?;
                }
            }
            let mut outcomes = Vec::with_capacity(group.len());
            for j in &group {
                outcomes.push(store.store_in(&mut tx, &j.env, &j.tails, j.now).await?);
            }
            tx.commit().await?;
            Ok::<_, StoreError>(outcomes)
        }
        .await;
        match together {
            Ok(outcomes) => {
                for (j, o) in group.into_iter().zip(outcomes) {
                    let _ = j.reply.send(Ok(o));
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, envelopes = group.len(), "group commit failed; storing one by one");
                for j in group {
                    let r = store.store_alone(&j.env, &j.tails, j.now).await;
                    let _ = j.reply.send(r);
                }
            }
        }
    }
}
