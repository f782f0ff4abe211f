//! Read receipts and forwarding: messages about messages the user has seen.

use std::collections::BTreeMap;

use strongroom_crypto::content::{Content, ForwardOrigin, ReceiptKind, MAX_RECEIPT_IDS};
use strongroom_crypto::ids::{ConversationId, MessageId};
use strongroom_wire::Accepted;

use crate::client::{Client, Message};
use crate::error::ClientError;

impl Client {
    /// Tells the senders of `shown` messages that this user has read them:
    /// one receipt per conversation, covering messages from others after the
    /// last receipt this device sent there (so a message is receipted once).
    /// `wanted` is the person's choice; the security group may force
    /// receipts on or off whatever it is. Returns how many messages were
    /// receipted.
    pub async fn send_read_receipts(&mut self, shown: &[Message], at: u64, wanted: bool) -> Result<usize, ClientError> {
        if !crate::rules::group_policy::send_receipts(&self.known_settings().await?.1, wanted) {
            return Ok(0);
        }
        let me = self.user_id();
        let mut by_conversation: BTreeMap<ConversationId, Vec<&Message>> = BTreeMap::new();
        for m in shown.iter().filter(|m| m.sender != me && receiptable(&m.content)) {
            by_conversation.entry(m.conversation).or_default().push(m);
        }
        let mut sent = 0;
        for (conversation, messages) in by_conversation {
            let done = self.receipted_up_to(conversation).await?;
            let fresh: Vec<&Message> = messages.into_iter().filter(|m| m.seq > done).collect();
            let Some(high) = fresh.iter().map(|m| m.seq).max() else { continue };
            for chunk in fresh.chunks(MAX_RECEIPT_IDS) {
                let ids: Vec<MessageId> = chunk.iter().map(|m| m.message_id).collect();
                let receipt = Content::Receipt { kind: ReceiptKind::Read, at, message_ids: ids };
                // Receipts carry no content worth a timer; they are small and final.
                self.send_untimed(conversation, &receipt).await?;
                sent += chunk.len();
            }
            self.set_receipted_up_to(conversation, high).await?;
        }
        Ok(sent)
    }

    /// Sends a copy of a stored message's content to another conversation.
    /// Files are downloaded, checked, re-encrypted under a new key and
    /// uploaded again, so the new conversation can read them without access
    /// to the original one.
    pub async fn forward(
        &mut self,
        message: MessageId,
        to: ConversationId,
        progress: crate::files::Progress<'_>,
    ) -> Result<Accepted, ClientError> {
        crate::rules::group_policy::check(&self.my_policy().await?, crate::rules::group_policy::Action::Forward)
            .map_err(ClientError::Policy)?;
        // What the reader sees today: the latest edit, not the pre-edit text.
        // The conversation's own view (ordered as the reader sees it).
        let view = self.view(Some(self.conversation_of(message).await?)).await?;
        let original = crate::rules::view::current(&view, message).cloned().ok_or_else(|| {
            ClientError::Usage(format!("no stored message {message} to forward; run `strongroom read` first"))
        })?;
        // Where data retention is on, where it came from goes with it (a
        // forward of a forward keeps the first origin); elsewhere a forward
        // is marked as one but tells its new readers nothing about the
        // conversation it left.
        let on_record = self.retention_enabled().await?;
        let here = ForwardOrigin {
            conversation: original.conversation,
            message: original.message_id,
            sender: original.sender,
            sent_at: original.timestamp,
        };
        let (origin, inner) = match original.content {
            // What it came from was withheld: this forward is the origin we know.
            Content::Forwarded { origin, content } if origin.is_withheld() => (here, *content),
            Content::Forwarded { origin, content } => (origin, *content),
            other => (here, other),
        };
        let content = match inner {
            Content::Text(t) | Content::Reply { text: t, .. } => Content::Text(t),
            Content::Location(l) => Content::Location(l),
            Content::File(f) => {
                let plain = crate::files::scratch(self.dir())?;
                let result = async {
                    self.get_file(&f, &plain, progress).await?;
                    let origin = Some(if on_record { origin } else { ForwardOrigin::WITHHELD });
                    let (accepted, _) = self.send_file_as(to, &plain, &f.name, &f.media_type, origin, progress).await?;
                    Ok(accepted)
                }
                .await;
                let _ = std::fs::remove_file(&plain);
                return result;
            }
            _ => return Err(ClientError::Usage("only text, files and locations can be forwarded".into())),
        };
        let origin = if on_record { origin } else { ForwardOrigin::WITHHELD };
        let content = Content::Forwarded { origin, content: Box::new(content) };
        self.send(to, &content, 0).await
    }

    async fn receipted_up_to(&self, conversation: ConversationId) -> Result<u64, ClientError> {
        let rec = self.record(&format!("receipted:{conversation}")).await?;
        Ok(rec.and_then(|r| serde_json::from_slice::<u64>(&r).ok()).unwrap_or(0))
    }

    async fn set_receipted_up_to(&self, conversation: ConversationId, seq: u64) -> Result<(), ClientError> {
        let json = serde_json::to_vec(&seq).map_err(|_| ClientError::Corrupt("receipt state"))?;
        self.put_record(&format!("receipted:{conversation}"), &json).await
    }
}

/// Receipts are sent for what a person reads, not for bookkeeping messages.
fn receiptable(content: &Content) -> bool {
    matches!(
        content,
        Content::Text(_) | Content::Reply { .. } | Content::File(_) | Content::Location(_) | Content::Forwarded { .. }
    )
}
