//! People as the CLI shows them: usernames with a guest badge, and
//! membership changes in words ("added dave (guest)").

use std::collections::HashMap;

use strongroom_client::{display_name, Client};
use strongroom_crypto::content::{Content, Control};
use strongroom_crypto::ids::UserId;
use strongroom_wire::UserInfo;

/// Who the users a listing names are, looked up once each.
#[derive(Default)]
pub struct People {
    known: HashMap<UserId, UserInfo>,
}

impl People {
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
            Content::Control(Control::ModeratorsAdded(users)) => format!("(made {} moderators)", self.names(users)),
            Content::Control(Control::ModeratorsRemoved(users)) => {
                format!("(made {} plain members)", self.names(users))
            }
            other => crate::user::describe(other),
        }
    }
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
