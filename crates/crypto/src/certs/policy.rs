use subtle::ConstantTimeEq;

use super::CertError;
use crate::codec::{Reader, Writer};
use crate::ids::{DeviceId, NetworkId};
use crate::keys::{signing_input, AgreementPublic, Signature, SigningKey, VerifyingKey};
use crate::primitives::sha256;
use crate::suite::{check_version, label, Suite, PROTOCOL_VERSION};

/// Most retention devices one policy may name.
pub const MAX_RETENTION_DEVICES: usize = 16;
/// Longest retention device name, in bytes.
pub const MAX_RETENTION_NAME: usize = 64;

/// A retention device certified by the network key: every envelope in the
/// network must carry a wrap for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionDevice {
    /// Its device id (under [`crate::ids::UserId::RETENTION`]).
    pub device_id: DeviceId,
    /// Its Ed25519 key (signs archive checkpoints).
    pub signing_key: VerifyingKey,
    /// Its X25519 key that message keys are wrapped to.
    pub agreement_key: AgreementPublic,
    /// Id of that agreement key (changes when it is rotated).
    pub agreement_key_id: u32,
    /// Shown to users ("Acme compliance archive").
    pub name: String,
}

/// The network's signed policy: today, which retention devices read every
/// conversation.
///
/// Encoding: `version u8 | suite u16 | network 16 | policy version u64 |
/// issued_at u64 | flags u32 (0) | count u16 | entries | signature 64`;
/// entry: `device 16 | signing key 32 | agreement key 32 | agreement key id u32 |
/// name (u16 length | UTF-8)`, ascending by device id. Signature by the network
/// key over `"strongroom/v1/network-policy" 0x00 | everything before it`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// The network.
    pub network_id: NetworkId,
    /// Strictly increases with every new policy.
    pub version: u64,
    /// When it was signed (ms).
    pub issued_at: u64,
    /// Retention devices, ascending by id. Empty means retention is off.
    pub retention: Vec<RetentionDevice>,
    signature: Signature,
}

/// A policy that verified under the pinned network key and is not a rollback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPolicy {
    pub(crate) policy: NetworkPolicy,
    pub(crate) network_key: VerifyingKey,
}

impl VerifiedPolicy {
    /// The policy.
    pub fn policy(&self) -> &NetworkPolicy {
        &self.policy
    }
    /// Whether retention is on ("data retention on" in every conversation).
    pub fn retention_enabled(&self) -> bool {
        !self.policy.retention.is_empty()
    }
    /// The network key that signed it (the retention devices' "identity").
    pub fn network_key(&self) -> VerifyingKey {
        self.network_key
    }
}

impl NetworkPolicy {
    /// Signs a policy with the network key.
    pub fn sign(
        network_key: &SigningKey,
        network_id: NetworkId,
        version: u64,
        issued_at: u64,
        mut retention: Vec<RetentionDevice>,
    ) -> Result<Self, CertError> {
        retention.sort_by_key(|d| d.device_id);
        check_entries(&retention)?;
        let mut p = Self { network_id, version, issued_at, retention, signature: Signature([0; 64]) };
        p.signature = network_key.sign(&signing_input(label::NETWORK_POLICY, &p.body()));
        Ok(p)
    }

