use super::{user_list, ContentError};
use crate::codec::{Reader, Writer};
use crate::ids::UserId;

/// Most users one control message may name.
pub const MAX_CONTROL_USERS: usize = 4096;
/// Longest conversation name, in bytes.
pub const MAX_CONVERSATION_NAME: usize = 256;
/// Longest safety number a verification names (digits and spaces).
pub const MAX_SAFETY_NUMBER: usize = 128;

/// Membership and room control, sent in-band so every member (and the
/// retention archive) has a signed record of who changed what.
///
/// Body: `action u8 | action body`; actions 1, 2, 4, 5 carry
/// `count u16 | user ids`, 6 a u16-prefixed name, 7 `ttl u32 | bor u32`.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Control {
    /// Users added to the conversation.
    MembersAdded(Vec<UserId>),
    /// Users removed from the conversation.
    MembersRemoved(Vec<UserId>),
    /// The sender left.
    Left,
    /// Users made moderators of a room.
    ModeratorsAdded(Vec<UserId>),
    /// Users no longer moderators.
    ModeratorsRemoved(Vec<UserId>),
    /// The conversation's new name.
    Renamed(String),
    /// New default timers for the conversation (seconds, 0 = off).
    DefaultTimers {
        /// Expiry from send.
        ttl_secs: u32,
        /// Burn after first read.
        burn_on_read_secs: u32,
    },
    /// The sender compared the safety number with `user` and marked their
    /// identity key verified (sent to their direct conversation, so the
    /// verification is on the record where retention is on).
    IdentityVerified {
        /// Whose identity was verified.
        user: UserId,
        /// The safety number compared (its digits).
        safety_number: String,
    },
    /// An action this version does not know.
    Unknown {
        /// The action number.
        action: u8,
        /// Its raw body.
        body: Vec<u8>,
    },
}

impl Control {
    pub(super) fn encode(&self, w: &mut Writer) {
        let users = |w: &mut Writer, action: u8, list: &[UserId]| {
            w.u8(action).u16(u16::try_from(list.len()).unwrap_or(u16::MAX));
            for u in list {
                w.raw(&u.0);
            }
        };
        match self {
            Control::MembersAdded(l) => users(w, 1, l),
            Control::MembersRemoved(l) => users(w, 2, l),
            Control::Left => {
                w.u8(3);
            }
            Control::ModeratorsAdded(l) => users(w, 4, l),
            Control::ModeratorsRemoved(l) => users(w, 5, l),
            Control::Renamed(name) => {
                w.u8(6).bytes16(name.as_bytes());
            }
            Control::DefaultTimers { ttl_secs, burn_on_read_secs } => {
                w.u8(7).u32(*ttl_secs).u32(*burn_on_read_secs);
            }
            Control::IdentityVerified { user, safety_number } => {
                w.u8(8).raw(&user.0).bytes16(safety_number.as_bytes());
            }
            Control::Unknown { action, body } => {
                w.u8(*action).raw(body);
            }
        }
    }

    pub(super) fn decode(r: &mut Reader<'_>) -> Result<Self, ContentError> {
        let action = r.u8("control action")?;
        Ok(match action {
            1 => Control::MembersAdded(user_list(r, "added members", MAX_CONTROL_USERS)?),
            2 => Control::MembersRemoved(user_list(r, "removed members", MAX_CONTROL_USERS)?),
            3 => Control::Left,
            4 => Control::ModeratorsAdded(user_list(r, "added moderators", MAX_CONTROL_USERS)?),
            5 => Control::ModeratorsRemoved(user_list(r, "removed moderators", MAX_CONTROL_USERS)?),
            6 => Control::Renamed(r.str16("conversation name", MAX_CONVERSATION_NAME)?.to_owned()),
            7 => Control::DefaultTimers {
                ttl_secs: r.u32("default ttl")?,
                burn_on_read_secs: r.u32("default burn-on-read")?,
            },
            8 => Control::IdentityVerified {
                user: UserId(r.array("verified user")?),
                safety_number: r.str16("safety number", MAX_SAFETY_NUMBER)?.to_owned(),
            },
            0 => return Err(ContentError::Invalid("control action 0 is reserved")),
            other => Control::Unknown { action: other, body: r.rest().to_vec() },
        })
    }

    pub(super) fn validate(&self) -> Result<(), ContentError> {
        match self {
            Control::MembersAdded(l)
            | Control::MembersRemoved(l)
            | Control::ModeratorsAdded(l)
            | Control::ModeratorsRemoved(l)
                if l.is_empty() || l.len() > MAX_CONTROL_USERS =>
            {
                return Err(ContentError::Invalid("a membership change names 1 to 4096 users"));
            }
            Control::Renamed(n) if n.len() > MAX_CONVERSATION_NAME => {
                return Err(ContentError::Invalid("conversation name longer than 256 bytes"));
            }
            Control::IdentityVerified { safety_number, .. }
                if safety_number.is_empty()
                    || safety_number.len() > MAX_SAFETY_NUMBER
                    || !safety_number.bytes().all(|b| b.is_ascii_digit() || b == b' ') =>
            {
                return Err(ContentError::Invalid("a safety number is up to 128 digits and spaces"));
            }
            Control::Unknown { action: 0..=8, .. } => {
                return Err(ContentError::Invalid("unknown control action uses a known action number"));
            }
            _ => {}
        }
        Ok(())
    }
}

/// Names and bodies are user content: `Debug` shows only the action and counts.
impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Control::MembersAdded(l) => write!(f, "MembersAdded({} users)", l.len()),
            Control::MembersRemoved(l) => write!(f, "MembersRemoved({} users)", l.len()),
            Control::Left => f.write_str("Left"),
            Control::ModeratorsAdded(l) => write!(f, "ModeratorsAdded({} users)", l.len()),
            Control::ModeratorsRemoved(l) => write!(f, "ModeratorsRemoved({} users)", l.len()),
            Control::Renamed(n) => write!(f, "Renamed({} bytes)", n.len()),
            Control::DefaultTimers { ttl_secs, burn_on_read_secs } => {
                write!(f, "DefaultTimers {{ ttl_secs: {ttl_secs}, burn_on_read_secs: {burn_on_read_secs} }}")
            }
            Control::IdentityVerified { .. } => f.write_str("IdentityVerified"),
            Control::Unknown { action, body } => write!(f, "Unknown(action {action}, {} bytes)", body.len()),
        }
    }
}
