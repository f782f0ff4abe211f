//! Signed membership statements (PROTOCOL.md §3.4): a conversation's member
//! set is what its members signed — its creation and every addition,
//! removal, departure and moderator change — never what the relay says.
//!
//! Statements form a hash chain per conversation like device lists do: the
//! statement with sequence number n + 1 names the SHA-256 of statement n.
//! Members fold the chain into a [`MembershipState`] and encrypt to its
//! members only; the header commits to `(sequence, digest)` of the last
//! statement applied.

use std::collections::BTreeSet;

use super::{CertError, VerifiedDevice};
use crate::codec::{Reader, Writer};
use crate::envelope::MembershipCommitment;
use crate::ids::{ConversationId, DeviceId, NetworkId, UserId};
use crate::keys::{signing_input, Signature, SigningKey};
use crate::suite::{check_version, label, Suite, PROTOCOL_VERSION};

/// Most users one statement names (a conversation may grow past it in steps).
pub const MAX_STATEMENT_USERS: usize = 1024;

/// What kind of conversation a creation statement makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConversationKind {
    /// Two people; members never change.
    Direct,
    /// Any member adds and removes.
    Group,
    /// Moderators add, remove and promote; anyone may leave.
    Room,
    /// One person's devices only.
    Notes,
}

impl ConversationKind {
    /// The wire byte.
    pub fn code(self) -> u8 {
        match self {
            Self::Direct => 1,
            Self::Group => 2,
            Self::Room => 3,
            Self::Notes => 4,
        }
    }

    /// From the wire byte.
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            1 => Self::Direct,
            2 => Self::Group,
            3 => Self::Room,
            4 => Self::Notes,
            _ => return None,
        })
    }

    /// The name the relay's API uses (`direct`, `group`, `room`, `notes`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Group => "group",
            Self::Room => "room",
            Self::Notes => "notes",
        }
    }

    /// From the API name.
    pub fn from_name(name: &str) -> Option<Self> {
        [Self::Direct, Self::Group, Self::Room, Self::Notes].into_iter().find(|k| k.name() == name)
    }
}

/// What a statement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MembershipAction {
    /// Makes the conversation with `users` (the author among them).
    Create(ConversationKind),
    /// Adds `users`.
    Add,
    /// Removes `users`.
    Remove,
    /// The author leaves (`users` empty).
    Leave,
    /// Makes members moderators (rooms).
    Promote,
    /// Makes moderators plain members (rooms).
    Demote,
}

impl MembershipAction {
    fn code(self) -> (u8, u8) {
        match self {
            Self::Create(kind) => (1, kind.code()),
            Self::Add => (2, 0),
            Self::Remove => (3, 0),
            Self::Leave => (4, 0),
            Self::Promote => (5, 0),
            Self::Demote => (6, 0),
        }
    }

    fn from_code(action: u8, kind: u8) -> Result<Self, CertError> {
        let bad = CertError::Invalid("unknown membership action or conversation kind");
        Ok(match (action, kind) {
            (1, k) => Self::Create(ConversationKind::from_code(k).ok_or(bad)?),
            (2, 0) => Self::Add,
            (3, 0) => Self::Remove,
            (4, 0) => Self::Leave,
            (5, 0) => Self::Promote,
            (6, 0) => Self::Demote,
            _ => return Err(bad),
        })
    }
}

/// One signed change of a conversation's membership.
///
/// Encoding: `version u8 | suite u16 | network 16 | conversation 16 |
/// sequence u64 | previous 32 | author user 16 | author device 16 |
/// issued_at u64 | action u8 | kind u8 | count u16 | count × user 16 (strictly
/// ascending) | signature 64` by the author device's key over
/// `"strongroom/v2/membership" 0x00 | everything before it`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipStatement {
    /// The conversation's (host) network.
    pub network_id: NetworkId,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// 1 for the creation, then exactly one more per statement.
    pub sequence: u64,
    /// SHA-256 of the statement before; zeros for the creation.
    pub previous: [u8; 32],
    /// Who signed it.
    pub author_user: UserId,
    /// With which device.
    pub author_device: DeviceId,
    /// When (ms), as the author's clock says.
    pub issued_at: u64,
    /// What it does.
    pub action: MembershipAction,
    /// Whom it names, ascending.
    pub users: Vec<UserId>,
    signature: Signature,
}

