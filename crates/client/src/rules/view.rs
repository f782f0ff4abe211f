//! The conversation view: stored messages folded into what a person sees.
//! Edits apply only from the original sender; reactions are per (person,
//! emoji); read receipts gather who has read what; recalls, receipts and
//! the edit and reaction messages themselves are folded in, not shown.

use std::collections::HashMap;

use strongroom_crypto::content::{Content, ReceiptKind};
use strongroom_crypto::ids::{ConversationId, MessageId, UserId};

/// A message in the local store, decrypted.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Message id.
    pub message_id: MessageId,
    /// Conversation.
    pub conversation: ConversationId,
    /// The relay's sequence number in the conversation (0: kept on this
    /// device only, as a note to self with no other device to sync to).
    pub seq: u64,
    /// Sender.
    pub sender: UserId,
    /// Sender's timestamp (ms).
    pub timestamp: u64,
    /// What it says.
    pub content: Content,
}

/// A message as the conversation shows it: edits applied, reactions
/// gathered; edit, reaction and recall messages themselves folded in.
#[derive(Debug, Clone, PartialEq)]
pub struct ViewItem {
    /// The message (its latest edit applied to `content`).
    pub message: Message,
    /// Whether its text was edited.
    pub edited: bool,
    /// Reactions: (who, emoji).
    pub reactions: Vec<(UserId, String)>,
    /// Who has sent a read receipt for it.
    pub read_by: Vec<UserId>,
}

/// Folds messages (in conversation order) into the view.
pub fn fold(messages: Vec<Message>) -> Vec<ViewItem> {
    let mut items: Vec<ViewItem> = Vec::new();
    let mut index: HashMap<MessageId, usize> = HashMap::new();
    for m in messages {
        match &m.content {
            Content::Edit { target, text } => {
                if let Some(item) = index.get(target).and_then(|i| items.get_mut(*i)) {
                    if item.message.sender == m.sender {
                        item.message.content = match &item.message.content {
                            Content::Reply { in_reply_to, .. } => {
                                Content::Reply { in_reply_to: *in_reply_to, text: text.clone() }
                            }
                            _ => Content::Text(text.clone()),
                        };
                        item.edited = true;
                    }
                }
            }
            Content::Reaction { target, emoji, remove } => {
                if let Some(item) = index.get(target).and_then(|i| items.get_mut(*i)) {
                    item.reactions.retain(|(u, e)| !(*u == m.sender && e == emoji));
                    if !remove {
                        item.reactions.push((m.sender, emoji.clone()));
                    }
                }
            }
            Content::Receipt { kind: ReceiptKind::Read, message_ids, .. } => {
                for id in message_ids {
                    if let Some(item) = index.get(id).and_then(|i| items.get_mut(*i)) {
                        if item.message.sender != m.sender && !item.read_by.contains(&m.sender) {
                            item.read_by.push(m.sender);
                        }
                    }
                }
            }
            // A recall leaves a placeholder where its sender's message was
            // (one by anyone else changes nothing).
            Content::Recall { target } => match index.get(target).and_then(|i| items.get_mut(*i)) {
                Some(item) if item.message.sender == m.sender => {
                    item.message.content = m.content.clone();
                    item.edited = false;
                    item.reactions.clear();
                }
                Some(_) => {}
                None => {
                    index.insert(m.message_id, items.len());
                    items.push(ViewItem { message: m, edited: false, reactions: Vec::new(), read_by: Vec::new() });
                }
            },
            Content::Receipt { .. } => {}
            _ => {
                index.insert(m.message_id, items.len());
                items.push(ViewItem { message: m, edited: false, reactions: Vec::new(), read_by: Vec::new() });
            }
        }
    }
    items
}

