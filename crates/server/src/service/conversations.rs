//! Conversations: members are users of the caller's network; only members
//! (and the network's retention devices, which receive everything) see a
//! conversation; groups change by any member, rooms by moderators (anyone
//! may leave), direct conversations never.

use rand_core::{OsRng, RngCore};
use strongroom_crypto::certs::{CertError, ConversationKind, MembershipAction, MembershipState, MembershipStatement};
use strongroom_wire::{Conversation, ConversationId, Member, UserId};

use crate::auth::Caller;
use crate::error::{ApiError, ApiResult};
use crate::state::AppState;
use crate::store::{now_ms, ConversationRow, Kind, Role};

/// Most users one request names.
pub const MAX_MEMBERS: usize = 4096;

/// A conversation as the API shows it.
pub fn view(c: &ConversationRow) -> Conversation {
    Conversation {
        id: ConversationId::from_bytes(c.id),
        kind: c.kind,
        members: c
            .members
            .iter()
            .zip(&c.people)
            .map(|((u, r), p)| Member {
                user_id: UserId::from_bytes(*u),
                role: *r,
                username: p.username.clone(),
                guest: p.guest,
                expired: p.expired,
            })
            .collect(),
        membership_seq: c.membership_seq,
        last_seq: c.last_seq,
    }
}

async fn check_in_network(state: &AppState, network: &[u8; 16], users: &[[u8; 16]]) -> ApiResult<()> {
    if state.store.users_in_network(network, users).await? != users.len() {
        return Err(ApiError::not_found("unknown_user", "every member must be a user of your network"));
    }
    Ok(())
}

/// A conversation the caller is a member of: 404 if unknown or in another
/// network, 403 if not a member.
pub async fn member_of(state: &AppState, caller: &Caller, id: &[u8; 16]) -> ApiResult<ConversationRow> {
    let c = state
        .store
        .conversation(id)
        .await?
        .filter(|c| c.network_id == caller.session.network_id)
        .ok_or_else(|| ApiError::not_found("unknown_conversation", "no such conversation"))?;
    // Retention devices are a recipient of every conversation in their network.
    if c.role(&caller.session.user_id).is_none() && !caller.is_retention() {
        return Err(ApiError::forbidden("not_member", "you are not a member of this conversation"));
    }
    Ok(c)
}

/// Creates a conversation of `kind` with the caller and `others` (sorted, deduplicated).
pub async fn create(
    state: &AppState,
    caller: &Caller,
    kind: Kind,
    mut others: Vec<[u8; 16]>,
) -> ApiResult<Conversation> {
    let me = caller.session.user_id;
    others.retain(|u| *u != me);
    if kind != Kind::Notes {
        super::guests::refuse_guest(caller, "start conversations")?;
    }
    if kind == Kind::Direct && others.len() != 1 {
        return Err(ApiError::bad_request("bad_members", "a direct conversation has exactly one other member"));
    }
    if kind == Kind::Notes {
        if !others.is_empty() {
            return Err(ApiError::bad_request("bad_members", "a note to self has no other members"));
        }
        // One per account: every device of the user finds the same one.
        let mine = state.store.conversations_of(&me).await?;
        if let Some(existing) = mine.iter().find(|c| c.kind == Kind::Notes && c.network_id == caller.session.network_id)
        {
            return Ok(view(existing));
        }
    }
    check_in_network(state, &caller.session.network_id, &others).await?;
    super::guests::check_added(state, caller, &others, &[]).await?;
    let mut members: Vec<([u8; 16], Role)> = others.iter().map(|u| (*u, Role::Member)).collect();
    members.push((me, if kind == Kind::Room { Role::Moderator } else { Role::Member }));
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    state.store.create_conversation(&id, &caller.session.network_id, kind, &members, now_ms(), None).await?;
    Ok(view(&member_of(state, caller, &id).await?))
}

/// The caller's conversations.
pub async fn list(state: &AppState, caller: &Caller) -> ApiResult<Vec<Conversation>> {
    Ok(state.store.conversations_of(&caller.session.user_id).await?.iter().map(view).collect())
}

/// One change of membership (each list sorted and deduplicated).
pub struct MemberChange {
    /// Users to add.
    pub add: Vec<[u8; 16]>,
    /// Users to remove.
    pub remove: Vec<[u8; 16]>,
    /// Members to make moderators (rooms).
    pub promote: Vec<[u8; 16]>,
    /// Moderators to make members (rooms).
    pub demote: Vec<[u8; 16]>,
}