/// A conversation's membership, folded from its statements.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipState {
    /// The conversation's network.
    pub network_id: NetworkId,
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Its kind, from the creation.
    pub kind: ConversationKind,
    /// Members now.
    pub members: BTreeSet<UserId>,
    /// Moderators now (rooms; the creator at first).
    pub moderators: BTreeSet<UserId>,
    /// The last statement applied: its sequence number and SHA-256.
    pub commitment: MembershipCommitment,
}

impl MembershipStatement {
    /// The id of the conversation a creation makes: the first 16 bytes of
    /// `SHA-256("strongroom/v2/conversation-id" 0x00 | the creation's body
    /// with the conversation id as 16 zero bytes)`. Binding the id to its
    /// creation means a relay cannot serve another creation, by anyone,
    /// under an existing conversation's id.
    pub fn creation_id(
        network_id: NetworkId,
        author: (UserId, DeviceId),
        issued_at: u64,
        kind: ConversationKind,
        mut users: Vec<UserId>,
    ) -> ConversationId {
        users.sort();
        let s = Self {
            network_id,
            conversation_id: ConversationId([0; 16]),
            sequence: 1,
            previous: [0; 32],
            author_user: author.0,
            author_device: author.1,
            issued_at,
            action: MembershipAction::Create(kind),
            users,
            signature: Signature([0; 64]),
        };
        s.derived_id()
    }

    fn derived_id(&self) -> ConversationId {
        let zeroed = Self { conversation_id: ConversationId([0; 16]), ..self.clone() };
        let hash = crate::primitives::sha256(&[label::CONVERSATION_ID, &[0], &zeroed.body()]);
        let mut id = [0u8; 16];
        id.copy_from_slice(hash.get(..16).unwrap_or(&[0; 16]));
        ConversationId(id)
    }

