//! Who a message was addressed to, as its sender committed in the signed
//! header: the conversation's signed membership statements (PROTOCOL.md
//! §3.4) are folded in order, each member set kept under the commitment
//! (sequence number and SHA-256) that names it, and every statement is
//! archived as a `membership` record. A message's recipients are the set its
//! header commits to, whatever the relay lists when it is archived.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use strongroom_crypto::certs::{MembershipAction, MembershipState, MembershipStatement};
use strongroom_crypto::envelope::MembershipCommitment;
use strongroom_crypto::ids::{ConversationId, UserId};
use strongroom_wire::MembershipHistory;

use crate::record::Record;
use crate::{hex, now_ms};

/// Most statements followed for one conversation in one look-up.
const MAX_FOLLOWED: usize = 65_536;

/// Member sets kept per conversation (the newest): a relay cannot make the
/// service hold every set of a long history in memory, and a message
/// committing to a set older than these is archived with the relay's list,
/// flagged.
const KEPT_SETS: usize = 1024;

/// One conversation's membership as folded so far.
#[derive(Default)]
pub(crate) struct Folded {
    /// The state after the last statement applied.
    state: Option<MembershipState>,
    /// Members (and the statement's SHA-256) after each statement, by sequence.
    sets: BTreeMap<u64, ([u8; 32], BTreeSet<UserId>)>,
    /// Why folding stopped (a statement that does not verify or apply); no
    /// later statement is used.
    stuck: Option<String>,
    /// Statements by since-revoked devices folded but not yet vouched for
    /// by a later one from a current device, with the state after each:
    /// carried from one page to the next.
    pending: Vec<(MembershipStatement, MembershipState, bool)>,
}

/// Most unvouched statements carried (each holds a member set).
const MAX_PENDING: usize = 1024;

/// The member sets of every conversation seen.
#[derive(Default)]
pub(crate) struct Memberships {
    conversations: HashMap<ConversationId, Folded>,
}

/// A statement's signature check.
pub(crate) enum Check {
    /// Signed by a current device of its author.
    Current,
    /// Signed by a device its author has since revoked: it counts once a
    /// later statement by a current device vouches for it.
    Revoked,
    /// Refused, with why.
    Refused(String),
}

/// A member set looked up by commitment.
pub(crate) enum Addressees {
    /// The set the header commits to.
    Committed(BTreeSet<UserId>),
    /// No signed set matches: why (the relay's list is used, flagged).
    Unknown(String),
}

impl Memberships {
    /// The member set `commitment` names, if folded.
    pub(crate) fn lookup(&self, conversation: ConversationId, commitment: &MembershipCommitment) -> Addressees {
        if commitment.version == 0 {
            return Addressees::Unknown("the sender committed to no signed member set".into());
        }
        let folded = self.conversations.get(&conversation);
        match folded.and_then(|f| f.sets.get(&commitment.version)) {
            Some((hash, members)) if *hash == commitment.hash => Addressees::Committed(members.clone()),
            Some(_) => Addressees::Unknown(format!(
                "the sender committed to membership statement {} with another digest than the one the relay serves",
                commitment.version
            )),
            None => Addressees::Unknown(match folded.and_then(|f| f.stuck.clone()) {
                Some(why) => why,
                None if folded.and_then(|f| f.sets.first_key_value()).is_some_and(|(v, _)| commitment.version < *v) => {
                    format!(
                        "the sender committed to membership statement {}, older than the {KEPT_SETS} kept",
                        commitment.version
                    )
                }
                None => format!("membership statement {} is not available from the relay", commitment.version),
            }),
        }
    }

    /// Whether statements up to `version` are folded (or folding is stuck).
    pub(crate) fn has(&self, conversation: ConversationId, version: u64) -> bool {
        self.conversations
            .get(&conversation)
            .is_some_and(|f| f.stuck.is_some() || f.sets.last_key_value().is_some_and(|(v, _)| *v >= version))
    }

    /// Stops folding `conversation` for good, with why.
    pub(crate) fn stop(&mut self, conversation: ConversationId, why: String) {
        self.conversations.entry(conversation).or_default().stuck.get_or_insert(why);
    }

    /// The last statement folded in `conversation` (0: none).
    pub(crate) fn folded_to(&self, conversation: ConversationId) -> u64 {
        self.conversations.get(&conversation).and_then(|f| f.sets.last_key_value()).map_or(0, |(v, _)| *v)
    }

