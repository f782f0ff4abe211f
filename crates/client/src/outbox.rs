//! The durable outbox: a message is sealed and stored (with this device's
//! own copy, in one transaction) before it is posted, and stays queued while
//! the relay cannot be reached. Queued messages go out in order at the next
//! send, sync or watch, as the same bytes under the same message id: the
//! relay accepts an id once, so a message whose answer was lost is not sent
//! twice. If the relay says the recipients or settings changed meanwhile,
//! it is sealed again under the same id.

use serde::{Deserialize, Serialize};
use strongroom_crypto::content::Content;
use strongroom_crypto::ids::{ConversationId, MessageId};
use strongroom_wire::Accepted;

use crate::client::Client;
use crate::error::ClientError;

/// What sealing a message for its conversation gave.
pub(crate) enum Sealed {
    /// The envelope to post.
    Envelope(Vec<u8>),
    /// Nobody to seal for (in a note to self: no other device of ours).
    Nobody { notes: bool },
}

/// The SDK's answer for a message (the relay's fields, or queued).
pub(crate) fn accepted(message_id: MessageId, seq: u64, queued_or_duplicate: bool) -> Accepted {
    let queued = seq == 0 && queued_or_duplicate;
    Accepted { message_id: message_id.to_string(), seq, duplicate: !queued && queued_or_duplicate, queued }
}

/// A message on its way out.
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
    /// The envelope as last sealed (posted again as is).
    pub envelope: Vec<u8>,
}

impl Outgoing {
    pub(crate) fn new(
        conversation: ConversationId,
        content: &Content,
        requested: (u32, u32),
        defaults: (u32, u32),
    ) -> Result<Self, ClientError> {
        Ok(Self {
            conversation,
            message_id: MessageId::random(&mut rand_core::OsRng),
            timestamp: crate::client::now_ms(),
            requested,
            defaults,
            content: content.encode().map_err(|e| ClientError::Usage(e.to_string()))?,
            envelope: Vec::new(),
        })
    }

    pub(crate) fn content(&self) -> Result<Content, ClientError> {
        Content::decode(&self.content).map_err(|_| ClientError::Corrupt("queued message"))
    }
}

impl Drop for Outgoing {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.content);
    }
}

impl Client {
    /// Sends what waits in the outbox, oldest first, stopping at the first
    /// that still cannot go (so order is kept). Returns a warning for each
    /// message the relay refused for good (dropped, with why; the event log
    /// has it too).
    pub async fn flush_outbox(&mut self) -> Result<Vec<String>, ClientError> {
        let mut warnings = Vec::new();
        for raw in self.store.outbox(&self.vault).await? {
            let mut out: Outgoing = serde_json::from_slice(&raw).map_err(|_| ClientError::Corrupt("queued message"))?;
            match self.deliver(&mut out, true, true).await {
                Ok(a) if a.queued => break,
                Ok(_) => {}
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => warnings.push(format!(
                    "message {} to conversation {} could not be sent and was removed: {e}",
                    out.message_id, out.conversation
                )),
            }
        }
        Ok(warnings)
    }

    /// Messages waiting in the outbox, oldest first.
    pub async fn queued(&self) -> Result<Vec<(ConversationId, MessageId)>, ClientError> {
        self.store
            .outbox(&self.vault)
            .await?
            .iter()
            .map(|raw| {
                let out: Outgoing = serde_json::from_slice(raw).map_err(|_| ClientError::Corrupt("queued message"))?;
                Ok((out.conversation, out.message_id))
            })
            .collect()
    }
}
