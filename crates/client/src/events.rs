//! The local event log and read state: what an application (the app's
//! WebSocket, a bot's event stream, webhooks) reads from a cursor, and
//! where each conversation was read to.

use strongroom_crypto::ids::ConversationId;

use crate::client::Client;
use crate::error::ClientError;
use crate::rules::events::Event;

/// Most events one call returns.
pub const MAX_EVENTS: u32 = 1000;

/// Events kept on the device; older ones are pruned at upkeep (their ids
/// are never reused, so a reader that fell this far behind re-reads state).
pub(crate) const EVENTS_KEPT: i64 = 100_000;

/// A conversation's read state on this device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadState {
    /// The conversation.
    pub conversation: ConversationId,
    /// Read up to this sequence number.
    pub read_to: u64,
    /// Messages from others after it that a person reads (not receipts,
    /// reactions or edits).
    pub unread: u64,
    /// Muted: the app shows no alert for it.
    pub muted: bool,
}

impl Client {
    /// Logs events (not from a profile opened shared, for administration:
    /// the owning process keeps the log).
    pub(crate) async fn log(&self, events: &[crate::rules::events::EventKind]) -> Result<(), ClientError> {
        if self.lock.is_none() {
            return Ok(());
        }
        self.store.log(&self.vault, events).await
    }

    /// Events after `after` (0: from the first kept), oldest first, at most
    /// `limit` (capped at [`MAX_EVENTS`]). Keep the last id read and pass it
    /// next time: nothing is missed or repeated, across restarts too.
    pub async fn events(&self, after: u64, limit: u32) -> Result<Vec<Event>, ClientError> {
        self.store.events(&self.vault, after, limit.clamp(1, MAX_EVENTS)).await
    }

    /// Marks `conversation` read up to sequence number `up_to` (it never
    /// moves back); returns where it now stands.
    pub async fn mark_read(&self, conversation: ConversationId, up_to: u64) -> Result<u64, ClientError> {
        self.store.set_read(&self.vault, conversation.as_bytes(), up_to).await
    }

    /// Mutes or unmutes a conversation on this device.
    pub async fn set_muted(&self, conversation: ConversationId, muted: bool) -> Result<(), ClientError> {
        self.store.set_muted(conversation.as_bytes(), muted).await
    }

    /// Read position, unread count and mute of every conversation this
    /// device holds messages of.
    pub async fn read_states(&self) -> Result<Vec<ReadState>, ClientError> {
        Ok(self
            .store
            .read_states()
            .await?
            .into_iter()
            .map(|(c, read_to, unread, muted)| ReadState {
                conversation: ConversationId::from_bytes(c),
                read_to,
                unread,
                muted,
            })
            .collect())
    }
}
