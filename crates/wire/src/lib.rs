//! # strongroom-wire
//!
//! The JSON request and response types of the relay's HTTP and WebSocket API,
//! shared by the server and clients. Types only, no logic. Binary values
//! (envelopes, keys, signed statements) travel as standard base64 in
//! [`B64`]; identifiers as 32 lower-case hex digits.
//!
//! Envelopes are posted as raw bytes (`application/octet-stream`) and
//! delivered base64 in JSON, in the delivered form of `docs/PROTOCOL.md`.

mod address;
#[macro_use]
mod by_name;
pub mod admin;
mod b64;
mod invite;
pub mod time;
mod ws_push;
mod ws_send;

pub use address::DeviceAddress;
pub use admin::*;
pub use b64::B64;
pub use invite::Invite;
pub use strongroom_crypto::ids::{BlobId, ConversationId, DeviceId, MessageId, NetworkId, UserId};
pub use ws_push::{PushFrameError, PUSH_KIND};
pub use ws_send::{SendFrame, SendFrameError, SEND_KIND, SEND_OVERHEAD};

use serde::{Deserialize, Serialize};

/// Every error response body.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    /// Stable machine-readable code, e.g. `recipient_mismatch`.
    pub error: String,
    /// What was wrong and what to do.
    pub message: String,
    /// For `recipient_mismatch`: devices the envelope lacks (`user:device` hex).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<DeviceAddress>,
    /// For `recipient_mismatch`: devices the envelope has but must not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra: Vec<DeviceAddress>,
}

/// `POST /v1/admin/networks` (authorised by the bootstrap secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateNetwork {
    /// Display name.
    pub name: String,
    /// Network id chosen by the administrator's CLI (hex).
    pub network_id: NetworkId,
    /// The network public key (Ed25519, 32 bytes).
    pub network_public: B64,
    /// The first network policy, signed by the network key.
    pub policy: B64,
}

/// Response to [`CreateNetwork`] and to invite creation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InviteCreated {
    /// The invite code to hand to the person (carries server URL, network id,
    /// network key fingerprint and a one-time secret).
    pub invite: String,
    /// When it stops working (ms since the Unix epoch).
    pub expires_at: u64,
}

/// `GET /v1/networks/{id}`: what a new client needs to pin the network key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// Network id (hex).
    pub network_id: NetworkId,
    /// Display name.
    pub name: String,
    /// The network's Ed25519 public key; its fingerprint must match the invite's.
    pub network_public: B64,
}

/// `GET /v1/users?username=…` or `?id=…`: a user of the caller's network.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UserInfo {
    /// User id (hex).
    pub user_id: UserId,
    /// Username.
    pub username: String,
    /// A guest: someone from outside the organisation, with a limited
    /// account (clients show a badge).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guest: bool,
    /// A guest whose access expired after inactivity: clients stop
    /// encrypting to them and remove them from conversations.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
}

/// `POST /v1/guests/invites`: a member whose security group allows guests
/// invites one (the code is passed on by hand; no email is sent).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateGuestInvite {
    /// Lifetime in seconds (default 7 days, at most 90).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// `POST /v1/invites` (network administrators).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateInvite {
    /// Whether the new account is an administrator.
    #[serde(default)]
    pub admin: bool,
    /// Lifetime in seconds (default 7 days).
    #[serde(default)]
    pub ttl_secs: Option<u64>,
}

/// `POST /v1/register`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Register {
    /// The invite code.
    pub invite: String,
    /// Chosen username (unique in the network).
    pub username: String,
    /// Chosen password.
    pub password: String,
}

/// Response to [`Register`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registered {
    /// The new user id (hex).
    pub user_id: UserId,
    /// The network id (hex).
    pub network_id: NetworkId,
}

/// `POST /v1/login`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Login {
    /// Network id (hex).
    pub network_id: NetworkId,
    /// Username.
    pub username: String,
    /// Password.
    pub password: String,
    /// The device this session is bound to (hex; chosen by the device).
    pub device_id: DeviceId,
}

/// Response to [`Login`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// Bearer token for `Authorization: Bearer …`.
    pub token: String,
    /// The user (hex).
    pub user_id: UserId,
    /// Whether the user administers the network.
    pub admin: bool,
}

/// `POST /v1/password`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangePassword {
    /// Current password.
    pub old_password: String,
    /// New password.
    pub new_password: String,
}

/// `PUT /v1/keys/prekeys`: signed pre-keys of the caller's device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UploadPreKeys {
    /// Encoded signed pre-keys (medium-term and one-time).
    pub prekeys: Vec<B64>,
}