    /// Applies statements fetched after [`Memberships::folded_to`], each
    /// with its signature check, in order; each must follow the last. A
    /// statement signed by a device its owner has since revoked counts only
    /// once a later statement by a current device follows it (that member
    /// folded it and vouches for it, as clients require); unvouched ones at
    /// the end wait. The first refused stops folding for good, with why.
    /// Returns the statements applied (and whether a since-revoked device
    /// signed each), for the archive.
    pub(crate) fn apply(
        &mut self,
        conversation: ConversationId,
        statements: Vec<(MembershipStatement, Check)>,
    ) -> Vec<(MembershipStatement, bool, BTreeSet<UserId>)> {
        let folded = self.conversations.entry(conversation).or_default();
        let mut applied = Vec::new();
        let mut pending = std::mem::take(&mut folded.pending);
        let mut tip = pending.last().map(|(_, st, _)| st.clone()).or_else(|| folded.state.clone());
        for (s, check) in statements {
            if folded.stuck.is_some() {
                break;
            }
            let revoked = match check {
                Check::Current => false,
                Check::Revoked => true,
                Check::Refused(why) => {
                    folded.stuck = Some(format!(
                        "membership statement {} of conversation {conversation} was refused: {why}",
                        s.sequence
                    ));
                    break;
                }
            };
            let next = match tip.clone() {
                None => MembershipState::create(&s),
                Some(mut st) => st.apply(&s).map(|()| st),
            };
            let state = match next {
                Ok(state) => state,
                Err(e) => {
                    folded.stuck = Some(format!(
                        "membership statement {} of conversation {conversation} was refused: {e}",
                        s.sequence
                    ));
                    break;
                }
            };
            if pending.len() >= MAX_PENDING {
                folded.stuck = Some(format!(
                    "conversation {conversation}: more than {MAX_PENDING} membership statements by revoked devices with none by a current device after them"
                ));
                break;
            }
            tip = Some(state.clone());
            pending.push((s, state, revoked));
            if !revoked {
                for (s, state, revoked) in pending.drain(..) {
                    folded.sets.insert(state.commitment.version, (state.commitment.hash, state.members.clone()));
                    // Bounded: a message commits to a recent set; older ones go.
                    while folded.sets.len() > KEPT_SETS {
                        folded.sets.pop_first();
                    }
                    let members = state.members.clone();
                    folded.state = Some(state);
                    applied.push((s, revoked, members));
                }
            }
        }
        if folded.stuck.is_none() {
            folded.pending = pending;
        }
        applied
    }

    /// Where the next page starts: after the last statement folded,
    /// unvouched ones included.
    pub(crate) fn fetch_after(&self, conversation: ConversationId) -> u64 {
        let folded = self.conversations.get(&conversation);
        folded
            .and_then(|f| f.pending.last())
            .map(|(s, _, _)| s.sequence)
            .unwrap_or_else(|| self.folded_to(conversation))
    }
}

/// Decodes a page of statements from the relay; a malformed one stops the
/// page there (what came before is still used).
pub(crate) fn decode_page(page: &MembershipHistory) -> (Vec<MembershipStatement>, Option<String>) {
    let mut out = Vec::with_capacity(page.statements.len());
    for raw in &page.statements {
        match MembershipStatement::decode(&raw.0) {
            Ok(s) => out.push(s),
            Err(e) => return (out, Some(format!("a membership statement from the relay is malformed: {e}"))),
        }
    }
    (out, None)
}

/// Whether another page may be fetched.
pub(crate) fn may_follow(folded: u64) -> bool {
    (folded as usize) < MAX_FOLLOWED
}

