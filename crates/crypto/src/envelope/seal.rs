use rand_core::{CryptoRng, RngCore};

use super::encoding::{signature_input, wraps_tree, Envelope};
use super::header::{Header, MembershipCommitment};
use super::wrap::{kek_info_prefix, wrap, Recipient, WrapError};
use super::{SealError, MAX_RECIPIENTS};
use crate::content::{pad, Content};
use crate::ids::{ConversationId, DeviceId, MessageId, NetworkId, UserId};
use crate::keys::{AgreementSecret, SecretBytes, SigningKey, VerifyingKey};
use crate::primitives::{self, AEAD_TAG_LEN};
use crate::suite::{Suite, PROTOCOL_VERSION};

/// The sending device's own keys.
pub struct Sender<'a> {
    /// The sender's network.
    pub network_id: NetworkId,
    /// Sending user.
    pub user_id: UserId,
    /// The user's identity public key (bound into every KEK).
    pub identity_key: VerifyingKey,
    /// Sending device.
    pub device_id: DeviceId,
    /// The device signing key.
    pub signing_key: &'a SigningKey,
}

/// Per-message metadata that goes into the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageMeta {
    /// The network hosting the conversation (the sender's own, unless the
    /// conversation is a partner network's).
    pub host_network_id: NetworkId,
    /// Conversation.
    pub conversation_id: ConversationId,
    /// Fresh random message id.
    pub message_id: MessageId,
    /// Send time, ms since the Unix epoch.
    pub timestamp: u64,
    /// Expiry after send, seconds (0 = none).
    pub ttl_secs: u32,
    /// Burn after first read, seconds (0 = off).
    pub burn_on_read_secs: u32,
    /// The signed member set the recipients were taken from
    /// (`MembershipCommitment::default()` until signed membership exists).
    pub membership: MembershipCommitment,
}

/// The two secrets a seal draws: the message key and the ephemeral key.
/// Normally from [`SealRandomness::generate`]; the test vectors fix them.
pub struct SealRandomness {
    /// The message key `K`.
    pub message_key: SecretBytes<32>,
    /// The ephemeral X25519 private key `e`.
    pub ephemeral: SecretBytes<32>,
}

impl SealRandomness {
    /// Fresh secrets from a cryptographic RNG.
    pub fn generate(rng: &mut (impl RngCore + CryptoRng)) -> Self {
        Self { message_key: SecretBytes::random(rng), ephemeral: SecretBytes::random(rng) }
    }
}

/// Seals `content` for `recipients` with fresh randomness.
pub fn seal(
    sender: &Sender<'_>,
    meta: &MessageMeta,
    content: &Content,
    recipients: &[Recipient],
    rng: &mut (impl RngCore + CryptoRng),
) -> Result<Envelope, SealError> {
    seal_with(sender, meta, content, recipients, SealRandomness::generate(rng))
}

/// Seals with the given randomness. Deterministic: the same inputs give the
/// same bytes (used by the test vectors). Never reuse randomness.
pub fn seal_with(
    sender: &Sender<'_>,
    meta: &MessageMeta,
    content: &Content,
    recipients: &[Recipient],
    randomness: SealRandomness,
) -> Result<Envelope, SealError> {
    if recipients.is_empty() {
        return Err(SealError::NoRecipients);
    }
    if recipients.len() > MAX_RECIPIENTS {
        return Err(SealError::TooManyRecipients(recipients.len()));
    }
    let mut order: Vec<&Recipient> = recipients.iter().collect();
    order.sort_unstable_by_key(|r| r.address());
    for pair in order.windows(2) {
        if let [a, b] = pair {
            if a.address() == b.address() {
                return Err(SealError::DuplicateRecipient { user: a.user_id, device: a.device_id });
            }
        }
    }
    // A device is sent only a version it advertises in its signed statement.
    if let Some(r) = order.iter().find(|r| r.versions & (1 << PROTOCOL_VERSION) == 0) {
        return Err(SealError::UnsupportedVersion { user: r.user_id, device: r.device_id, version: PROTOCOL_VERSION });
    }

    let ephemeral = AgreementSecret::from_bytes(randomness.ephemeral).map_err(|_| SealError::Backend)?;
    let header = Header {
        version: PROTOCOL_VERSION,
        suite: Suite::Curve25519Aes256Gcm,
        sender_network_id: sender.network_id,
        host_network_id: meta.host_network_id,
        conversation_id: meta.conversation_id,
        message_id: meta.message_id,
        sender_user_id: sender.user_id,
        sender_device_id: sender.device_id,
        timestamp: meta.timestamp,
        ttl_secs: meta.ttl_secs,
        burn_on_read_secs: meta.burn_on_read_secs,
        membership: meta.membership,
        key_commitment: key_commitment(&randomness.message_key),
        ephemeral_public: ephemeral.public(),
    };
    let header_bytes = header.encode();

    let encoded = zeroize::Zeroizing::new(content.encode()?);
    let mut buf = pad(&encoded, AEAD_TAG_LEN).ok_or(SealError::Backend)?;
    let tag = primitives::aes256gcm_seal(randomness.message_key.expose(), [0; 12], &header_bytes, &mut buf)
        .map_err(|_| SealError::Backend)?;
    let mut ciphertext = Vec::with_capacity(buf.len() + AEAD_TAG_LEN);
    ciphertext.extend_from_slice(&buf);
    ciphertext.extend_from_slice(&tag);

    let prefix = kek_info_prefix(&header, &sender.identity_key);
    let wraps = order
        .iter()
        .map(|r| {
            wrap(&ephemeral, &prefix, r, &randomness.message_key).map_err(|e| match e {
                WrapError::Agreement(_) => SealError::BadRecipientKey(r.device_id),
                WrapError::Unwrap | WrapError::Backend => SealError::Backend,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let tree = wraps_tree(&wraps).ok_or(SealError::NoRecipients)?;
    let tree_size = u32::try_from(wraps.len()).map_err(|_| SealError::TooManyRecipients(wraps.len()))?;
    let signature = sender.signing_key.sign(&signature_input(&header_bytes, &ciphertext, tree_size, &tree.root()));
    Ok(Envelope { header, ciphertext, wraps, signature })
}

/// `SHA-256("strongroom/v2/key-commitment" 0x00 | K)`. AES-GCM alone does
/// not commit to its key: without this a sender could find two keys that
/// open one ciphertext to two contents and give each reader a different one.
pub(crate) fn key_commitment(message_key: &SecretBytes<32>) -> [u8; 32] {
    primitives::sha256(&[crate::suite::label::KEY_COMMITMENT, &[0], message_key.expose()])
}
