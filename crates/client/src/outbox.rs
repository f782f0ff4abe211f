//! The durable outbox (PROTOCOL.md §4.7): a message is sealed, and this
//! device's own copy stored with its outbox entry in one transaction, before
//! it is posted; it stays queued while the relay cannot be reached. Queued
//! messages go out in order before the next send and at the next sync or
//! watch, sealed afresh for the devices and settings current then, under the
//! same message id and timestamp: the relay accepts an id once, so a message
//! whose answer was lost is not delivered twice. Only a definite refusal of
//! the message itself removes it.

use serde::{Deserialize, Serialize};
use strongroom_crypto::content::Content;
use strongroom_crypto::envelope::{seal, MessageMeta, Sender};
use strongroom_crypto::ids::{ConversationId, MessageId};
use strongroom_wire::Accepted;

use crate::client::{check, Client};
use crate::error::ClientError;
use crate::rules::events::EventKind;
use crate::rules::group_policy::Action;
use crate::store::StoredRow;

/// A message on its way out (kept sealed by the vault while queued).
#[derive(Serialize, Deserialize)]
pub(crate) struct Outgoing {
    pub conversation: ConversationId,
    pub message_id: MessageId,
    pub timestamp: u64,
    /// Timers asked for, and the conversation's defaults then (seconds).
    pub requested: (u32, u32),
    pub defaults: (u32, u32),
    /// The content's encoding.
    pub content: Vec<u8>,
    /// A post whose answer never came: the relay may hold it already.
    #[serde(default)]
    pub maybe_delivered: bool,
}

impl Outgoing {
    pub(crate) fn new(
        conversation: ConversationId,
        content: &Content,
        requested: (u32, u32),
        defaults: (u32, u32),
    ) -> Result<Self, ClientError> {
        let timestamp = crate::client::now_ms();
        Ok(Self {
            conversation,
            // In time order: the relay's replay-guard index then grows at its end.
            message_id: MessageId::ordered(&mut rand_core::OsRng, timestamp),
            timestamp,
            requested,
            defaults,
            content: content.encode().map_err(|e| ClientError::Usage(e.to_string()))?,
            maybe_delivered: false,
        })
    }

    fn content(&self) -> Result<Content, ClientError> {
        Content::decode(&self.content).map_err(|_| ClientError::Corrupt("queued message"))
    }

    fn encode(&self) -> Result<zeroize::Zeroizing<Vec<u8>>, ClientError> {
        serde_json::to_vec(self).map(zeroize::Zeroizing::new).map_err(|_| ClientError::Corrupt("queued message"))
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.content);
    }
}

/// What sealing a message for its conversation gave.
enum Sealed {
    /// The envelope to post, the settings tag it was sealed under, and its TTL.
    Envelope(Vec<u8>, Option<String>, u32),
    /// Nobody to seal for (in a note to self: no other device of ours).
    Nobody { notes: bool, ttl_secs: u32 },
}

/// The SDK's answer for a message.
fn accepted(message_id: MessageId, seq: u64, duplicate: bool, queued: bool) -> Accepted {
    Accepted { message_id, seq, duplicate, queued }
}

/// Refusals of the message itself that no retry fixes: a queued message
/// refused so is removed. Anything else (the relay down, an expired session,
/// a suspended account, a key look-up failing, the local store) keeps it.
fn definite(e: &ClientError) -> bool {
    const FINAL: &[&str] = &[
        "malformed_envelope",
        "wrong_network",
        "sender_mismatch",
        "not_member",
        "unknown_conversation",
        "timer_too_long",
        "device_not_listed",
        "message_id_conflict",
    ];
    match e {
        // Larger than the relay takes.
        ClientError::Refused { status: 413, .. } => true,
        ClientError::Refused { code, .. } => FINAL.contains(&code.as_str()),
        ClientError::Trust(_) | ClientError::Policy(_) | ClientError::Usage(_) => true,
        ClientError::RecipientMismatch { .. } => true,
        _ => false,
    }
}