/// `GET /v1/keys/{user}`: a user's published keys.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserKeys {
    /// The user (hex).
    pub user_id: UserId,
    /// The current signed device list.
    pub device_list: B64,
    /// One-time pre-keys left, per device (for topping up).
    pub one_time_remaining: Vec<DeviceCount>,
    /// Devices an administrator revoked or wiped (hex): clients stop
    /// encrypting to them even while the user's signed list still names them.
    #[serde(default)]
    pub revoked_devices: Vec<DeviceId>,
}

/// `GET /v1/keys/{user}/history?after=N`: the signed device lists after
/// version N, oldest first (at most [`MAX_LIST_HISTORY`]; ask again after
/// the last for more). A peer that saw version N follows the chain to the
/// current list (PROTOCOL.md §3.2).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceListHistory {
    /// Encoded device lists, ascending by version.
    pub lists: Vec<B64>,
}

/// Most lists in one [`DeviceListHistory`] answer.
pub const MAX_LIST_HISTORY: u32 = 64;

/// The header naming a version of a user's security-group settings: the
/// relay sends it with `GET /v1/me/policy`; a client repeats it on
/// `POST /v1/messages`, and the relay refuses the send (409
/// `settings_changed`) if the settings changed since.
pub const SETTINGS_TAG_HEADER: &str = "strongroom-settings-tag";

/// A count per device.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceCount {
    /// Device (hex).
    pub device_id: DeviceId,
    /// Count.
    pub count: u64,
}

/// `POST /v1/devices/link` (the new device) and one entry of
/// `GET /v1/devices/link` (the user's existing devices).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkRequest {
    /// The new device (hex): set by the server from the session when it
    /// lists pending links; ignored when a device posts its own request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_id: Option<DeviceId>,
    /// Its Ed25519 signing key.
    pub signing_key: B64,
    /// Its ephemeral X25519 link key.
    pub link_key: B64,
}

/// `POST /v1/devices/link/approve` (an existing device) and the answer of
/// `GET /v1/devices/link/result` (the new device).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LinkApproval {
    /// The new device (hex).
    pub device_id: DeviceId,
    /// The account identity key and network key sealed to the link key
    /// (PROTOCOL.md §8); never the identity private key.
    pub sealed_transfer: B64,
}

/// `POST /v1/keys/claim`: one pre-key per device, for sealing a message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimPreKeys {
    /// The devices, as `user:device` hex pairs.
    pub devices: Vec<DeviceAddress>,
    /// Of those, the devices the sender wants only the medium-term pre-key
    /// of, because it already used a one-time pre-key of theirs within the
    /// current medium-term period (PROTOCOL.md §3.1): no one-time key is
    /// spent on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub medium_term: Vec<DeviceAddress>,
}

/// Response to [`ClaimPreKeys`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimedPreKeys {
    /// One signed pre-key per device asked for, in order: a one-time pre-key
    /// (now deleted from the server) or, when none are left or the claiming
    /// account has used its hourly allowance for that device, the newest
    /// unexpired medium-term pre-key.
    pub prekeys: Vec<B64>,
}

/// Kind of conversation, as the relay lists it. A kind a newer relay names
/// that this release does not know reads as `Unknown` (so one new kind does
/// not make every listing unreadable); it is never sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConversationKind {
    /// Two people.
    Direct,
    /// Any member may change membership.
    Group,
    /// Moderators change membership.
    Room,
    /// A note to self: its owner's devices (and retention) only.
    Notes,
    /// A kind this release does not know.
    Unknown,
}

impl ConversationKind {
    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Group => "group",
            Self::Room => "room",
            Self::Notes => "notes",
            Self::Unknown => "unknown",
        }
    }

    /// From its name on the wire (`Unknown` is no name).
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Direct, Self::Group, Self::Room, Self::Notes].into_iter().find(|k| k.name() == s)
    }
}

impl std::fmt::Display for ConversationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A member's role in a conversation; one this release does not know reads
/// as `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Ordinary member.
    Member,
    /// May change a room's membership.
    Moderator,
    /// A role this release does not know.
    Unknown,
}

impl Role {
    /// Its name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Self::Member => "member",
            Self::Moderator => "moderator",
            Self::Unknown => "unknown",
        }
    }

    /// From its name on the wire.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Member, Self::Moderator].into_iter().find(|r| r.name() == s)
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

by_name!(ConversationKind);
by_name!(Role);

/// `POST /v1/conversations`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateConversation {
    /// `direct`, `group` or `room`.
    pub kind: ConversationKind,
    /// The other members (hex user ids); the creator is added.
    pub members: Vec<UserId>,
}

