use super::{CertError, VerifiedDevice};
use crate::codec::{Reader, Writer};
use crate::ids::{DeviceId, NetworkId, UserId};
use crate::keys::signing_input;
use crate::keys::{AgreementPublic, Signature, SigningKey};
use crate::suite::{check_version, label, Suite, PROTOCOL_VERSION};

/// Which kind of X25519 key a message key was wrapped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum PreKeyKind {
    /// The device's signed medium-term pre-key (rotated, e.g. weekly).
    MediumTerm,
    /// A signed one-time pre-key, deleted after first use.
    OneTime,
    /// A retention device's agreement key, certified in the network policy.
    Retention,
}

impl PreKeyKind {
    pub(crate) fn to_u8(self) -> u8 {
        match self {
            PreKeyKind::MediumTerm => 0,
            PreKeyKind::OneTime => 1,
            PreKeyKind::Retention => 2,
        }
    }

    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        match v {
            0 => Some(PreKeyKind::MediumTerm),
            1 => Some(PreKeyKind::OneTime),
            2 => Some(PreKeyKind::Retention),
            _ => None,
        }
    }
}

/// Names one agreement key of a device: its kind and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PreKeyRef {
    /// Kind of key.
    pub kind: PreKeyKind,
    /// Id, unique per device and kind.
    pub id: u32,
}

/// An X25519 pre-key signed by its device's signing key.
///
/// Encoding (all integers big-endian):
/// `version u8 | suite u16 | network 16 | user 16 | device 16 | kind u8 |
///  id u32 | public 32 | created_at u64 | expires_at u64 | signature 64`,
/// signature over `"strongroom/v2/prekey" 0x00 | everything before it`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPreKey {
    /// Network of the device.
    pub network_id: NetworkId,
    /// Owner of the device.
    pub user_id: UserId,
    /// Device whose key this is.
    pub device_id: DeviceId,
    /// Kind and id.
    pub key_ref: PreKeyRef,
    /// The X25519 public key.
    pub public: AgreementPublic,
    /// Creation time, ms since the Unix epoch.
    pub created_at: u64,
    /// Senders must not use the key after this time (ms).
    pub expires_at: u64,
    signature: Signature,
}

const BODY_LEN: usize = 1 + 2 + 16 * 3 + 1 + 4 + 32 + 8 + 8;
/// Encoded size of a signed pre-key.
pub const SIGNED_PREKEY_LEN: usize = BODY_LEN + 64;

/// A pre-key whose signature and validity were checked against a verified device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPreKey {
    pub(crate) device: VerifiedDevice,
    pub(crate) key_ref: PreKeyRef,
    pub(crate) public: AgreementPublic,
}

impl VerifiedPreKey {
    /// The device this key belongs to.
    pub fn device(&self) -> &VerifiedDevice {
        &self.device
    }
    /// Kind and id.
    pub fn key_ref(&self) -> PreKeyRef {
        self.key_ref
    }
}

impl SignedPreKey {
    /// Signs a pre-key with the device key. Retention keys are certified by
    /// the network policy instead, so `kind` must not be `Retention`.
    #[allow(clippy::too_many_arguments)]
    pub fn sign(
        device_key: &SigningKey,
        network_id: NetworkId,
        user_id: UserId,
        device_id: DeviceId,
        key_ref: PreKeyRef,
        public: AgreementPublic,
        created_at: u64,
        expires_at: u64,
    ) -> Result<Self, CertError> {
        if key_ref.kind == PreKeyKind::Retention {
            return Err(CertError::Invalid("retention keys are certified by the network policy, not by a device"));
        }
        let mut pk = Self {
            network_id,
            user_id,
            device_id,
            key_ref,
            public,
            created_at,
            expires_at,
            signature: Signature([0; 64]),
        };
        pk.signature = device_key.sign(&signing_input(label::PREKEY, &pk.body()));
        Ok(pk)
    }

    fn body(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(SIGNED_PREKEY_LEN);
        w.u8(PROTOCOL_VERSION)
            .u16(Suite::Curve25519Aes256Gcm.id())
            .raw(&self.network_id.0)
            .raw(&self.user_id.0)
            .raw(&self.device_id.0)
            .u8(self.key_ref.kind.to_u8())
            .u32(self.key_ref.id)
            .raw(&self.public.0)
            .u64(self.created_at)
            .u64(self.expires_at);
        w.finish()
    }

    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.body();
        v.extend_from_slice(&self.signature.0);
        v
    }

    /// Parses the wire encoding (does not check the signature).
    pub fn decode(bytes: &[u8]) -> Result<Self, CertError> {
        let e = CertError::decode("signed pre-key");
        let mut r = Reader::new(bytes);
        check_version(r.u8("version").map_err(&e)?)?;
        Suite::from_id(r.u16("suite").map_err(&e)?)?;
        let network_id = NetworkId(r.array("network id").map_err(&e)?);
        let user_id = UserId(r.array("user id").map_err(&e)?);
        let device_id = DeviceId(r.array("device id").map_err(&e)?);
        let kind = match PreKeyKind::from_u8(r.u8("pre-key kind").map_err(&e)?) {
            Some(k @ (PreKeyKind::MediumTerm | PreKeyKind::OneTime)) => k,
            _ => return Err(CertError::Invalid("pre-key kind must be 0 (medium-term) or 1 (one-time)")),
        };
        let id = r.u32("pre-key id").map_err(&e)?;
        let public = super::agreement_key(r.array("pre-key public key").map_err(&e)?)?;
        let created_at = r.u64("created_at").map_err(&e)?;
        let expires_at = r.u64("expires_at").map_err(&e)?;
        let signature = Signature(r.array("signature").map_err(&e)?);
        r.finish("signed pre-key").map_err(&e)?;
        Ok(Self {
            network_id,
            user_id,
            device_id,
            key_ref: PreKeyRef { kind, id },
            public,
            created_at,
            expires_at,
            signature,
        })
    }

    /// Checks the signature under `device`'s key, that it names that device,
    /// and that it has not expired at `now` (ms since the Unix epoch).
    pub fn verify(&self, device: &VerifiedDevice, now: u64) -> Result<VerifiedPreKey, CertError> {
        if self.network_id != device.network_id {
            return Err(CertError::WrongNetwork { expected: device.network_id, got: self.network_id });
        }
        if self.user_id != device.user_id {
            return Err(CertError::WrongUser { expected: device.user_id, got: self.user_id });
        }
        if self.device_id != device.device_id {
            return Err(CertError::WrongDevice { expected: device.device_id, got: self.device_id });
        }
        device
            .signing_key
            .verify(&signing_input(label::PREKEY, &self.body()), &self.signature)
            .map_err(|_| CertError::BadSignature { what: "pre-key" })?;
        if now >= self.expires_at {
            return Err(CertError::Expired { what: "pre-key", expired_at: self.expires_at, now });
        }
        Ok(VerifiedPreKey { device: device.clone(), key_ref: self.key_ref, public: self.public })
    }
}