    /// Signs a statement with the author device's key. Sorts `users` and
    /// refuses duplicates. A creation must use the id
    /// [`MembershipStatement::creation_id`] gives.
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        device_key: &SigningKey,
        network_id: NetworkId,
        conversation_id: ConversationId,
        after: Option<&MembershipCommitment>,
        author: (UserId, DeviceId),
        issued_at: u64,
        action: MembershipAction,
        mut users: Vec<UserId>,
    ) -> Result<Self, CertError> {
        users.sort();
        check_users(&users)?;
        let (sequence, previous) = match after {
            None => (1, [0; 32]),
            Some(c) => (c.version.checked_add(1).ok_or(CertError::Invalid("membership sequence exhausted"))?, c.hash),
        };
        let mut s = Self {
            network_id,
            conversation_id,
            sequence,
            previous,
            author_user: author.0,
            author_device: author.1,
            issued_at,
            action,
            users,
            signature: Signature([0; 64]),
        };
        check_chain_start(&s)?;
        if matches!(s.action, MembershipAction::Create(_)) && s.derived_id() != s.conversation_id {
            return Err(CertError::Invalid("a conversation's id is derived from its creation (creation_id)"));
        }
        s.signature = device_key.sign(&signing_input(label::MEMBERSHIP, &s.body()));
        Ok(s)
    }

    fn body(&self) -> Vec<u8> {
        let (action, kind) = self.action.code();
        let mut w = Writer::with_capacity(150 + self.users.len() * 16);
        w.u8(PROTOCOL_VERSION)
            .u16(Suite::Curve25519Aes256Gcm.id())
            .raw(&self.network_id.0)
            .raw(&self.conversation_id.0)
            .u64(self.sequence)
            .raw(&self.previous)
            .raw(&self.author_user.0)
            .raw(&self.author_device.0)
            .u64(self.issued_at)
            .u8(action)
            .u8(kind)
            .u16(u16::try_from(self.users.len()).unwrap_or(u16::MAX));
        for u in &self.users {
            w.raw(&u.0);
        }
        w.finish()
    }

    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.body();
        v.extend_from_slice(&self.signature.0);
        v
    }

    /// SHA-256 of the encoding: what the next statement names and the header
    /// commits to.
    pub fn digest(&self) -> [u8; 32] {
        crate::primitives::sha256(&[&self.encode()])
    }

    /// Parses the wire encoding (does not check the signature).
    pub fn decode(bytes: &[u8]) -> Result<Self, CertError> {
        let e = CertError::decode("membership statement");
        let mut r = Reader::new(bytes);
        check_version(r.u8("version").map_err(&e)?)?;
        Suite::from_id(r.u16("suite").map_err(&e)?)?;
        let network_id = NetworkId(r.array("network id").map_err(&e)?);
        let conversation_id = ConversationId(r.array("conversation id").map_err(&e)?);
        let sequence = r.u64("sequence").map_err(&e)?;
        let previous = r.array("previous statement digest").map_err(&e)?;
        let author_user = UserId(r.array("author user").map_err(&e)?);
        let author_device = DeviceId(r.array("author device").map_err(&e)?);
        let issued_at = r.u64("issued_at").map_err(&e)?;
        let action = r.u8("action").map_err(&e)?;
        let kind = r.u8("kind").map_err(&e)?;
        let n = r.count16("user count", MAX_STATEMENT_USERS, 16).map_err(&e)?;
        let mut users = Vec::with_capacity(n);
        for _ in 0..n {
            users.push(UserId(r.array("user id").map_err(&e)?));
        }
        let signature = Signature(r.array("signature").map_err(&e)?);
        r.finish("membership statement").map_err(&e)?;
        let action = MembershipAction::from_code(action, kind)?;
        check_users(&users)?;
        let s = Self {
            network_id,
            conversation_id,
            sequence,
            previous,
            author_user,
            author_device,
            issued_at,
            action,
            users,
            signature,
        };
        check_chain_start(&s)?;
        Ok(s)
    }

    /// Checks the signature under the author's device, taken from the
    /// author's verified device list (an unknown or revoked device was
    /// already refused there).
    pub fn verify(&self, author: &VerifiedDevice) -> Result<(), CertError> {
        if author.network_id() != self.network_id {
            return Err(CertError::WrongNetwork { expected: author.network_id(), got: self.network_id });
        }
        if author.user_id() != self.author_user {
            return Err(CertError::WrongUser { expected: author.user_id(), got: self.author_user });
        }
        if author.device_id() != self.author_device {
            return Err(CertError::WrongDevice { expected: author.device_id(), got: self.author_device });
        }
        author
            .signing_key()
            .verify(&signing_input(label::MEMBERSHIP, &self.body()), &self.signature)
            .map_err(|_| CertError::BadSignature { what: "membership statement" })
    }
}

fn check_users(users: &[UserId]) -> Result<(), CertError> {
    if users.len() > MAX_STATEMENT_USERS {
        return Err(CertError::Invalid("a membership statement names at most 1024 users"));
    }
    for pair in users.windows(2) {
        if let [a, b] = pair {
            if a >= b {
                return Err(CertError::Invalid("users in a membership statement must be ascending and distinct"));
            }
        }
    }
    Ok(())
}

fn check_chain_start(s: &MembershipStatement) -> Result<(), CertError> {
    let zero = s.previous.iter().all(|b| *b == 0);
    let create = matches!(s.action, MembershipAction::Create(_));
    match (s.sequence, zero, create) {
        (1, true, true) => Ok(()),
        (1, _, _) => {
            Err(CertError::Invalid("membership statement 1 creates the conversation and names no previous one"))
        }
        (0, _, _) => Err(CertError::Invalid("membership sequence 0 does not exist")),
        (_, false, false) => Ok(()),
        _ => Err(CertError::Invalid("only statement 1 creates, and every later one names the statement before")),
    }
}

fn refused(why: &'static str) -> CertError {
    CertError::MembershipRefused(why)
}

