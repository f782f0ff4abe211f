use std::collections::HashMap;

use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::encoding::{signature_input, DeliveredEnvelope, Envelope};
use super::header::Header;
use super::seal::key_commitment;
use super::wrap::{kek_info_prefix, unwrap, WrapError};
use super::{EnvelopeError, ReplayGuard, MAX_SKEW_MS};
use crate::certs::{CertError, PreKeyRef, VerifiedDeviceList};
use crate::content::{unpad, Content};
use crate::ids::{DeviceId, NetworkId, UserId};
use crate::keys::{AgreementSecret, VerifyingKey};
use crate::merkle::{leaf_hash, root_from_proof};
use crate::primitives::{self, AEAD_TAG_LEN};

/// Who is opening: this device's own public identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecipientDevice {
    /// Our network.
    pub network_id: NetworkId,
    /// Our user ([`UserId::RETENTION`] for a retention device).
    pub user_id: UserId,
    /// Our identity key (the network key for a retention device).
    pub identity_key: VerifyingKey,
    /// Our device.
    pub device_id: DeviceId,
}

/// Where a device keeps the private halves of its pre-keys.
pub trait PreKeySecrets {
    /// The private key for `key`, if this device still has it.
    fn secret(&self, key: PreKeyRef) -> Option<&AgreementSecret>;
}

impl PreKeySecrets for HashMap<PreKeyRef, AgreementSecret> {
    fn secret(&self, key: PreKeyRef) -> Option<&AgreementSecret> {
        self.get(&key)
    }
}

impl PreKeySecrets for [(PreKeyRef, AgreementSecret)] {
    fn secret(&self, key: PreKeyRef) -> Option<&AgreementSecret> {
        self.iter().find(|(r, _)| *r == key).map(|(_, s)| s)
    }
}

/// A verified, decrypted message.
#[derive(Debug, Clone, PartialEq)]
pub struct Opened {
    /// The authenticated header.
    pub header: Header,
    /// The content.
    pub content: Content,
    /// The pre-key it was sealed to: a one-time pre-key should now be deleted.
    pub prekey: PreKeyRef,
}

impl DeliveredEnvelope {
    /// Verifies and decrypts. `sender` is the sender's verified device list;
    /// `now` is ms since the Unix epoch. On success the message id is recorded
    /// in `replay`; on any failure nothing is recorded.
    pub fn open(
        &self,
        me: &RecipientDevice,
        keys: &(impl PreKeySecrets + ?Sized),
        sender: &VerifiedDeviceList,
        replay: &mut impl ReplayGuard,
        now: u64,
    ) -> Result<Opened, EnvelopeError> {
        let h = &self.header;
        let list = sender.list();
        if list.network_id != h.sender_network_id {
            return Err(EnvelopeError::Sender(CertError::WrongNetwork {
                expected: h.sender_network_id,
                got: list.network_id,
            }));
        }
        if list.user_id != h.sender_user_id {
            return Err(EnvelopeError::Sender(CertError::WrongUser { expected: h.sender_user_id, got: list.user_id }));
        }
        let device = sender.device(h.sender_device_id).map_err(EnvelopeError::Sender)?;

        let header_bytes = h.encode();
        let leaf = leaf_hash(&self.wrap.encode());
        let root = root_from_proof(leaf, u64::from(self.leaf_index), u64::from(self.tree_size), &self.proof)
            .ok_or(EnvelopeError::BadSignature)?;
        device
            .signing_key()
            .verify(&signature_input(&header_bytes, &self.ciphertext, self.tree_size, &root), &self.signature)
            .map_err(|_| EnvelopeError::BadSignature)?;

        if self.wrap.recipient() != (me.network_id, me.user_id, me.device_id) {
            return Err(EnvelopeError::NotForThisDevice);
        }
        if h.timestamp > now.saturating_add(MAX_SKEW_MS) {
            return Err(EnvelopeError::FutureTimestamp { ahead_ms: h.timestamp - now });
        }
        replay.check(&h.message_id, h.timestamp, now)?;

        let secret = keys.secret(self.wrap.prekey).ok_or(EnvelopeError::MissingPreKey(self.wrap.prekey))?;
        let prefix = kek_info_prefix(h, &sender.identity_key());
        let message_key = unwrap(&self.wrap, h, &prefix, &me.identity_key, secret).map_err(|e| match e {
            WrapError::Agreement(_) => EnvelopeError::BadEphemeralKey,
            WrapError::Unwrap => EnvelopeError::BadWrap,
            WrapError::Backend => EnvelopeError::Backend,
        })?;
        if !bool::from(key_commitment(&message_key).ct_eq(&h.key_commitment)) {
            return Err(EnvelopeError::KeyCommitment);
        }

        let split = self.ciphertext.len().saturating_sub(AEAD_TAG_LEN);
        let (body, tag) = self.ciphertext.split_at(split);
        let mut t = [0u8; AEAD_TAG_LEN];
        t.copy_from_slice(tag);
        let mut plain = Zeroizing::new(body.to_vec());
        primitives::aes256gcm_open(message_key.expose(), [0; 12], &header_bytes, &mut plain, &t)
            .map_err(|_| EnvelopeError::BadCiphertext)?;
        let content = Content::decode(unpad(&plain).ok_or(EnvelopeError::BadPadding)?)?;

        replay.record(h.message_id, h.timestamp, now);
        Ok(Opened { header: *h, content, prekey: self.wrap.prekey })
    }
}

impl Envelope {
    /// Opens the full form directly: extracts this device's delivery first.
    pub fn open(
        &self,
        me: &RecipientDevice,
        keys: &(impl PreKeySecrets + ?Sized),
        sender: &VerifiedDeviceList,
        replay: &mut impl ReplayGuard,
        now: u64,
    ) -> Result<Opened, EnvelopeError> {
        self.for_device(me.network_id, me.user_id, me.device_id)
            .ok_or(EnvelopeError::NotForThisDevice)?
            .open(me, keys, sender, replay, now)
    }
}