/// A conversation and its members.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conversation {
    /// Id (hex).
    pub id: ConversationId,
    /// What kind.
    pub kind: ConversationKind,
    /// Members.
    pub members: Vec<Member>,
    /// Increases with every membership change.
    pub membership_seq: u64,
    /// Last message sequence number assigned.
    pub last_seq: u64,
}

/// One member.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    /// User (hex).
    pub user_id: UserId,
    /// Member or moderator.
    pub role: Role,
    /// Username (empty from a relay that does not send it).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// A guest (see [`UserInfo::guest`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub guest: bool,
    /// A guest whose access expired (see [`UserInfo::expired`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
}

/// `GET /v1/conversations/{id}/membership?after=N`: the conversation's
/// signed membership statements after sequence N, oldest first (at most 256;
/// ask again after the last for more). Members fold them into the member set
/// (PROTOCOL.md §3.4); `POST` the same path with one encoded statement to
/// create a conversation or change its members.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MembershipHistory {
    /// Encoded statements, ascending by sequence number.
    pub statements: Vec<B64>,
}

/// `POST /v1/conversations/{id}/members`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ChangeMembers {
    /// Users to add.
    #[serde(default)]
    pub add: Vec<UserId>,
    /// Users to remove.
    #[serde(default)]
    pub remove: Vec<UserId>,
    /// Members to make moderators (rooms).
    #[serde(default)]
    pub promote: Vec<UserId>,
    /// Moderators to make plain members (rooms).
    #[serde(default)]
    pub demote: Vec<UserId>,
}

/// Response to `POST /v1/messages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accepted {
    /// The message id (hex).
    pub message_id: MessageId,
    /// Its per-conversation sequence number.
    pub seq: u64,
    /// True if this message id had already been accepted (a resend).
    pub duplicate: bool,
    /// Set by the client SDK, never by the relay: the relay could not be
    /// reached, so the message is sealed and waits in this device's outbox
    /// (`seq` is 0 until it goes, under the same id).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub queued: bool,
}

/// One delivered message.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Delivery {
    /// Message id (hex).
    pub message_id: MessageId,
    /// Conversation (hex).
    pub conversation_id: ConversationId,
    /// Per-conversation sequence number.
    pub seq: u64,
    /// When the relay accepted the message (ms since the Unix epoch; 0
    /// from a relay too old to say): the retention archive's trusted time.
    #[serde(default)]
    pub received_at: u64,
    /// The delivered-form envelope for this device.
    pub envelope: B64,
}

/// `GET /v1/messages`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deliveries {
    /// Queued messages, oldest first.
    pub messages: Vec<Delivery>,
}

/// `POST /v1/messages/ack`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ack {
    /// Message ids (hex) durably stored by the device.
    pub message_ids: Vec<MessageId>,
}

/// Frames on `GET /v1/ws`, in both directions (JSON text frames; a
/// device's sends are binary frames, [`SendFrame`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WsFrame {
    /// Server → device: a message.
    Message(Delivery),
    /// Device → server: acknowledge messages.
    Ack {
        /// Message ids (hex).
        message_ids: Vec<MessageId>,
    },
    /// Server → device: its one-time pre-keys are running out (claims took
    /// them); upload more. Past the end, senders get its medium-term key.
    PrekeysLow {
        /// One-time pre-keys left.
        remaining: u64,
    },
    /// Server → device: a send frame (binary, [`SendFrame`]) was accepted,
    /// as `POST /v1/messages` answers [`Accepted`]. Answers to sends in
    /// flight may come in any order: match them by `request`.
    Sent {
        /// The send frame's request id.
        request: u64,
        /// The message id (hex).
        message_id: MessageId,
        /// Its per-conversation sequence number.
        seq: u64,
        /// True if this message id had already been accepted (a resend).
        duplicate: bool,
    },
    /// Server → device: a send frame was refused; `status` and `error` are
    /// what `POST /v1/messages` would have answered (a 5xx or 429 is worth
    /// retrying, with the same envelope).
    SendFailed {
        /// The send frame's request id.
        request: u64,
        /// The HTTP status the same send would have had.
        status: u16,
        /// Why, as an error response body says it.
        #[serde(flatten)]
        body: ErrorBody,
    },
    /// Server → device, on a `?pushes=notice` socket: something may be
    /// queued for this device; fetch it (`GET /v1/messages`). Several may
    /// come for what one fetch returns.
    Queued,
    /// Server → device: an `ack` frame was not committed (the relay's
    /// storage failed). Those messages stay queued, and count against the
    /// socket's push window, until the device acknowledges them again.
    AckFailed {
        /// The ack frame's ids (hex).
        message_ids: Vec<MessageId>,
        /// Code (`storage_unavailable`).
        error: String,
        /// Explanation.
        message: String,
    },
    /// Device → server: answer [`WsFrame::Flushed`] once every earlier
    /// frame on this socket is settled (each `ack` committed or answered
    /// `ack_failed`, each send answered).
    Flush,
    /// Server → device: the answer to [`WsFrame::Flush`]. An ack sent
    /// before the flush and not named by an `ack_failed` is committed: a
    /// later re-delivery of its messages is the relay replaying them.
    Flushed,
    /// Server → device: an error about the last frame.
    Error {
        /// Code.
        error: String,
        /// Explanation.
        message: String,
    },
}

