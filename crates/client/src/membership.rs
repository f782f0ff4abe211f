//! A conversation's members as its members signed them (PROTOCOL.md §3.4):
//! fetched from the relay as statements, each verified under its author's
//! device from the author's verified list and folded in order. The relay's
//! own member list is never used to choose recipients.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};
use strongroom_crypto::certs::{
    CertError, ConversationKind, MembershipAction, MembershipState, MembershipStatement, VerifiedDeviceList,
};
use strongroom_crypto::envelope::MembershipCommitment;
use strongroom_crypto::ids::{ConversationId, NetworkId, UserId};
use strongroom_wire::{Conversation, MembershipHistory};

use crate::client::{unhex, Client};
use crate::error::ClientError;
use crate::store::hex;

/// Statements per page of the relay's answer.
const PAGE: usize = 256;

/// Distinct commitments remembered per conversation between checks.
pub(crate) const COMMITMENTS_KEPT: usize = 16;

/// What is kept of a folded membership between runs (sealed in the store).
#[derive(Serialize, Deserialize)]
struct Kept {
    network: String,
    kind: u8,
    members: Vec<String>,
    moderators: Vec<String>,
    version: u64,
    hash: String,
}

fn record(conversation: ConversationId) -> String {
    format!("membership:{conversation}")
}

fn users(list: &[String]) -> Result<BTreeSet<UserId>, ClientError> {
    list.iter().map(|u| UserId::parse_hex(u).ok_or(ClientError::Corrupt("kept membership"))).collect()
}

impl Client {
    /// The conversation's signed membership, brought up to date with the
    /// statements the relay holds after the last one applied here. A
    /// conversation no member signed is refused.
    pub async fn membership(&mut self, conversation: ConversationId) -> Result<MembershipState, ClientError> {
        let mut state = self.kept_membership(conversation).await?;
        let kept = state.as_ref().map(|s| s.commitment);
        let folded = self.fold_new(conversation, &mut state).await;
        // What verified is kept even when a later statement does not: the
        // next look-up starts there.
        if let Some(s) = state.as_ref().filter(|s| kept != Some(s.commitment)) {
            self.keep_membership(s).await?;
        }
        folded?;
        state.ok_or_else(|| {
            ClientError::Trust(format!(
                "conversation {conversation} has no membership signed by its members (made by the relay or an older client): start a new conversation"
            ))
        })
    }

