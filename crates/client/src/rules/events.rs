//! What goes into the local event log (`events.rs`): each stored message
//! becomes one event naming what happened, never its text; an application
//! reads the message itself from the store by id.

use serde::{Deserialize, Serialize};
use strongroom_crypto::content::{Content, Control, ReceiptKind};
use strongroom_crypto::ids::{ConversationId, MessageId, UserId};

use super::view::Message;

/// One entry of the event log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Increasing, never reused: read on from the last id seen.
    pub id: u64,
    /// When this device logged it (ms since the Unix epoch).
    pub at: u64,
    /// What happened.
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// A message (text, reply, file, location, control or a kind this
    /// release does not know) was stored.
    Message {
        /// Where.
        conversation: ConversationId,
        /// Which.
        message_id: MessageId,
        /// Who sent it.
        sender: UserId,
        /// The relay's number in the conversation (0: not numbered yet).
        seq: u64,
    },
    /// One of this user's messages was sealed and queued while the relay
    /// could not be reached; it goes out later under the same id.
    Queued {
        /// Where.
        conversation: ConversationId,
        /// Which.
        message_id: MessageId,
    },
    /// One of this user's messages was accepted by the relay.
    Sent {
        /// Where.
        conversation: ConversationId,
        /// Which.
        message_id: MessageId,
        /// The relay's number in the conversation.
        seq: u64,
    },
    /// A queued message could not be sent and was dropped (with why).
    SendFailed {
        /// Where.
        conversation: ConversationId,
        /// Which.
        message_id: MessageId,
        /// Why.
        reason: String,
    },
    /// A message was edited by its sender.
    Edited {
        /// Where.
        conversation: ConversationId,
        /// The edit.
        message_id: MessageId,
        /// The message edited.
        target: MessageId,
        /// Who edited.
        sender: UserId,
    },
    /// A message was recalled by its sender.
    Recalled {
        /// Where.
        conversation: ConversationId,
        /// The message recalled.
        target: MessageId,
        /// Who recalled it.
        sender: UserId,
    },
    /// A reaction was added or taken back.
    Reaction {
        /// Where.
        conversation: ConversationId,
        /// The message reacted to.
        target: MessageId,
        /// Who.
        sender: UserId,
        /// The emoji.
        emoji: String,
        /// Taken back.
        removed: bool,
    },
    /// A read or delivery receipt.
    Receipt {
        /// Where.
        conversation: ConversationId,
        /// Who read (or received) them.
        sender: UserId,
        /// Read (true) or delivered.
        read: bool,
        /// Which messages.
        message_ids: Vec<MessageId>,
    },
    /// A conversation's members or moderators changed (as announced).
    Membership {
        /// Where.
        conversation: ConversationId,
        /// The announcement.
        message_id: MessageId,
        /// Who announced it.
        sender: UserId,
    },
    /// A contact's device list or identity key changed (the notice shown).
    Identity {
        /// Whose.
        user: UserId,
        /// What changed, in words.
        notice: String,
    },
    /// The network policy changed (a newer verified version).
    Policy {
        /// The new version.
        version: u64,
    },
    /// This device's read position in a conversation moved.
    Read {
        /// Where.
        conversation: ConversationId,
        /// Read up to this number.
        read_to: u64,
    },
    /// An administrator ordered this device wiped: the log's last event.
    /// The application stops, shows `reason`, and calls
    /// `Client::erase_after_wipe`, which erases the profile, this log
    /// included.
    Wiped {
        /// Who ordered it, in words.
        reason: String,
    },
}

/// The event for a message just stored.
pub fn for_message(m: &Message) -> EventKind {
    let (conversation, sender) = (m.conversation, m.sender);
    match &m.content {
        Content::Edit { target, .. } => {
            EventKind::Edited { conversation, message_id: m.message_id, target: *target, sender }
        }
        Content::Recall { target } => EventKind::Recalled { conversation, target: *target, sender },
        Content::Reaction { target, emoji, remove } => {
            EventKind::Reaction { conversation, target: *target, sender, emoji: emoji.clone(), removed: *remove }
        }
        Content::Receipt { kind, message_ids, .. } => EventKind::Receipt {
            conversation,
            sender,
            read: *kind == ReceiptKind::Read,
            message_ids: message_ids.clone(),
        },
        Content::Control(
            Control::MembersAdded(_)
            | Control::MembersRemoved(_)
            | Control::Left
            | Control::ModeratorsAdded(_)
            | Control::ModeratorsRemoved(_),
        ) => EventKind::Membership { conversation, message_id: m.message_id, sender },
        _ => EventKind::Message { conversation, message_id: m.message_id, sender, seq: m.seq },
    }
}

/// Whether a message counts as unread until read: what a person reads from
/// someone else (text, replies, files, locations), not bookkeeping.
pub fn countable(m: &Message, me: UserId) -> bool {
    m.sender != me
        && matches!(
            m.content,
            Content::Text(_)
                | Content::Reply { .. }
                | Content::File(_)
                | Content::Location(_)
                | Content::Forwarded { .. }
        )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn msg(content: Content, sender: u8) -> Message {
        Message {
            message_id: MessageId::from_bytes([1; 16]),
            conversation: ConversationId::from_bytes([2; 16]),
            seq: 7,
            sender: UserId::from_bytes([sender; 16]),
            timestamp: 0,
            content,
        }
    }

    #[test]
    fn each_kind_of_message_names_what_happened_and_no_text() {
        let target = MessageId::from_bytes([9; 16]);
        let edit = for_message(&msg(Content::Edit { target, text: "secret".into() }, 3));
        assert!(matches!(edit, EventKind::Edited { target: t, .. } if t == target));
        assert!(!serde_json::to_string(&edit).unwrap().contains("secret"), "no content in the log");
        assert!(matches!(for_message(&msg(Content::Recall { target }, 3)), EventKind::Recalled { .. }));
        assert!(matches!(for_message(&msg(Content::Control(Control::Left), 3)), EventKind::Membership { .. }));
        assert!(matches!(for_message(&msg(Content::Text("hi".into()), 3)), EventKind::Message { seq: 7, .. }));
    }

    #[test]
    fn only_what_others_send_for_reading_counts_as_unread() {
        let me = UserId::from_bytes([3; 16]);
        assert!(countable(&msg(Content::Text("hi".into()), 4), me));
        assert!(!countable(&msg(Content::Text("mine".into()), 3), me));
        let receipt = Content::Receipt { kind: ReceiptKind::Read, at: 0, message_ids: vec![] };
        assert!(!countable(&msg(receipt, 4), me));
        assert!(!countable(&msg(Content::Recall { target: MessageId::from_bytes([9; 16]) }, 4), me));
    }

    #[test]
    fn events_round_trip_as_tagged_json() {
        let e = Event { id: 4, at: 5, kind: EventKind::Policy { version: 3 } };
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains("\"type\":\"policy\""), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
    }
}