impl MembershipState {
    /// The conversation as its creation makes it. The statement's signature
    /// must already be verified ([`MembershipStatement::verify`]).
    pub fn create(s: &MembershipStatement) -> Result<Self, CertError> {
        let MembershipAction::Create(kind) = s.action else {
            return Err(CertError::MembershipGap { expected: 1, got: s.sequence });
        };
        if s.sequence != 1 {
            return Err(CertError::MembershipGap { expected: 1, got: s.sequence });
        }
        if s.derived_id() != s.conversation_id {
            return Err(refused("the conversation id is not the one its creation derives"));
        }
        let members: BTreeSet<UserId> = s.users.iter().copied().collect();
        if !members.contains(&s.author_user) {
            return Err(refused("the creator must be a member"));
        }
        match kind {
            ConversationKind::Direct if members.len() != 2 => {
                return Err(refused("a direct conversation has exactly two members"))
            }
            ConversationKind::Notes if members.len() != 1 => return Err(refused("a note to self has one member")),
            _ => {}
        }
        let moderators = if kind == ConversationKind::Room { [s.author_user].into() } else { BTreeSet::new() };
        Ok(Self {
            network_id: s.network_id,
            conversation_id: s.conversation_id,
            kind,
            members,
            moderators,
            commitment: MembershipCommitment { version: 1, hash: s.digest() },
        })
    }

    /// Applies the next statement (signature already verified): it must
    /// follow the last one applied, and its author must be allowed to make
    /// the change in this kind of conversation.
    pub fn apply(&mut self, s: &MembershipStatement) -> Result<(), CertError> {
        if s.network_id != self.network_id {
            return Err(CertError::WrongNetwork { expected: self.network_id, got: s.network_id });
        }
        if s.conversation_id != self.conversation_id {
            return Err(refused("the statement is for another conversation"));
        }
        let expected = self.commitment.version.saturating_add(1);
        if s.sequence != expected {
            return Err(CertError::MembershipGap { expected, got: s.sequence });
        }
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&s.previous[..], &self.commitment.hash[..])) {
            return Err(CertError::MembershipFork { sequence: s.sequence });
        }
        let author = s.author_user;
        if !self.members.contains(&author) {
            return Err(refused("the author is not a member"));
        }
        let fixed = matches!(self.kind, ConversationKind::Direct | ConversationKind::Notes);
        let moderator = self.moderators.contains(&author);
        let room = self.kind == ConversationKind::Room;
        let all_members = s.users.iter().all(|u| self.members.contains(u));
        match s.action {
            MembershipAction::Create(_) => return Err(refused("a conversation is created once")),
            _ if fixed => return Err(refused("a direct conversation or note to self never changes members")),
            MembershipAction::Leave => {
                if !s.users.is_empty() {
                    return Err(refused("leaving names nobody"));
                }
                self.members.remove(&author);
                self.moderators.remove(&author);
            }
            _ if s.users.is_empty() => return Err(refused("the statement names nobody")),
            MembershipAction::Add => {
                if room && !moderator {
                    return Err(refused("only a room's moderators add members"));
                }
                if s.users.iter().any(|u| self.members.contains(u)) {
                    return Err(refused("an added user is already a member"));
                }
                self.members.extend(s.users.iter().copied());
            }
            MembershipAction::Remove => {
                if room && !moderator {
                    return Err(refused("only a room's moderators remove members"));
                }
                if !all_members {
                    return Err(refused("a removed user is not a member"));
                }
                for u in &s.users {
                    self.members.remove(u);
                    self.moderators.remove(u);
                }
            }
            MembershipAction::Promote | MembershipAction::Demote => {
                if !room || !moderator {
                    return Err(refused("only a room's moderators change moderators"));
                }
                if !all_members {
                    return Err(refused("only members can be promoted or demoted"));
                }
                for u in &s.users {
                    if s.action == MembershipAction::Promote {
                        self.moderators.insert(*u);
                    } else {
                        self.moderators.remove(u);
                    }
                }
            }
        }
        self.commitment = MembershipCommitment { version: s.sequence, hash: s.digest() };
        Ok(())
    }
}