impl Client {
    /// Seals `out` and posts it (with `post` false: only queues it). Unless
    /// `queued` already, this device's own copy and the outbox entry are
    /// stored first, in one transaction. What a retry could fix leaves it
    /// queued (`Accepted::queued`); a definite refusal removes it and is
    /// returned.
    pub(crate) async fn deliver(
        &mut self,
        out: &mut Outgoing,
        queued: bool,
        post: bool,
    ) -> Result<Accepted, ClientError> {
        if self.lock.is_none() {
            return Err(ClientError::Usage(
                "this profile is open for administration only; send from the process that owns it".into(),
            ));
        }
        let mut stored = queued;
        match self.try_deliver(out, &mut stored, post).await {
            Ok(a) => Ok(a),
            Err(e) if !stored => Err(e),
            Err(e) if !definite(&e) => {
                if !queued {
                    self.store
                        .log(
                            &self.vault,
                            &[EventKind::Queued { conversation: out.conversation, message_id: out.message_id }],
                        )
                        .await?;
                }
                Ok(accepted(out.message_id, 0, false, true))
            }
            Err(e) => {
                let reason = if out.maybe_delivered {
                    format!("{e} (an earlier attempt may have reached the relay, so it may have been delivered)")
                } else {
                    e.to_string()
                };
                let event =
                    EventKind::SendFailed { conversation: out.conversation, message_id: out.message_id, reason };
                // A message that may have been delivered keeps this device's copy.
                self.store.unqueue(&self.vault, out.message_id.as_bytes(), !out.maybe_delivered, &[event]).await?;
                Err(e)
            }
        }
    }

