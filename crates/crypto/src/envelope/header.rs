use crate::codec::{DecodeError, Reader, Writer};
use crate::ids::{ConversationId, DeviceId, MessageId, NetworkId, UserId};
use crate::keys::{AgreementPublic, KeyError};
use crate::suite::{check_version, Suite, VersionError};

/// Encoded header size: fixed, so it can be read without parsing the rest.
pub const HEADER_LEN: usize = 1 + 2 + 16 * 6 + 8 + 4 + 4 + 8 + 32 + 32 + 32;

/// The member set a sender encrypted to, as it signed it: the version and
/// The membership the sender encrypted to: the sequence number and SHA-256
/// of the last signed membership statement it applied (PROTOCOL.md §3.4).
/// Version 0 with a zero hash means "no signed member set".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MembershipCommitment {
    /// Member-set version.
    pub version: u64,
    /// SHA-256 of the signed member set's encoding.
    pub hash: [u8; 32],
}

/// The clear-text part of an envelope. Authenticated three ways: it is the
/// AEAD associated data of the content, it is bound into every KEK, and it is
/// covered by the sender's signature.
///
/// Encoding (PROTOCOL.md §4.1, 219 bytes): `version u8 | suite u16 |
/// sender network 16 | host network 16 | conversation 16 | message 16 |
/// sender user 16 | sender device 16 | timestamp u64 (ms) | ttl u32 (s) |
/// burn-on-read u32 (s) | membership version u64 | membership hash 32 |
/// key commitment 32 | ephemeral key 32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Format version.
    pub version: u8,
    /// Cipher suite.
    pub suite: Suite,
    /// The sender's network.
    pub sender_network_id: NetworkId,
    /// The network that hosts the conversation.
    pub host_network_id: NetworkId,
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Message id (replay-guard key).
    pub message_id: MessageId,
    /// Sending user.
    pub sender_user_id: UserId,
    /// Sending device.
    pub sender_device_id: DeviceId,
    /// Send time, ms since the Unix epoch (sender's clock).
    pub timestamp: u64,
    /// Expire this many seconds after `timestamp`; 0 for never.
    pub ttl_secs: u32,
    /// Delete this many seconds after first read; 0 for off.
    pub burn_on_read_secs: u32,
    /// The member set the sender encrypted to.
    pub membership: MembershipCommitment,
    /// `SHA-256("strongroom/v2/key-commitment" 0x00 | K)`: every recipient
    /// checks its unwrapped key against it, so all read the same plaintext.
    pub key_commitment: [u8; 32],
    /// The per-message ephemeral X25519 public key.
    pub ephemeral_public: AgreementPublic,
}

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// Malformed bytes.
    #[error("malformed envelope header: {0}")]
    Decode(#[from] DecodeError),
    /// Unknown version or suite.
    #[error("{0}")]
    Version(#[from] VersionError),
    /// The ephemeral key is non-canonical or of small order.
    #[error("envelope ephemeral key refused: {0}")]
    EphemeralKey(KeyError),
}

impl Header {
    /// The fixed-size encoding.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut w = Writer::with_capacity(HEADER_LEN);
        w.u8(self.version)
            .u16(self.suite.id())
            .raw(&self.sender_network_id.0)
            .raw(&self.host_network_id.0)
            .raw(&self.conversation_id.0)
            .raw(&self.message_id.0)
            .raw(&self.sender_user_id.0)
            .raw(&self.sender_device_id.0)
            .u64(self.timestamp)
            .u32(self.ttl_secs)
            .u32(self.burn_on_read_secs)
            .u64(self.membership.version)
            .raw(&self.membership.hash)
            .raw(&self.key_commitment)
            .raw(&self.ephemeral_public.0);
        let mut out = [0u8; HEADER_LEN];
        out.copy_from_slice(&w.finish());
        out
    }

    /// Reads a header from the front of `r`, checking version and suite first
    /// so a downgrade is reported as such rather than as a parse error.
    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, HeaderError> {
        let version = r.u8("envelope version")?;
        check_version(version)?;
        let suite = Suite::from_id(r.u16("envelope suite")?)?;
        Ok(Self {
            version,
            suite,
            sender_network_id: NetworkId(r.array("sender network id")?),
            host_network_id: NetworkId(r.array("host network id")?),
            conversation_id: ConversationId(r.array("conversation id")?),
            message_id: MessageId(r.array("message id")?),
            sender_user_id: UserId(r.array("sender user id")?),
            sender_device_id: DeviceId(r.array("sender device id")?),
            timestamp: r.u64("timestamp")?,
            ttl_secs: r.u32("ttl")?,
            burn_on_read_secs: r.u32("burn-on-read")?,
            membership: MembershipCommitment {
                version: r.u64("membership version")?,
                hash: r.array("membership hash")?,
            },
            key_commitment: r.array("key commitment")?,
            ephemeral_public: AgreementPublic::from_bytes(r.array("ephemeral key")?)
                .map_err(HeaderError::EphemeralKey)?,
        })
    }

    /// Reads only the header of an encoded envelope (either form): what a
    /// relay needs to route it, without parsing the rest.
    pub fn peek(envelope: &[u8]) -> Result<Self, HeaderError> {
        Self::read(&mut Reader::new(envelope))
    }

    /// When the message expires (ms), if it has a TTL.
    pub fn expires_at(&self) -> Option<u64> {
        (self.ttl_secs > 0).then(|| self.timestamp.saturating_add(u64::from(self.ttl_secs) * 1000))
    }
}
