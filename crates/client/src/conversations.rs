//! People and conversations: lookups, membership, note to self, default
//! timers, account calls.

use crate::client::*;
use crate::error::ClientError;
use crate::state::SessionToken;
use strongroom_crypto::certs::{ConversationKind, MembershipAction};
use strongroom_crypto::content::Content;
use strongroom_crypto::ids::*;
use strongroom_wire::*;

impl Client {
    /// A user id by username.
    pub async fn find_user(&self, username: &str) -> Result<UserId, ClientError> {
        // Percent-encoded: "bob#x" must not look up "bob", nor "a&username=b" inject a parameter.
        let mut url = reqwest::Url::parse("http://relay/v1/users").map_err(|_| ClientError::Corrupt("url"))?;
        url.query_pairs_mut().append_pair("username", username);
        let u: UserInfo = self.api.get(&format!("/v1/users?{}", url.query().unwrap_or_default())).await?;
        Ok(u.user_id)
    }

    /// A username by user id.
    pub async fn username_of(&self, user: UserId) -> Result<String, ClientError> {
        Ok(self.api.get::<UserInfo>(&format!("/v1/users?id={user}")).await?.username)
    }

    /// Conversations this user is in.
    pub async fn conversations(&self) -> Result<Vec<Conversation>, ClientError> {
        self.api.get("/v1/conversations").await
    }

    /// Creates a conversation with the given usernames, its membership
    /// signed by this device (PROTOCOL.md §3.4).
    pub async fn create_conversation(&mut self, kind: &str, members: &[&str]) -> Result<Conversation, ClientError> {
        let kind = ConversationKind::from_name(kind)
            .ok_or_else(|| ClientError::Usage("a conversation is direct, group or room".into()))?;
        let others = self.resolve(members).await?;
        self.create_signed(kind, &others).await
    }

    /// A conversation's members and roles.
    pub async fn conversation(&self, id: ConversationId) -> Result<Conversation, ClientError> {
        self.api.get(&format!("/v1/conversations/{id}")).await
    }

    /// Changes members (groups: any member; rooms: moderators) and announces
    /// the change in the conversation with a signed control message, so every
    /// member and the retention archive hold a record of who changed what.
    pub async fn change_members(
        &mut self,
        id: ConversationId,
        add: &[&str],
        remove: &[&str],
        promote: &[&str],
        demote: &[&str],
    ) -> Result<Conversation, ClientError> {
        let (add, remove, promote, demote) = (
            self.resolve(add).await?,
            self.resolve(remove).await?,
            self.resolve(promote).await?,
            self.resolve(demote).await?,
        );
        self.change_member_ids(id, add, remove, promote, demote).await
    }

