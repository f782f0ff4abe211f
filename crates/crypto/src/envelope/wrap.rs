//! Per-recipient wraps of the message key.
//!
//! `KEK = HKDF-SHA256(salt = "", IKM = X25519(e, P), info)`, with `info`
//! binding the label, suite, both networks, message, ephemeral key, sender and
//! recipient identities (network, user, device) and the exact pre-key used; the wrap is
//! `AES-256-GCM(KEK, nonce = 0^12, aad = "", K)`. Every KEK is used once, so
//! the fixed nonce is safe.

use super::Header;
use crate::certs::{PreKeyKind, PreKeyRef, VerifiedPolicy, VerifiedPreKey};
use crate::codec::{DecodeError, Reader, Writer};
use crate::ids::{DeviceId, NetworkId, UserId};
use crate::keys::{AgreementPublic, AgreementSecret, KeyError, SecretBytes, VerifyingKey};
use crate::primitives::{self, AEAD_TAG_LEN};
use crate::suite::label;

/// Encoded size of one wrap.
pub const WRAP_LEN: usize = 16 + 16 + 16 + 1 + 4 + WRAPPED_KEY_LEN;
const WRAPPED_KEY_LEN: usize = 32 + AEAD_TAG_LEN;
const NONCE: [u8; 12] = [0; 12];

/// The message key wrapped for one device.
///
/// Encoding: `network 16 | user 16 | device 16 | pre-key kind u8 |
/// pre-key id u32 | wrapped key 48 (32 ciphertext + 16 tag)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wrap {
    /// Recipient's network (for a retention device, the network whose
    /// policy names it).
    pub network_id: NetworkId,
    /// Recipient user ([`UserId::RETENTION`] for retention devices).
    pub user_id: UserId,
    /// Recipient device.
    pub device_id: DeviceId,
    /// The recipient key used.
    pub prekey: PreKeyRef,
    pub(crate) wrapped_key: [u8; WRAPPED_KEY_LEN],
}

impl Wrap {
    pub(crate) fn write(&self, w: &mut Writer) {
        w.raw(&self.network_id.0)
            .raw(&self.user_id.0)
            .raw(&self.device_id.0)
            .u8(self.prekey.kind.to_u8())
            .u32(self.prekey.id)
            .raw(&self.wrapped_key);
    }

    pub(crate) fn encode(&self) -> [u8; WRAP_LEN] {
        let mut w = Writer::with_capacity(WRAP_LEN);
        self.write(&mut w);
        let mut out = [0u8; WRAP_LEN];
        out.copy_from_slice(&w.finish());
        out
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let network_id = NetworkId(r.array("wrap network id")?);
        let user_id = UserId(r.array("wrap user id")?);
        let device_id = DeviceId(r.array("wrap device id")?);
        let kind = PreKeyKind::from_u8(r.u8("wrap pre-key kind")?)
            .ok_or(DecodeError::Invalid { field: "wrap pre-key kind", reason: "must be 0, 1 or 2" })?;
        let id = r.u32("wrap pre-key id")?;
        Ok(Self {
            network_id,
            user_id,
            device_id,
            prekey: PreKeyRef { kind, id },
            wrapped_key: r.array("wrapped key")?,
        })
    }

    /// The (network, user, device) this wrap is for: the sort key of the
    /// wrap list.
    pub fn recipient(&self) -> (NetworkId, UserId, DeviceId) {
        (self.network_id, self.user_id, self.device_id)
    }
}

/// A device a message can be sealed to. Built only from verified statements:
/// a pre-key checked against a signed device list, or a retention device
/// from a verified network policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub(crate) network_id: NetworkId,
    pub(crate) user_id: UserId,
    pub(crate) identity_key: VerifyingKey,
    pub(crate) device_id: DeviceId,
    pub(crate) prekey: PreKeyRef,
    pub(crate) public: AgreementPublic,
    /// Protocol versions the device advertises (bit v = version v).
    pub(crate) versions: u32,
}

impl Recipient {
    /// (network, user, device).
    pub fn address(&self) -> (NetworkId, UserId, DeviceId) {
        (self.network_id, self.user_id, self.device_id)
    }
}

impl From<&VerifiedPreKey> for Recipient {
    fn from(k: &VerifiedPreKey) -> Self {
        Self {
            network_id: k.device.network_id,
            user_id: k.device.user_id,
            identity_key: k.device.identity_key,
            device_id: k.device.device_id,
            prekey: k.key_ref,
            public: k.public,
            versions: k.device.versions,
        }
    }
}