/// Response to `POST /v1/blobs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BlobCreated {
    /// The blob id (hex).
    pub blob_id: BlobId,
    /// Bytes stored.
    pub size: u64,
}

/// `POST /v1/retention/session`: a retention device logs in with a signature
/// by the signing key the current network policy names for it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetentionLoginRequest {
    /// Network (hex).
    pub network_id: NetworkId,
    /// Retention device (hex).
    pub device_id: DeviceId,
    /// Milliseconds since the Unix epoch; within 5 minutes of the server's clock.
    pub timestamp: u64,
    /// 16 random bytes (hex), never reused.
    pub nonce: String,
    /// Ed25519 signature over the `RetentionLogin` statement.
    pub signature: B64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn send_answers_keep_their_json() {
        let failed = WsFrame::SendFailed {
            request: 9,
            status: 409,
            body: ErrorBody {
                error: "recipient_mismatch".into(),
                message: "refresh".into(),
                missing: vec![DeviceAddress {
                    user: UserId::from_bytes([1; 16]),
                    device: DeviceId::from_bytes([2; 16]),
                }],
                extra: vec![],
            },
        };
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["type"], "send_failed");
        assert_eq!((json["request"].as_u64(), json["status"].as_u64()), (Some(9), Some(409)));
        assert_eq!(json["error"], "recipient_mismatch");
        assert!(json.get("extra").is_none(), "empty lists are left out");
        assert_eq!(serde_json::from_value::<WsFrame>(json).unwrap(), failed);
        let sent =
            WsFrame::Sent { request: u64::MAX, message_id: MessageId::from_bytes([3; 16]), seq: 4, duplicate: true };
        let text = serde_json::to_string(&sent).unwrap();
        assert!(text.starts_with(r#"{"type":"sent","request":18446744073709551615,"#), "{text}");
        assert_eq!(serde_json::from_str::<WsFrame>(&text).unwrap(), sent);
    }

    #[test]
    fn kinds_roles_and_receipt_policies_keep_their_json_and_read_unknown_values_as_unknown() {
        let json = format!(
            r#"{{"id":"{}","kind":"room","members":[{{"user_id":"{}","role":"moderator"}},{{"user_id":"{}","role":"owner"}}],"membership_seq":1,"last_seq":2}}"#,
            "00".repeat(16),
            "01".repeat(16),
            "02".repeat(16)
        );
        let c: Conversation = serde_json::from_str(&json).unwrap();
        assert!(serde_json::from_str::<Conversation>(&json.replace(&"01".repeat(16), "01")).is_err(), "ids are typed");
        assert_eq!(
            (c.kind, c.members[0].role, c.members[1].role),
            (ConversationKind::Room, Role::Moderator, Role::Unknown)
        );
        let newer: Conversation = serde_json::from_str(&json.replace("\"room\"", "\"channel\"")).unwrap();
        assert_eq!(newer.kind, ConversationKind::Unknown);
        assert_eq!(ConversationKind::parse("unknown"), None, "never a name to send");
        let again = serde_json::to_string(&Conversation { members: vec![], ..c }).unwrap();
        assert!(again.contains(r#""kind":"room""#), "{again}");
        let mut s = GroupSettings::default();
        assert_eq!(serde_json::to_value(s.read_receipts).unwrap(), "on");
        s.read_receipts = serde_json::from_str("\"sometimes\"").unwrap();
        assert_eq!(s.validate().unwrap_err(), "read_receipts is off, on or forced");
        let mut s = GroupSettings::default();
        assert_eq!(serde_json::to_value(s.federation).unwrap(), "none");
        s.federation = serde_json::from_str("\"allow_list\"").unwrap();
        assert_eq!(s.federation, Federation::AllowList);
        s.federation = serde_json::from_str("\"everyone\"").unwrap();
        assert_eq!(s.validate().unwrap_err(), "federation is none, allow_list or open");
    }
}
