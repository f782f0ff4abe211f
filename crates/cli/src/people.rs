//! People as the CLI shows them: usernames with a guest badge, and
//! membership changes in words ("added dave (guest)").

use std::collections::HashMap;

use strongroom_client::{display_name, Client};
use strongroom_crypto::content::{Content, Control};
use strongroom_crypto::ids::{ConversationId, UserId};
use strongroom_wire::{Conversation, UserInfo};

/// Who the users a listing names are, looked up once each.
#[derive(Default)]
pub struct People {
    known: HashMap<UserId, UserInfo>,
    /// Each conversation's members, as the relay lists them.
    members: HashMap<ConversationId, Vec<UserId>>,
}

impl People {
    /// Learns everyone in these conversations from their member lists.
    pub fn learn_members(&mut self, conversations: &[Conversation]) {
        for c in conversations {
            for m in &c.members {
                if !m.username.is_empty() {
                    let info = UserInfo {
                        user_id: m.user_id,
                        username: m.username.clone(),
                        guest: m.guest,
                        expired: m.expired,
                    };
                    self.known.insert(m.user_id, info);
                }
            }
            self.members.insert(c.id, c.members.iter().map(|m| m.user_id).collect());
        }
    }

    /// A conversation named by its other members ("Note to self" alone).
    pub fn members_of(&self, conversation: &ConversationId, me: UserId) -> String {
        let others: Vec<String> = self
            .members
            .get(conversation)
            .map(|list| list.iter().filter(|u| **u != me).map(|u| self.name(u)).collect())
            .unwrap_or_default();
        if !self.members.contains_key(conversation) {
            // No member list (offline, or a conversation left): its id.
            format!("conversation {}", conversation.to_string().chars().take(crate::reading::SHORT).collect::<String>())
        } else if others.is_empty() {
            "Note to self".into()
        } else {
            others.join(", ")
        }
    }

    /// Looks up every user not yet known (offline: none; unknown users
    /// show as their id).
    pub async fn learn(&mut self, client: &Client, users: impl IntoIterator<Item = UserId>, offline: bool) {
        for user in users {
            if self.known.contains_key(&user) {
                continue;
            }
            let info = if user == client.user_id() {
                Some(UserInfo { user_id: user, username: client.username().to_owned(), guest: false, expired: false })
            } else if offline {
                None
            } else {
                client.user_info(user).await.ok()
            };
            if let Some(info) = info {
                self.known.insert(user, info);
            }
        }
    }

    /// A user's name with the guest badge (their id if unknown).
    pub fn name(&self, user: &UserId) -> String {
        self.known.get(user).map(display_name).unwrap_or_else(|| user.to_string())
    }

    fn names(&self, users: &[UserId]) -> String {
        users.iter().map(|u| self.name(u)).collect::<Vec<_>>().join(", ")
    }

    /// `content` described, membership changes in words.
    pub fn describe(&self, content: &Content) -> String {
        match content {
            Content::Control(Control::MembersAdded(users)) => format!("(added {})", self.names(users)),
            Content::Control(Control::MembersRemoved(users)) => {
                let expired = users.iter().any(|u| self.known.get(u).is_some_and(|i| i.guest && i.expired));
                let why = if expired { ": guest access expired after inactivity" } else { "" };
                format!("(removed {}{why})", self.names(users))
            }
            Content::Control(Control::Left) => "(left the conversation)".into(),
            Content::Control(Control::Renamed(name)) => format!("(named the conversation \"{name}\")"),
            Content::Control(Control::DefaultTimers { ttl_secs, burn_on_read_secs }) => {
                match (ttl_secs, burn_on_read_secs) {
                    (0, 0) => "(turned the default timers off)".into(),
                    (t, b) => format!("(set default timers: disappear after {t} s, burn {b} s after reading; 0 = off)"),
                }
            }
            Content::Control(Control::ModeratorsAdded(users)) => format!("(made {} moderators)", self.names(users)),
            Content::Control(Control::ModeratorsRemoved(users)) => {
                format!("(made {} plain members)", self.names(users))
            }
            Content::Forwarded { origin, content } if origin.is_withheld() => {
                format!("(forwarded) {}", self.describe(content))
            }
            Content::Forwarded { origin, content } => format!(
                "(forwarded from {}, sent {}) {}",
                self.name(&origin.sender),
                crate::user::when(origin.sent_at),
                self.describe(content)
            ),
            other => crate::user::describe(other),
        }
    }
}

/// Text from other people made safe for a terminal: control characters
/// (escape sequences), and bidirectional overrides that reorder what is
/// shown, become visible `\u{…}` escapes; a line break indents, so no
/// text can print a line that looks like another message.
pub fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\n    "),
            c if c.is_control() || ('\u{202a}'..='\u{202e}').contains(&c) || ('\u{2066}'..='\u{2069}').contains(&c) => {
                out.push_str(&c.escape_unicode().to_string())
            }
            c => out.push(c),
        }
    }
    out
}

/// The users a message's content names (membership changes).
pub fn named_in(content: &Content) -> Vec<UserId> {
    match content {
        Content::Control(
            Control::MembersAdded(u)
            | Control::MembersRemoved(u)
            | Control::ModeratorsAdded(u)
            | Control::ModeratorsRemoved(u),
        ) => u.clone(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn text_from_others_cannot_drive_the_terminal() {
        assert_eq!(super::clean("plain words, émoji 👍"), "plain words, émoji 👍");
        assert_eq!(super::clean("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(super::clean("x\u{202e}gnp.exe"), "x\\u{202e}gnp.exe");
        assert_eq!(super::clean("one\ntwo"), "one\n    two");
        assert!(!super::clean("\u{7}\u{9b}\r").chars().any(char::is_control));
    }
}