impl VerifiedPolicy {
    /// The retention devices every envelope must also be sealed to.
    pub fn retention_recipients(&self) -> Vec<Recipient> {
        self.policy
            .active_retention()
            .map(|d| Recipient {
                network_id: self.policy.network_id,
                user_id: UserId::RETENTION,
                identity_key: self.network_key,
                device_id: d.device_id,
                prekey: PreKeyRef { kind: PreKeyKind::Retention, id: d.agreement_key_id },
                public: d.agreement_key,
                versions: d.versions,
            })
            .collect()
    }
}

/// The recipient-independent first part of the KEK info, built once per message.
pub(crate) fn kek_info_prefix(header: &Header, sender_identity: &VerifyingKey) -> Vec<u8> {
    let mut w = Writer::with_capacity(160);
    w.raw(label::KEK)
        .u8(0)
        .u16(header.suite.id())
        .raw(&header.sender_network_id.0)
        .raw(&header.host_network_id.0)
        .raw(&header.message_id.0)
        .raw(&header.ephemeral_public.0)
        .raw(&header.sender_user_id.0)
        .raw(&header.sender_device_id.0)
        .raw(&sender_identity.0);
    w.finish()
}

const SUFFIX_LEN: usize = 16 * 3 + 32 + 1 + 4 + 32;

/// The recipient-specific rest of the KEK info.
fn kek_info_suffix(
    (network, user, device): (NetworkId, UserId, DeviceId),
    identity: &VerifyingKey,
    prekey: PreKeyRef,
    public: &AgreementPublic,
) -> [u8; SUFFIX_LEN] {
    let mut out = [0u8; SUFFIX_LEN];
    let mut w = Writer::with_capacity(SUFFIX_LEN);
    w.raw(&network.0)
        .raw(&user.0)
        .raw(&device.0)
        .raw(&identity.0)
        .u8(prekey.kind.to_u8())
        .u32(prekey.id)
        .raw(&public.0);
    out.copy_from_slice(&w.finish());
    out
}

fn kek(shared: &SecretBytes<32>, prefix: &[u8], suffix: &[u8]) -> Result<SecretBytes<32>, WrapError> {
    primitives::hkdf_sha256_key(&[], shared.expose(), &[prefix, suffix]).map_err(|_| WrapError::Backend)
}

/// Why a wrap could not be made or opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WrapError {
    Agreement(KeyError),
    Unwrap,
    Backend,
}

/// Wraps `message_key` for one recipient.
pub(crate) fn wrap(
    ephemeral: &AgreementSecret,
    prefix: &[u8],
    r: &Recipient,
    message_key: &SecretBytes<32>,
) -> Result<Wrap, WrapError> {
    let shared = ephemeral.diffie_hellman(&r.public).map_err(WrapError::Agreement)?;
    let suffix = kek_info_suffix(r.address(), &r.identity_key, r.prekey, &r.public);
    let kek = kek(&shared, prefix, &suffix)?;
    let mut wrapped_key = [0u8; WRAPPED_KEY_LEN];
    let (ct, tag) = wrapped_key.split_at_mut(32);
    ct.copy_from_slice(message_key.expose());
    let t = primitives::aes256gcm_seal(kek.expose(), NONCE, &[], ct).map_err(|_| WrapError::Backend)?;
    tag.copy_from_slice(&t);
    Ok(Wrap { network_id: r.network_id, user_id: r.user_id, device_id: r.device_id, prekey: r.prekey, wrapped_key })
}

/// Unwraps the message key with the recipient's own secret.
pub(crate) fn unwrap(
    w: &Wrap,
    header: &Header,
    prefix: &[u8],
    my_identity: &VerifyingKey,
    secret: &AgreementSecret,
) -> Result<SecretBytes<32>, WrapError> {
    let shared = secret.diffie_hellman(&header.ephemeral_public).map_err(WrapError::Agreement)?;
    let suffix = kek_info_suffix(w.recipient(), my_identity, w.prekey, &secret.public());
    let kek = kek(&shared, prefix, &suffix)?;
    let mut key = SecretBytes::<32>::zero();
    let (ct, tag) = w.wrapped_key.split_at(32);
    key.as_mut().copy_from_slice(ct);
    let mut t = [0u8; AEAD_TAG_LEN];
    t.copy_from_slice(tag);
    primitives::aes256gcm_open(kek.expose(), NONCE, &[], key.as_mut(), &t).map_err(|_| WrapError::Unwrap)?;
    Ok(key)
}