    async fn try_deliver(
        &mut self,
        out: &mut Outgoing,
        stored: &mut bool,
        post: bool,
    ) -> Result<Accepted, ClientError> {
        let content = out.content()?;
        let (conversation, message_id) = (out.conversation, out.message_id);
        let mut fresh = false;
        let mut restamped = false;
        for attempt in 1.. {
            let (envelope, tag, ttl_secs) = match self.seal_outgoing(out, &content, fresh).await {
                Ok(Sealed::Envelope(bytes, tag, ttl)) => (bytes, tag, ttl),
                Ok(Sealed::Nobody { notes, ttl_secs }) if fresh => {
                    if !notes {
                        return Err(ClientError::Usage("nobody else is in this conversation yet".into()));
                    }
                    // A note to self with no other device of ours and no
                    // retention: it stays on this device (sequence 0: not
                    // numbered by the relay).
                    self.keep_own_copy(out, &content, ttl_secs, stored).await?;
                    let event = EventKind::Sent { conversation, message_id, seq: 0 };
                    self.store.sent(&self.vault, message_id.as_bytes(), conversation.as_bytes(), 0, &[event]).await?;
                    return Ok(accepted(message_id, 0, false, false));
                }
                // "Nobody to seal for" is only believed once checked now; a
                // device gone since it was verified: read everything again.
                Ok(Sealed::Nobody { .. }) => {
                    self.forget_recipients();
                    fresh = true;
                    continue;
                }
                Err(ClientError::Refused { status: 404, code, .. }) if code == "unknown_device" && !fresh => {
                    self.forget_recipients();
                    fresh = true;
                    continue;
                }
                // Keys could not be fetched (the relay down): kept, sealed
                // when it is back, if the settings are known to time it.
                Err(e) if e.is_transient() && !*stored => {
                    let (_, rules) = self.known_settings().await?;
                    let (ttl, _) = crate::rules::timers::effective(
                        out.requested,
                        out.defaults,
                        rules.max_ttl_secs,
                        rules.max_bor_secs,
                    );
                    self.keep_own_copy(out, &content, ttl, stored).await?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            self.keep_own_copy(out, &content, ttl_secs, stored).await?;
            if !post {
                self.store.log(&self.vault, &[EventKind::Queued { conversation, message_id }]).await?;
                return Ok(accepted(message_id, 0, false, true));
            }
            match self.post_envelope(envelope, tag.as_deref()).await {
                Ok(a) => {
                    let event = EventKind::Sent { conversation, message_id, seq: a.seq };
                    // The relay has it: a store failure here leaves the entry
                    // queued, and posting it again is answered as a duplicate.
                    if self
                        .store
                        .sent(&self.vault, message_id.as_bytes(), conversation.as_bytes(), a.seq, &[event])
                        .await
                        .is_ok()
                    {
                        if let Content::Recall { target } = content {
                            self.store.delete_message(target.as_bytes()).await?;
                        }
                    }
                    return Ok(accepted(message_id, a.seq, a.duplicate, false));
                }
                Err(e) if e.is_transient() => {
                    // The request may have reached the relay: a connection
                    // lost after sending, or a gateway that timed out or lost
                    // its upstream mid-request.
                    let ambiguous = match &e {
                        ClientError::Network(n) => !n.is_connect(),
                        ClientError::Refused { status, .. } => matches!(status, 502 | 504),
                        _ => false,
                    };
                    if ambiguous && !out.maybe_delivered {
                        out.maybe_delivered = true;
                        self.store.requeue(&self.vault, message_id.as_bytes(), &out.encode()?).await?;
                    }
                    return Err(e);
                }
                // The rules changed since this device read them: read them
                // again and seal under them.
                Err(ClientError::Refused { code, .. }) if code == "settings_changed" && attempt < 3 => {
                    self.my_policy().await?;
                }
                // Queued past the replay window: sealed again at the current
                // time under the same id (the relay still answers a
                // duplicate if it took the first).
                Err(ClientError::Refused { code, .. }) if code == "stale_message" && !restamped => {
                    restamped = true;
                    out.timestamp = crate::client::now_ms();
                    self.store.requeue(&self.vault, message_id.as_bytes(), &out.encode()?).await?;
                }
                Err(ClientError::RecipientMismatch { missing, extra }) => {
                    // Never encrypt to someone no member added: the relay's
                    // word that they are a member is not enough.
                    let signed = self.kept_membership(conversation).await?.map(|m| m.members).unwrap_or_default();
                    let ghosts = crate::rules::recipients::unsigned_members(&missing, &signed);
                    if !ghosts.is_empty() {
                        let mut names = Vec::with_capacity(ghosts.len());
                        for g in ghosts {
                            // The username comes from the relay too: the id says who it is.
                            let name = self.username_of(g).await.unwrap_or_else(|_| "?".into());
                            names.push(format!("{name} (user {g})"));
                        }
                        let names = names.join(", ");
                        return Err(ClientError::Trust(format!(
                            "the relay says {names} is a member of this conversation; no member added {names}. \
                             Nothing was sent: tell your administrator"
                        )));
                    }
                    if attempt >= 3 {
                        return Err(ClientError::RecipientMismatch { missing, extra });
                    }
                    // Members, device lists and policy are read again.
                    self.forget_recipients();
                    fresh = true;
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Usage("the message could not be sealed".into()))
    }

    /// Seals `out` for its conversation's devices now, under the settings
    /// as last read (checked again here: they may have changed while it
    /// was queued).
    async fn seal_outgoing(&mut self, out: &Outgoing, content: &Content, fresh: bool) -> Result<Sealed, ClientError> {
        let (tag, rules) = self.known_settings().await?;
        // A forwarded location is a location too.
        let shared = match content {
            Content::Forwarded { content, .. } => content.as_ref(),
            other => other,
        };
        if matches!(shared, Content::Location(_)) {
            check(&rules, Action::ShareLocation)?;
        }
        if matches!(content, Content::Receipt { .. }) && !crate::rules::group_policy::send_receipts(&rules, true) {
            return Err(ClientError::Policy("your security group turned read receipts off".into()));
        }
        let (ttl_secs, burn_on_read_secs) =
            crate::rules::timers::effective(out.requested, out.defaults, rules.max_ttl_secs, rules.max_bor_secs);
        let asked = if out.requested == (0, 0) { out.defaults } else { out.requested };
        // Said of what a person sends, not of receipts or control messages.
        let personal = matches!(
            content,
            Content::Text(_)
                | Content::Reply { .. }
                | Content::File(_)
                | Content::Location(_)
                | Content::Forwarded { .. }
        );
        for note in crate::rules::timers::clamped(asked, (ttl_secs, burn_on_read_secs)).into_iter().filter(|_| personal)
        {
            if !self.notices.contains(&note) {
                self.notices.push(note);
            }
        }
        let (recipients, notes, signed) = self.recipients(out.conversation, fresh).await?;
        if recipients.is_empty() {
            return Ok(Sealed::Nobody { notes, ttl_secs });
        }
        let device_key = self.device_key()?;
        let sender = Sender {
            network_id: self.network_id(),
            user_id: self.user_id(),
            identity_key: self.identity_public()?,
            device_id: self.device_id(),
            signing_key: &device_key,
        };
        let meta = MessageMeta {
            host_network_id: self.network_id(),
            conversation_id: out.conversation,
            message_id: out.message_id,
            timestamp: out.timestamp,
            ttl_secs,
            burn_on_read_secs,
            // The member set sealed to (PROTOCOL.md §3.4).
            membership: signed.commitment,
        };
        let env = seal(&sender, &meta, content, &recipients, &mut rand_core::OsRng)
            .map_err(|e| ClientError::Usage(e.to_string()))?;
        Ok(Sealed::Envelope(env.encode(), tag, ttl_secs))
    }

    /// Stores this device's copy of its own message with the outbox entry.
    async fn keep_own_copy(
        &self,
        out: &Outgoing,
        content: &Content,
        ttl_secs: u32,
        stored: &mut bool,
    ) -> Result<(), ClientError> {
        if *stored {
            return Ok(());
        }
        // The sender's own copy burns too, from its first display here:
        // every device enforces the timer, the sending one included.
        let (_, rules) = self.known_settings().await?;
        let (_, burn_secs) =
            crate::rules::timers::effective(out.requested, out.defaults, rules.max_ttl_secs, rules.max_bor_secs);
        let row = StoredRow {
            message_id: *out.message_id.as_bytes(),
            conversation: *out.conversation.as_bytes(),
            seq: 0,
            sender: *self.user_id().as_bytes(),
            timestamp: out.timestamp,
            burn_secs,
            sealed: Vec::new(),
            countable: false,
        };
        let plain = zeroize::Zeroizing::new(content.encode().map_err(|e| ClientError::Usage(e.to_string()))?);
        let expires = crate::rules::timers::expires_at(out.timestamp, ttl_secs);
        self.store.queue(&self.vault, &(row, plain, expires), out.message_id.as_bytes(), &out.encode()?).await?;
        *stored = true;
        Ok(())
    }

    /// Sends what waits in the outbox, oldest first, stopping at the first
    /// that still cannot go (so order is kept). Returns a warning for each
    /// message refused for good (removed, with why; the event log has it
    /// too) and for each entry that could not be read (set aside).
    pub async fn flush_outbox(&mut self) -> Result<Vec<String>, ClientError> {
        let mut warnings = Vec::new();
        if self.lock.is_none() {
            return Ok(warnings);
        }
        for (id, raw) in self.store.outbox(&self.vault).await? {
            let parsed = raw.ok().and_then(|r| serde_json::from_slice::<Outgoing>(&r).ok());
            let Some(mut out) = parsed else {
                // Damaged: one unreadable entry must not block the rest.
                self.store.unqueue(&self.vault, &id, false, &[]).await?;
                warnings.push(format!(
                    "a queued message ({}) could not be read (the profile is damaged) and was set aside unsent",
                    MessageId::from_bytes(id)
                ));
                continue;
            };
            match self.deliver(&mut out, true, true).await {
                Ok(a) if a.queued => break,
                Ok(_) => {}
                Err(e) => warnings.push(format!(
                    "message {} to conversation {} could not be sent and was removed from the outbox: {e}",
                    out.message_id, out.conversation
                )),
            }
        }
        Ok(warnings)
    }

    /// Messages waiting in the outbox, oldest first.
    pub async fn queued(&self) -> Result<Vec<(ConversationId, MessageId)>, ClientError> {
        let mut all = Vec::new();
        for (_, raw) in self.store.outbox(&self.vault).await? {
            let out: Outgoing = serde_json::from_slice(&raw?).map_err(|_| ClientError::Corrupt("queued message"))?;
            all.push((out.conversation, out.message_id));
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(status: u16, code: &str) -> ClientError {
        ClientError::Refused { status, code: code.into(), message: String::new() }
    }

    #[test]
    fn only_refusals_of_the_message_itself_remove_it() {
        for gone in [
            refused(403, "not_member"),
            refused(409, "message_id_conflict"),
            refused(413, "http_error"),
            ClientError::Policy("location".into()),
            ClientError::RecipientMismatch { missing: vec![], extra: vec![] },
        ] {
            assert!(definite(&gone), "{gone:?}");
        }
        for kept in [
            refused(401, "unauthenticated"),
            refused(403, "account_suspended"),
            refused(404, "unknown_device"),
            refused(400, "clock_skew"),
            refused(429, "rate_limited"),
            refused(503, "unavailable"),
            ClientError::Corrupt("x"),
            ClientError::Incomplete("x".into()),
        ] {
            assert!(!definite(&kept), "{kept:?}");
        }
    }
}