    /// Fetches, verifies and applies the statements after `state`. A
    /// statement signed by a device its owner has since revoked counts only
    /// once a later statement by a current device follows it (that member
    /// folded it and vouches for it); one left at the tip is not kept.
    async fn fold_new(
        &mut self,
        conversation: ConversationId,
        state: &mut Option<MembershipState>,
    ) -> Result<(), ClientError> {
        let mut vouched = None;
        let mut unvouched = None;
        let folded = self.fold_pages(conversation, state, &mut vouched, &mut unvouched).await;
        if unvouched.is_some() {
            *state = vouched;
        }
        match (folded, unvouched) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(seq)) => Err(ClientError::Trust(format!(
                "conversation {conversation}: membership statement {seq} was signed by a device its owner has since revoked, and no later statement by a current device vouches for it"
            ))),
            (Ok(()), None) => Ok(()),
        }
    }

    async fn fold_pages(
        &mut self,
        conversation: ConversationId,
        state: &mut Option<MembershipState>,
        vouched: &mut Option<MembershipState>,
        unvouched: &mut Option<u64>,
    ) -> Result<(), ClientError> {
        let mut lists: HashMap<UserId, VerifiedDeviceList> = HashMap::new();
        loop {
            let after = state.as_ref().map_or(0, |s| s.commitment.version);
            let page: MembershipHistory =
                self.api.get(&format!("/v1/conversations/{conversation}/membership?after={after}")).await?;
            for raw in &page.statements {
                let st = MembershipStatement::decode(&raw.0).map_err(|e| refused(conversation, e))?;
                let list = match lists.get(&st.author_user) {
                    Some(l) => l.clone(),
                    None => {
                        let l = self.device_list(st.author_user).await?;
                        lists.insert(st.author_user, l.clone());
                        l
                    }
                };
                let (author, current) = match list.device(st.author_device) {
                    Ok(d) => (d, true),
                    Err(CertError::RevokedDevice { .. }) => {
                        (list.revoked_device(st.author_device).map_err(|e| refused(conversation, e))?, false)
                    }
                    Err(e) => return Err(refused(conversation, e)),
                };
                st.verify(&author).map_err(|e| refused(conversation, e))?;
                if !current && unvouched.is_none() {
                    *vouched = state.clone();
                    *unvouched = Some(st.sequence);
                }
                match state.as_mut() {
                    Some(s) => s.apply(&st).map_err(|e| refused(conversation, e))?,
                    None => {
                        if st.conversation_id != conversation || st.network_id != self.network_id() {
                            return Err(ClientError::Trust(format!(
                                "conversation {conversation}: the relay served the creation of another conversation"
                            )));
                        }
                        *state = Some(MembershipState::create(&st).map_err(|e| refused(conversation, e))?);
                    }
                }
                if current {
                    *unvouched = None;
                }
            }
            if page.statements.len() < PAGE {
                return Ok(());
            }
        }
    }

    pub(crate) async fn kept_membership(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<MembershipState>, ClientError> {
        let Some(raw) = self.record(&record(conversation)).await? else { return Ok(None) };
        let k: Kept = serde_json::from_slice(&raw).map_err(|_| ClientError::Corrupt("kept membership"))?;
        Ok(Some(MembershipState {
            network_id: NetworkId::parse_hex(&k.network).ok_or(ClientError::Corrupt("kept membership"))?,
            conversation_id: conversation,
            kind: ConversationKind::from_code(k.kind).ok_or(ClientError::Corrupt("kept membership"))?,
            members: users(&k.members)?,
            moderators: users(&k.moderators)?,
            commitment: MembershipCommitment { version: k.version, hash: unhex(&k.hash)? },
        }))
    }

    async fn keep_membership(&self, s: &MembershipState) -> Result<(), ClientError> {
        let k = Kept {
            network: s.network_id.to_string(),
            kind: s.kind.code(),
            members: s.members.iter().map(|u| u.to_string()).collect(),
            moderators: s.moderators.iter().map(|u| u.to_string()).collect(),
            version: s.commitment.version,
            hash: hex(&s.commitment.hash),
        };
        let json = serde_json::to_vec(&k).map_err(|_| ClientError::Corrupt("kept membership"))?;
        self.put_record(&record(s.conversation_id), &json).await
    }

    /// Compares the membership commitments that this sync's messages carried
    /// with this device's fold (fetching statements it has not seen): a
    /// commitment it cannot reach means the relay withheld a change; one that
    /// differs at the same sequence means it showed two histories. Runs after
    /// the messages are stored and acknowledged, so nothing waits on it; a
    /// relay that cannot be reached just defers the check.
    pub(crate) async fn check_commitments(&mut self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (conversation, seen) in std::mem::take(&mut self.commitments) {
            let newest = seen.iter().map(|c| c.version).max().unwrap_or(0);
            if seen.iter().any(|c| c.version == 0) {
                warnings.push(format!(
                    "conversation {conversation}: a message was sealed without a signed member set (an older client)"
                ));
            }
            if newest == 0 {
                continue;
            }
            let kept = self.kept_membership(conversation).await.ok().flatten();
            let state = match kept {
                Some(k) if k.commitment.version >= newest => Ok(k),
                _ => self.membership(conversation).await,
            };
            let ours = match state {
                Ok(s) => s.commitment,
                // Checked at the next sync, not dropped.
                Err(e) if e.is_transient() => {
                    self.commitments.insert(conversation, seen);
                    continue;
                }
                Err(e) => {
                    warnings.push(format!("conversation {conversation}: its members cannot be verified: {e}"));
                    continue;
                }
            };
            for c in seen.iter().filter(|c| c.version > 0) {
                let same = bool::from(subtle::ConstantTimeEq::ct_eq(&ours.hash[..], &c.hash[..]));
                if ours.version == c.version && !same {
                    warnings.push(format!(
                        "conversation {conversation}: a sender sealed to another history of its members than this device holds (membership change #{}): the relay is showing two views",
                        c.version
                    ));
                } else if ours.version < c.version {
                    warnings.push(format!(
                        "conversation {conversation}: a sender sealed to membership change #{} that the relay has not shown this device (withheld)",
                        c.version
                    ));
                }
            }
        }
        warnings
    }

    /// Signs a membership statement with this device and gives it to the
    /// relay, which applies it to its member table; then keeps the new state.
    pub(crate) async fn sign_membership(
        &mut self,
        conversation: ConversationId,
        after: Option<&MembershipState>,
        action: MembershipAction,
        users: Vec<UserId>,
        issued_at: u64,
    ) -> Result<(Conversation, MembershipState), ClientError> {
        let st = MembershipStatement::sign(
            &self.device_key()?,
            self.network_id(),
            conversation,
            after.map(|s| &s.commitment),
            (self.user_id(), self.device_id()),
            issued_at,
            action,
            users,
        )
        .map_err(|e| ClientError::Usage(e.to_string()))?;
        let c: Conversation =
            self.api.post_bytes(&format!("/v1/conversations/{conversation}/membership"), st.encode()).await?;
        let next = match after {
            Some(s) => {
                let mut next = s.clone();
                next.apply(&st).map_err(|e| ClientError::Usage(e.to_string()))?;
                next
            }
            None => MembershipState::create(&st).map_err(|e| ClientError::Usage(e.to_string()))?,
        };
        self.keep_membership(&next).await?;
        Ok((c, next))
    }

    /// Creates a conversation of `kind` with `others` (the creator is added),
    /// its id derived from the creation statement this device signs.
    pub(crate) async fn create_signed(
        &mut self,
        kind: ConversationKind,
        others: &[UserId],
    ) -> Result<Conversation, ClientError> {
        let mut users: Vec<UserId> = others.to_vec();
        users.push(self.user_id());
        users.sort();
        users.dedup();
        let now = crate::client::now_ms();
        let author = (self.user_id(), self.device_id());
        let id = MembershipStatement::creation_id(self.network_id(), author, now, kind, users.clone());
        Ok(self.sign_membership(id, None, MembershipAction::Create(kind), users, now).await?.0)
    }
}

fn refused(conversation: ConversationId, e: strongroom_crypto::certs::CertError) -> ClientError {
    ClientError::Trust(format!("membership of conversation {conversation} refused: {e}"))
}