/// The archive record of an applied statement: who changed what, signed by
/// which device, and the members after it. It is known by the statement's
/// SHA-256 (`statement_sha256`), never by a message id: those are chosen by
/// senders, who could otherwise take a statement's id first.
pub(crate) fn record(s: &MembershipStatement, members_after: &BTreeSet<UserId>, revoked_author: bool) -> Record {
    let digest = s.digest();
    let action = match s.action {
        MembershipAction::Create(_) => "created",
        MembershipAction::Add => "members_added",
        MembershipAction::Remove => "members_removed",
        MembershipAction::Leave => "left",
        MembershipAction::Promote => "moderators_added",
        MembershipAction::Demote => "moderators_removed",
    };
    let ids = |v: &mut dyn Iterator<Item = &UserId>| v.map(|u| u.to_string()).collect::<Vec<_>>();
    let mut control = serde_json::json!({
        "action": action,
        "users": ids(&mut s.users.iter()),
        "sequence": s.sequence,
        "statement_sha256": hex(&digest),
        "members_after": ids(&mut members_after.iter()),
    });
    if revoked_author {
        // Signed before its device was revoked; a later statement by a current device vouched for it.
        if let Some(map) = control.as_object_mut() {
            map.insert("author_device_revoked".into(), true.into());
        }
    }
    Record {
        kind: "membership".into(),
        archived_at: now_ms(),
        conversation_id: Some(s.conversation_id.to_string()),
        conversation_kind: match s.action {
            MembershipAction::Create(kind) => Some(kind.name().to_owned()),
            _ => None,
        },
        sent_at: Some(s.issued_at),
        control: Some(control),
        ..Record::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::OsRng;
    use strongroom_crypto::certs::ConversationKind;
    use strongroom_crypto::ids::{DeviceId, NetworkId};
    use strongroom_crypto::keys::SigningKey;

    #[test]
    fn a_message_gets_the_member_set_its_header_commits_to_not_the_latest() {
        let key = SigningKey::generate(&mut OsRng);
        let net = NetworkId::from_bytes([1; 16]);
        let (alice, bob, carol) =
            (UserId::from_bytes([1; 16]), UserId::from_bytes([2; 16]), UserId::from_bytes([3; 16]));
        let dev = DeviceId::from_bytes([9; 16]);
        let author = (alice, dev);
        let members = vec![alice, bob, carol];
        let conv = MembershipStatement::creation_id(net, author, 1, ConversationKind::Group, members.clone());
        let kind = MembershipAction::Create(ConversationKind::Group);
        let create = MembershipStatement::sign(&key, net, conv, None, author, 1, kind, members).unwrap();
        let after = MembershipCommitment { version: 1, hash: create.digest() };
        let remove =
            MembershipStatement::sign(&key, net, conv, Some(&after), author, 2, MembershipAction::Remove, vec![carol])
                .unwrap();
        let mut m = Memberships::default();
        let applied = m.apply(conv, vec![(create.clone(), Check::Current), (remove.clone(), Check::Current)]);
        assert_eq!(applied.len(), 2);
        let at = |s: &MembershipStatement| MembershipCommitment { version: s.sequence, hash: s.digest() };
        match m.lookup(conv, &at(&create)) {
            Addressees::Committed(set) => assert!(set.contains(&carol), "sent before carol was removed"),
            Addressees::Unknown(why) => panic!("{why}"),
        }
        match m.lookup(conv, &at(&remove)) {
            Addressees::Committed(set) => assert!(!set.contains(&carol)),
            Addressees::Unknown(why) => panic!("{why}"),
        }
        // Another digest under a known number, no commitment, or a number never served.
        let forged = MembershipCommitment { version: 1, hash: [7; 32] };
        assert!(matches!(m.lookup(conv, &forged), Addressees::Unknown(why) if why.contains("another digest")));
        assert!(matches!(m.lookup(conv, &MembershipCommitment::default()), Addressees::Unknown(_)));
        assert!(matches!(m.lookup(conv, &MembershipCommitment { version: 9, hash: [0; 32] }), Addressees::Unknown(_)));
        // A statement that does not verify stops folding there, for good.
        let mut m = Memberships::default();
        let applied = m.apply(
            conv,
            vec![(create.clone(), Check::Current), (remove.clone(), Check::Refused("bad signature".into()))],
        );
        assert_eq!(applied.len(), 1);
        assert!(m.has(conv, 5), "stuck: no point asking again");
        assert!(matches!(m.lookup(conv, &at(&remove)), Addressees::Unknown(why) if why.contains("bad signature")));
        assert_eq!(record(&create, &[alice, bob, carol].into(), false).kind, "membership");
        // Signed by a since-revoked device: waits until a current one vouches.
        let mut m = Memberships::default();
        let applied = m.apply(conv, vec![(create.clone(), Check::Current), (remove.clone(), Check::Revoked)]);
        assert_eq!(applied.len(), 1, "unvouched at the tip: not applied");
        assert!(!m.has(conv, 2) && m.folded_to(conv) == 1, "asked again later");
        let after = MembershipCommitment { version: 2, hash: remove.digest() };
        let add =
            MembershipStatement::sign(&key, net, conv, Some(&after), author, 3, MembershipAction::Add, vec![carol])
                .unwrap();
        assert_eq!(m.fetch_after(conv), 2, "the unvouched one is carried, not fetched again");
        let applied = m.apply(conv, vec![(add, Check::Current)]);
        assert_eq!(applied.iter().map(|(s, r, _)| (s.sequence, *r)).collect::<Vec<_>>(), [(2, true), (3, false)]);
        assert!(applied[0].2.len() == 2 && applied[1].2.contains(&carol), "the members after each statement");
        assert!(matches!(m.lookup(conv, &at(&remove)), Addressees::Committed(set) if !set.contains(&carol)));
        let r = record(&create, &BTreeSet::new(), true);
        assert_eq!(r.control.as_ref().unwrap()["author_device_revoked"], true);
        assert_eq!(r.message_id, None, "no message id a sender could take first");
        assert_eq!(r.statement(), Some(create.digest()));
    }
}
