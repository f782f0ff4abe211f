//! Guests as members see them: inviting one, the badge, and removing a
//! guest whose access expired. The relay revokes an expired guest's devices
//! at once (nobody encrypts to them any more); where members sign the
//! membership, the first member who syncs and may change it removes the
//! guest with a signed statement and says so in the conversation.

use strongroom_crypto::ids::{ConversationId, UserId};
use strongroom_wire::{ConversationKind, CreateGuestInvite, InviteCreated, Role, UserInfo};

use crate::client::Client;
use crate::error::ClientError;

/// How often one process looks for expired guests while syncing.
const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// A user's name as shown: `dave (guest)`, `dave (guest, expired)`.
pub fn display_name(user: &UserInfo) -> String {
    match (user.guest, user.expired) {
        (true, true) => format!("{} (guest, expired)", user.username),
        (true, false) => format!("{} (guest)", user.username),
        (false, _) => user.username.clone(),
    }
}

impl Client {
    /// A guest invite (the security group must allow guests). The code is
    /// passed on by hand; the guest enrols with it like anyone else.
    pub async fn create_guest_invite(&self, ttl_secs: Option<u64>) -> Result<InviteCreated, ClientError> {
        self.api.post("/v1/guests/invites", &CreateGuestInvite { ttl_secs }).await
    }

    /// Who a user is (name, guest or not, expired or not).
    pub async fn user_info(&self, user: UserId) -> Result<UserInfo, ClientError> {
        self.api.get(&format!("/v1/users?id={user}")).await
    }

    /// Removes expired guests from the conversations this user may change
    /// (groups; rooms they moderate); returns (conversation, names removed).
    /// A conversation another member changed meanwhile is left for the
    /// next pass.
    pub async fn remove_expired_guests(&mut self) -> Result<Vec<(ConversationId, Vec<String>)>, ClientError> {
        let me = self.user_id();
        let mut done = Vec::new();
        for c in self.conversations().await? {
            let may_change = match c.kind {
                ConversationKind::Group => true,
                ConversationKind::Room => c.members.iter().any(|m| m.user_id == me && m.role == Role::Moderator),
                _ => false,
            };
            let expired: Vec<&strongroom_wire::Member> = c.members.iter().filter(|m| m.guest && m.expired).collect();
            if !may_change || expired.is_empty() {
                continue;
            }
            let ids = expired.iter().map(|m| m.user_id).collect();
            let names = expired.iter().map(|m| m.username.clone()).collect();
            match self.change_member_ids(c.id, Vec::new(), ids, Vec::new(), Vec::new()).await {
                Ok(_) => done.push((c.id, names)),
                // Another member removed them first, or the relay refused: next pass.
                Err(ClientError::Refused { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// [`Client::remove_expired_guests`] at most once a minute per process,
    /// from sync: what it did becomes notices, a failure a warning.
    pub(crate) async fn remove_expired_guests_now(&mut self, report: &mut crate::client::SyncReport) {
        if self.cache.guests_checked.is_some_and(|t| t.elapsed() < CHECK_EVERY) {
            return;
        }
        self.cache.guests_checked = Some(std::time::Instant::now());
        match self.remove_expired_guests().await {
            Ok(done) => {
                for (c, names) in done {
                    self.notices.push(format!(
                        "removed {} from conversation {c}: guest access expired after inactivity",
                        names.iter().map(|n| format!("{n} (guest)")).collect::<Vec<_>>().join(", ")
                    ));
                }
            }
            Err(e) => report.warnings.push(format!("expired guests were not removed (retried at a later sync): {e}")),
        }
    }
}