/// Groups: any member adds or removes. Rooms: moderators do; anyone may leave.
/// Direct conversations do not change.
pub async fn change_members(
    state: &AppState,
    caller: &Caller,
    id: &[u8; 16],
    change: MemberChange,
) -> ApiResult<Conversation> {
    let c = member_of(state, caller, id).await?;
    let me = caller.session.user_id;
    let only_leaving =
        change.add.is_empty() && change.promote.is_empty() && change.demote.is_empty() && change.remove == [me];
    if !only_leaving {
        super::guests::refuse_guest(caller, "change a conversation's members (only leave it)")?;
    }
    if !state.store.membership_statements(id, 0, 1).await?.is_empty() {
        // Unsigned changes would make the relay's table part from what
        // members signed, and every sender would refuse to send.
        return Err(ApiError::conflict(
            "signed_membership",
            "this conversation's members change only by signed statements (POST /v1/conversations/{id}/membership)",
        ));
    }
    let MemberChange { add, remove, promote, demote } = change;
    if add.is_empty() && remove.is_empty() && promote.is_empty() && demote.is_empty() {
        return Err(ApiError::bad_request("empty_change", "nothing to change"));
    }
    match c.kind {
        Kind::Direct => {
            return Err(ApiError::bad_request("direct_fixed", "a direct conversation's members cannot change"))
        }
        Kind::Notes => return Err(ApiError::bad_request("notes_fixed", "a note to self has no other members")),
        Kind::Group if !promote.is_empty() || !demote.is_empty() => {
            return Err(ApiError::bad_request("no_roles_in_groups", "groups have no moderators; use a room"))
        }
        Kind::Room => {
            let only_leaving = add.is_empty() && promote.is_empty() && demote.is_empty() && remove == [me];
            if c.role(&me) != Some(Role::Moderator) && !only_leaving {
                return Err(ApiError::forbidden("not_moderator", "only a room's moderators change its members"));
            }
        }
        Kind::Group => {}
        // Never stored (the store refuses to make one).
        Kind::Unknown => return Err(ApiError::bad_request("bad_kind", "this conversation's kind is unknown")),
    }
    check_in_network(state, &caller.session.network_id, &add).await?;
    super::guests::check_added(state, caller, &add, &promote).await?;
    for u in promote.iter().chain(&demote) {
        if c.role(u).is_none() && !add.contains(u) {
            return Err(ApiError::bad_request("not_member", "only members can be promoted or demoted"));
        }
    }
    state.store.change_members(id, &add, &remove, &promote, &demote, None).await?;
    reloaded(state, id).await
}

/// The conversation as it is now stored, after a change.
async fn reloaded(state: &AppState, id: &[u8; 16]) -> ApiResult<Conversation> {
    let c = state
        .store
        .conversation(id)
        .await?
        .ok_or_else(|| ApiError::not_found("unknown_conversation", "no such conversation"))?;
    Ok(view(&c))
}

/// Most statements in one answer of the membership history.
pub const MAX_STATEMENTS: u32 = 256;
/// Most statements one conversation may have: every member folds them all
/// on first contact, and the relay on every change.
pub const MAX_LOG: usize = 10_000;

fn kind_of(kind: ConversationKind) -> Kind {
    match kind {
        ConversationKind::Direct => Kind::Direct,
        ConversationKind::Group => Kind::Group,
        ConversationKind::Room => Kind::Room,
        ConversationKind::Notes => Kind::Notes,
    }
}

/// A conversation's signed membership statements after `after` (members and
/// the network's retention devices).
pub async fn statements(state: &AppState, caller: &Caller, id: &[u8; 16], after: u64) -> ApiResult<Vec<Vec<u8>>> {
    member_of(state, caller, id).await?;
    Ok(state.store.membership_statements(id, after, MAX_STATEMENTS).await?)
}

/// The membership a conversation's stored statements make.
async fn signed_state(state: &AppState, id: &[u8; 16]) -> ApiResult<Option<MembershipState>> {
    let corrupt = || ApiError::from(crate::store::StoreError::Corrupt("membership statement"));
    let log = state.store.membership_statements(id, 0, u32::MAX).await?;
    let mut statements = log.iter().map(|b| MembershipStatement::decode(b).map_err(|_| corrupt()));
    let Some(first) = statements.next() else { return Ok(None) };
    let mut folded = MembershipState::create(&first?).map_err(|_| corrupt())?;
    for s in statements {
        folded.apply(&s?).map_err(|_| corrupt())?;
    }
    Ok(Some(folded))
}