/// The text a person sees for a message today: its latest edit by its own
/// sender (forwarding sends this, not the pre-edit text).
pub fn current(view: &[ViewItem], id: MessageId) -> Option<&Message> {
    view.iter().map(|i| &i.message).find(|m| m.message_id == id)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::indexing_slicing)]
    use super::*;

    fn msg(id: u8, sender: u8, content: Content) -> Message {
        Message {
            message_id: MessageId::from_bytes([id; 16]),
            conversation: ConversationId::from_bytes([1; 16]),
            seq: u64::from(id),
            sender: UserId::from_bytes([sender; 16]),
            timestamp: u64::from(id),
            content,
        }
    }

    fn id(n: u8) -> MessageId {
        MessageId::from_bytes([n; 16])
    }

    #[test]
    fn only_the_sender_edits_and_the_latest_edit_wins() {
        let view = fold(vec![
            msg(1, 1, Content::Text("draft".into())),
            msg(2, 2, Content::Edit { target: id(1), text: "forged".into() }),
            msg(3, 1, Content::Edit { target: id(1), text: "second".into() }),
            msg(4, 1, Content::Edit { target: id(1), text: "final".into() }),
        ]);
        assert_eq!(view.len(), 1);
        assert_eq!(view[0].message.content, Content::Text("final".into()));
        assert!(view[0].edited);
        assert_eq!(current(&view, id(1)).map(|m| &m.content), Some(&Content::Text("final".into())));
    }

    #[test]
    fn an_edited_reply_stays_a_reply() {
        let view = fold(vec![
            msg(1, 1, Content::Text("q".into())),
            msg(2, 2, Content::Reply { in_reply_to: id(1), text: "a".into() }),
            msg(3, 2, Content::Edit { target: id(2), text: "b".into() }),
        ]);
        assert_eq!(view[1].message.content, Content::Reply { in_reply_to: id(1), text: "b".into() });
    }

    #[test]
    fn reactions_are_per_person_and_emoji_and_can_be_taken_back() {
        let view = fold(vec![
            msg(1, 1, Content::Text("hi".into())),
            msg(2, 2, Content::Reaction { target: id(1), emoji: "👍".into(), remove: false }),
            msg(3, 2, Content::Reaction { target: id(1), emoji: "👍".into(), remove: false }),
            msg(4, 3, Content::Reaction { target: id(1), emoji: "🎉".into(), remove: false }),
            msg(5, 3, Content::Reaction { target: id(1), emoji: "🎉".into(), remove: true }),
        ]);
        assert_eq!(view.len(), 1);
        assert_eq!(view[0].reactions, vec![(UserId::from_bytes([2; 16]), "👍".to_owned())]);
    }

    #[test]
    fn read_receipts_count_others_once_and_are_not_shown() {
        let receipt = |ids: Vec<MessageId>| Content::Receipt { kind: ReceiptKind::Read, message_ids: ids, at: 0 };
        let view = fold(vec![
            msg(1, 1, Content::Text("hi".into())),
            msg(2, 2, receipt(vec![id(1)])),
            msg(3, 2, receipt(vec![id(1)])),
            msg(4, 1, receipt(vec![id(1)])),
        ]);
        assert_eq!(view.len(), 1);
        assert_eq!(view[0].read_by, vec![UserId::from_bytes([2; 16])]);
    }

    #[test]
    fn edits_and_reactions_to_unknown_messages_are_ignored() {
        let view = fold(vec![
            msg(2, 1, Content::Edit { target: id(9), text: "x".into() }),
            msg(3, 1, Content::Reaction { target: id(9), emoji: "x".into(), remove: false }),
        ]);
        assert!(view.is_empty());
    }

    #[test]
    fn a_recall_leaves_a_placeholder_only_for_its_own_sender() {
        // The recalled message already deleted (as the store does): the recall stands in.
        let gone = fold(vec![msg(4, 1, Content::Recall { target: id(9) })]);
        assert!(matches!(gone[0].message.content, Content::Recall { .. }));
        let view = fold(vec![
            msg(1, 1, Content::Text("mine".into())),
            msg(2, 2, Content::Text("theirs".into())),
            msg(3, 1, Content::Reaction { target: id(1), emoji: "x".into(), remove: false }),
            msg(4, 1, Content::Recall { target: id(1) }),
            msg(5, 1, Content::Recall { target: id(2) }),
        ]);
        assert_eq!(view.len(), 2);
        assert!(matches!(view[0].message.content, Content::Recall { .. }) && view[0].reactions.is_empty());
        assert!(
            matches!(&view[1].message.content, Content::Text(t) if t == "theirs"),
            "a forged recall changes nothing"
        );
    }
}