    fn body(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64 + self.retention.len() * 160);
        w.u8(PROTOCOL_VERSION)
            .u16(Suite::Curve25519Aes256Gcm.id())
            .raw(&self.network_id.0)
            .u64(self.version)
            .u64(self.issued_at)
            .u32(0)
            .u16(u16::try_from(self.retention.len()).unwrap_or(u16::MAX));
        for d in &self.retention {
            w.raw(&d.device_id.0)
                .raw(&d.signing_key.0)
                .raw(&d.agreement_key.0)
                .u32(d.agreement_key_id)
                .bytes16(d.name.as_bytes());
        }
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
        let e = CertError::decode("network policy");
        let mut r = Reader::new(bytes);
        check_version(r.u8("version").map_err(&e)?)?;
        Suite::from_id(r.u16("suite").map_err(&e)?)?;
        let network_id = NetworkId(r.array("network id").map_err(&e)?);
        let version = r.u64("policy version").map_err(&e)?;
        let issued_at = r.u64("issued_at").map_err(&e)?;
        if r.u32("flags").map_err(&e)? != 0 {
            return Err(CertError::Invalid("network policy flags must be zero in version 1"));
        }
        let n = r.count16("retention device count", MAX_RETENTION_DEVICES, 16 + 32 + 32 + 4 + 2).map_err(&e)?;
        let mut retention = Vec::with_capacity(n);
        for _ in 0..n {
            retention.push(RetentionDevice {
                device_id: DeviceId(r.array("retention device id").map_err(&e)?),
                signing_key: VerifyingKey(r.array("retention signing key").map_err(&e)?),
                agreement_key: AgreementPublic(r.array("retention agreement key").map_err(&e)?),
                agreement_key_id: r.u32("retention agreement key id").map_err(&e)?,
                name: r.str16("retention device name", MAX_RETENTION_NAME).map_err(&e)?.to_owned(),
            });
        }
        let signature = Signature(r.array("signature").map_err(&e)?);
        r.finish("network policy").map_err(&e)?;
        check_entries(&retention)?;
        Ok(Self { network_id, version, issued_at, retention, signature })
    }

    /// SHA-256 of the encoding: what a tracker remembers per version.
    pub fn digest(&self) -> [u8; 32] {
        sha256(&[&self.encode()])
    }
}

fn check_entries(retention: &[RetentionDevice]) -> Result<(), CertError> {
    if retention.len() > MAX_RETENTION_DEVICES {
        return Err(CertError::Invalid("too many retention devices (limit 16)"));
    }
    if retention.iter().any(|d| d.name.len() > MAX_RETENTION_NAME) {
        return Err(CertError::Invalid("retention device name longer than 64 bytes"));
    }
    super::check_ascending(retention, |d| d.device_id, "retention devices are not in ascending id order")
}

/// Verifies policies against the pinned network key and remembers the newest
/// one seen, so an older policy (rollback) or a different policy under the
/// same version (equivocation) is refused. Clients persist
/// [`PolicyTracker::highest`] and resume with [`PolicyTracker::resume`].
#[derive(Debug, Clone)]
pub struct PolicyTracker {
    network_key: VerifyingKey,
    network_id: NetworkId,
    highest: Option<(u64, [u8; 32])>,
}

impl PolicyTracker {
    /// A tracker that has seen no policy yet.
    pub fn new(network_key: VerifyingKey, network_id: NetworkId) -> Self {
        Self { network_key, network_id, highest: None }
    }

    /// A tracker resumed from saved state.
    pub fn resume(network_key: VerifyingKey, network_id: NetworkId, version: u64, digest: [u8; 32]) -> Self {
        Self { network_key, network_id, highest: Some((version, digest)) }
    }

    /// The newest version seen and its digest.
    pub fn highest(&self) -> Option<(u64, [u8; 32])> {
        self.highest
    }

    /// Verifies `policy` and, if it is new, remembers it.
    pub fn verify(&mut self, policy: &NetworkPolicy) -> Result<VerifiedPolicy, CertError> {
        if policy.network_id != self.network_id {
            return Err(CertError::WrongNetwork { expected: self.network_id, got: policy.network_id });
        }
        self.network_key
            .verify(&signing_input(label::NETWORK_POLICY, &policy.body()), &policy.signature)
            .map_err(|_| CertError::BadSignature { what: "network policy" })?;
        let digest = policy.digest();
        if let Some((seen, seen_digest)) = self.highest {
            if policy.version < seen {
                return Err(CertError::PolicyRollback { seen, got: policy.version });
            }
            if policy.version == seen && !bool::from(digest.ct_eq(&seen_digest)) {
                return Err(CertError::PolicyConflict { version: seen });
            }
        }
        self.highest = Some((policy.version, digest));
        Ok(VerifiedPolicy { policy: policy.clone(), network_key: self.network_key })
    }
}