/// Applies a membership statement signed by the caller's device: the
/// creation of a conversation (with the id the creator chose) or the next
/// change of one. The relay checks what members check — signature, chain,
/// roles — and applies it to its own member table in the same transaction
/// that keeps the statement.
pub async fn post_statement(state: &AppState, caller: &Caller, id: &[u8; 16], body: &[u8]) -> ApiResult<Conversation> {
    let s = caller.session;
    let bad = |e: CertError| ApiError::bad_request("bad_statement", e.to_string());
    let st = MembershipStatement::decode(body).map_err(bad)?;
    if st.conversation_id.as_bytes() != id {
        return Err(ApiError::bad_request("bad_statement", "the statement names another conversation than the URL"));
    }
    if st.network_id.as_bytes() != &s.network_id {
        return Err(ApiError::forbidden("wrong_network", "the statement is for another network"));
    }
    if st.author_user.as_bytes() != &s.user_id || st.author_device.as_bytes() != &s.device_id {
        return Err(ApiError::forbidden("not_author", "sign membership statements with this session's own device"));
    }
    st.verify(&super::keys::own_device(state, caller).await?).map_err(bad)?;
    let refused = |e: CertError| match e {
        CertError::MembershipGap { .. } | CertError::MembershipFork { .. } => ApiError::conflict(
            "stale_membership",
            format!("{e}; fetch the statements after the last one you applied and sign the next"),
        ),
        other => ApiError::forbidden("membership_refused", other.to_string()),
    };
    let me = s.user_id;
    match st.action {
        MembershipAction::Create(kind) => {
            if kind != ConversationKind::Notes {
                super::guests::refuse_guest(caller, "start conversations")?;
            }
            let created = MembershipState::create(&st).map_err(refused)?;
            if state.store.conversation(id).await?.is_some() {
                return Err(ApiError::conflict(
                    "conversation_exists",
                    "a conversation with this id exists; pick another random id",
                ));
            }
            let kind = kind_of(kind);
            if kind == Kind::Notes {
                // One signed note to self per account (an unsigned one from an
                // older client does not count: no v2 client can use it).
                for c in state.store.conversations_of(&me).await? {
                    let signed = !state.store.membership_statements(&c.id, 0, 1).await?.is_empty();
                    if c.kind == Kind::Notes && c.network_id == s.network_id && signed {
                        return Err(ApiError::conflict("notes_exist", "you already have a note to self; use it"));
                    }
                }
            }
            let others: Vec<[u8; 16]> = created.members.iter().map(|u| *u.as_bytes()).filter(|u| *u != me).collect();
            check_in_network(state, &s.network_id, &others).await?;
            let moderators: Vec<[u8; 16]> =
                created.moderators.iter().map(|u| *u.as_bytes()).filter(|u| *u != me).collect();
            super::guests::check_added(state, caller, &others, &moderators).await?;
            let members: Vec<([u8; 16], Role)> = created
                .members
                .iter()
                .map(|u| (*u.as_bytes(), if created.moderators.contains(u) { Role::Moderator } else { Role::Member }))
                .collect();
            state.store.create_conversation(id, &s.network_id, kind, &members, now_ms(), Some(body)).await?;
        }
        action => {
            if action != MembershipAction::Leave {
                super::guests::refuse_guest(caller, "change a conversation's members (only leave it)")?;
            }
            member_of(state, caller, id).await?;
            let mut folded = signed_state(state, id).await?.ok_or_else(|| {
                ApiError::conflict(
                    "unsigned_conversation",
                    "this conversation has no membership signed by its members; start a new one",
                )
            })?;
            if st.sequence > MAX_LOG as u64 {
                return Err(ApiError::conflict(
                    "membership_log_full",
                    "this conversation has had 10,000 membership changes; start a new one",
                ));
            }
            folded.apply(&st).map_err(refused)?;
            let users: Vec<[u8; 16]> = st.users.iter().map(|u| *u.as_bytes()).collect();
            let none = Vec::new();
            let (add, remove, promote, demote) = match action {
                MembershipAction::Add => (&users, &none, &none, &none),
                MembershipAction::Remove => (&none, &users, &none, &none),
                MembershipAction::Promote => (&none, &none, &users, &none),
                MembershipAction::Demote => (&none, &none, &none, &users),
                _ => (&none, &none, &none, &none),
            };
            let leaving = [me];
            let remove: &[[u8; 16]] = if action == MembershipAction::Leave { &leaving } else { remove };
            check_in_network(state, &s.network_id, add).await?;
            super::guests::check_added(state, caller, add, promote).await?;
            state.store.change_members(id, add, remove, promote, demote, Some((st.sequence, body))).await?;
        }
    }
    reloaded(state, id).await
}