    /// [`Client::change_members`] by user id.
    pub async fn change_member_ids(
        &mut self,
        id: ConversationId,
        add: Vec<UserId>,
        remove: Vec<UserId>,
        promote: Vec<UserId>,
        demote: Vec<UserId>,
    ) -> Result<Conversation, ClientError> {
        let leaving = remove == [self.user_id()];
        // One signed statement per kind of change, each following the last.
        let mut state = self.membership(id).await?;
        let mut c = None;
        let steps = [
            (MembershipAction::Add, add.clone()),
            (
                if leaving { MembershipAction::Leave } else { MembershipAction::Remove },
                if leaving { Vec::new() } else { remove.clone() },
            ),
            (MembershipAction::Promote, promote.clone()),
            (MembershipAction::Demote, demote.clone()),
        ];
        for (action, users) in steps {
            if users.is_empty() && action != MembershipAction::Leave || (action == MembershipAction::Leave && !leaving)
            {
                continue;
            }
            let (conv, next) = self.sign_membership(id, Some(&state), action, users, now_ms()).await?;
            state = next;
            c = Some(conv);
        }
        let c = match c {
            Some(c) => c,
            None => return Err(ClientError::Usage("nothing to change".into())),
        };
        use strongroom_crypto::content::Control;
        let announcements = [
            (!add.is_empty()).then(|| Control::MembersAdded(add.clone())),
            (!remove.is_empty() && !leaving).then(|| Control::MembersRemoved(remove.clone())),
            leaving.then_some(Control::Left),
            (!promote.is_empty()).then(|| Control::ModeratorsAdded(promote.clone())),
            (!demote.is_empty()).then(|| Control::ModeratorsRemoved(demote.clone())),
        ];
        for control in announcements.into_iter().flatten() {
            // Best effort: after leaving, there may be nobody left to tell.
            match self.send(id, &Content::Control(control), 0).await {
                Ok(_) | Err(ClientError::Refused { .. }) | Err(ClientError::Usage(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(c)
    }

    pub(crate) async fn resolve(&self, names: &[&str]) -> Result<Vec<UserId>, ClientError> {
        let mut v = Vec::with_capacity(names.len());
        for name in names {
            v.push(self.find_user(name).await?);
        }
        Ok(v)
    }

    /// This user's devices from the signed device list: (id, name, revoked).
    pub async fn devices(&mut self) -> Result<Vec<(DeviceId, String, bool)>, ClientError> {
        let list = self.device_list(self.user_id()).await?;
        Ok(list.list().devices.iter().map(|d| (d.device_id, d.name.clone(), d.revoked)).collect())
    }

    /// The direct conversation with `username`, created if needed.
    /// Naming yourself gives your note to self.
    pub async fn direct_with(&mut self, username: &str) -> Result<ConversationId, ClientError> {
        let other = self.find_user(username).await?;
        if other == self.user_id() {
            return self.notes_to_self().await;
        }
        let both: std::collections::BTreeSet<UserId> = [self.user_id(), other].into();
        // Lowest id first, so both sides (and every device) settle on the same one.
        let mut listed = self.conversations().await?;
        listed.sort_by_key(|c| c.id);
        for c in listed {
            if c.kind == strongroom_wire::ConversationKind::Direct && c.members.iter().any(|m| m.user_id == other) {
                let id = c.id;
                // The relay's listing is a hint: only a conversation whose
                // signed members are exactly the two of us is used.
                match self.membership(id).await {
                    Ok(m) if m.kind == ConversationKind::Direct && m.members == both => return Ok(id),
                    Ok(_) | Err(ClientError::Trust(_)) => continue,
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(self.create_signed(ConversationKind::Direct, &[other]).await?.id)
    }

    /// The devices a message to `conversation` is sealed for, and whether
    /// the conversation is a note to self.
    /// This user's note-to-self conversation (created on first use): only
    /// this user's devices, and the retention service if the network has
    /// one, receive what is sent to it.
    pub async fn notes_to_self(&mut self) -> Result<ConversationId, ClientError> {
        // Two devices creating it at once could make two: all pick the same
        // one. The relay's label is only a hint: a note to self is used only
        // if its signed membership is a note to self of this user alone.
        let mut listed: Vec<Conversation> = self
            .conversations()
            .await?
            .into_iter()
            .filter(|c| c.kind == strongroom_wire::ConversationKind::Notes)
            .collect();
        listed.sort_by_key(|c| c.id);
        let me: std::collections::BTreeSet<UserId> = [self.user_id()].into();
        for c in listed {
            let id = c.id;
            match self.membership(id).await {
                Ok(m) if m.kind == ConversationKind::Notes && m.members == me => return Ok(id),
                Ok(_) | Err(ClientError::Trust(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(self.create_signed(ConversationKind::Notes, &[]).await?.id)
    }

    /// The conversation's default timers (ttl, burn-on-read), from the last
    /// `DefaultTimers` control message sent or received in it.
    pub async fn default_timers(&self, conversation: ConversationId) -> Result<(u32, u32), ClientError> {
        let rec = self.store.record(&self.vault, &format!("timers:{conversation}")).await?;
        Ok(rec.and_then(|r| serde_json::from_slice::<(u32, u32)>(&r).ok()).unwrap_or((0, 0)))
    }

    /// Names a conversation for every member. The name never expires (the
    /// conversation's timers do not apply to it).
    pub async fn rename(&mut self, conversation: ConversationId, name: &str) -> Result<Accepted, ClientError> {
        let name = check_name(name)?;
        let control = Content::Control(strongroom_crypto::content::Control::Renamed(name.to_owned()));
        self.send_exact(conversation, &control, 0, 0).await
    }

    /// Sets the conversation's default timers for everyone in it.
    pub async fn set_default_timers(
        &mut self,
        conversation: ConversationId,
        ttl_secs: u32,
        bor_secs: u32,
    ) -> Result<Accepted, ClientError> {
        let control = Content::Control(strongroom_crypto::content::Control::DefaultTimers {
            ttl_secs,
            burn_on_read_secs: bor_secs,
        });
        // The announcement itself does not expire.
        let accepted = self.send_exact(conversation, &control, 0, 0).await?;
        self.remember_timers(conversation, ttl_secs, bor_secs).await?;
        Ok(accepted)
    }

    pub(crate) async fn remember_timers(
        &self,
        conversation: ConversationId,
        ttl: u32,
        bor: u32,
    ) -> Result<(), ClientError> {
        let json = serde_json::to_vec(&(ttl, bor)).map_err(|_| ClientError::Corrupt("timers"))?;
        self.store.put_record(&self.vault, &format!("timers:{conversation}"), &json).await
    }

    /// Creates an invite (network administrators).
    pub async fn create_invite(&self, admin: bool) -> Result<InviteCreated, ClientError> {
        self.api.post("/v1/invites", &CreateInvite { admin, ttl_secs: None }).await
    }

    /// Redeems an administrator's reset code with a new password, then logs in with it.
    pub async fn reset_password(&mut self, code: &str, new_password: &str) -> Result<(), ClientError> {
        let req = RedeemReset {
            network_id: self.network_id(),
            username: self.state.username.clone(),
            code: code.into(),
            new_password: new_password.into(),
        };
        self.api.post_empty("/v1/password/reset", &req).await?;
        self.login(new_password).await
    }

    /// Logs this device in again (after the session expired or the password changed).
    pub async fn login(&mut self, password: &str) -> Result<(), ClientError> {
        let (network, device, username) = (self.network_id(), self.device_id(), self.state.username.clone());
        let session = self.api.login(network, &username, password, device).await?;
        self.state.token = SessionToken::new(session.token);
        self.save().await
    }

    /// An administration API call (`strongroom admin …`): JSON in, JSON out.
    pub async fn admin_call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Option<serde_json::Value>, ClientError> {
        self.api.call_json(method, path, body).await
    }

    pub(crate) async fn confirm_wipe(&self) -> Result<(), ClientError> {
        self.api.post_empty("/v1/devices/wipe/confirm", &serde_json::json!({})).await
    }
}

/// A conversation name: 1 to 100 printable characters, at most 200 bytes.
pub fn check_name(name: &str) -> Result<&str, ClientError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.len() > 200 || name.chars().any(char::is_control) {
        return Err(ClientError::Usage("a conversation name is 1 to 100 printable characters".into()));
    }
    Ok(name)
}
