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
/// Most federation partners one policy may name.
pub const MAX_PARTNERS: usize = 64;
/// Longest partner relay URL, in bytes.
pub const MAX_RELAY_URL: usize = 256;
/// Longest retention-period floor: 100 years.
pub const MAX_RETENTION_FLOOR_DAYS: u32 = 36_500;
const MAX_ENTRIES: usize = MAX_RETENTION_DEVICES + MAX_PARTNERS + 1;
const MAX_ENTRY_BODY: usize = 1024;

const ENTRY_RETENTION: u8 = 1;
const ENTRY_PARTNER: u8 = 2;
const ENTRY_RETENTION_FLOOR: u8 = 3;

/// Whether a retention device still receives new messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetentionState {
    /// Every envelope is wrapped to it.
    Active,
    /// Being replaced: senders no longer wrap to it, but it may still log in
    /// and archive what is queued for it.
    Draining,
}

/// A retention device certified by the network key: every envelope in the
/// network must carry a wrap for it while it is active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionDevice {
    /// Its device id (under [`crate::ids::UserId::RETENTION`]).
    pub device_id: DeviceId,
    /// Its Ed25519 key (signs its logins and archive checkpoints).
    pub signing_key: VerifyingKey,
    /// Its X25519 key that message keys are wrapped to.
    pub agreement_key: AgreementPublic,
    /// Id of that agreement key (changes when it is rotated).
    pub agreement_key_id: u32,
    /// Protocol versions it opens (bit v = version v).
    pub versions: u32,
    /// Active or draining.
    pub state: RetentionState,
    /// Shown to users ("Acme compliance archive").
    pub name: String,
}

/// A partner network whose users may share conversations with this one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederationPartner {
    /// The partner network.
    pub network_id: NetworkId,
    /// Fingerprint of the partner's network key (§2), as its administrators
    /// read it out: the key every partner statement is checked against.
    pub key_fingerprint: [u8; 32],
    /// The partner relay (`https://…`).
    pub relay_url: String,
    /// The partner relay's Ed25519 key (authenticates relay-to-relay traffic).
    pub relay_key: VerifyingKey,
    /// Allowed features: bit 0 messages, 1 files, 2 calls, 3 location.
    pub features: u32,
}

/// Feature bits a partner entry may allow.
pub mod partner_features {
    /// Messages.
    pub const MESSAGES: u32 = 1;
    /// Files.
    pub const FILES: u32 = 1 << 1;
    /// Calls.
    pub const CALLS: u32 = 1 << 2;
    /// Location.
    pub const LOCATION: u32 = 1 << 3;
    /// Every defined bit.
    pub const ALL: u32 = MESSAGES | FILES | CALLS | LOCATION;
}

/// What a policy says, entry by entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PolicyEntries {
    /// Retention devices (entry type 1). None active means retention is off.
    pub retention: Vec<RetentionDevice>,
    /// Federation partners (entry type 2).
    pub partners: Vec<FederationPartner>,
    /// The shortest retention period any rule may set, in days (entry type 3).
    pub retention_floor_days: Option<u32>,
}

/// The network's signed policy: a list of typed entries.
///
/// Encoding (PROTOCOL.md §3.3): `version u8 | suite u16 | network 16 |
/// policy version u64 | issued_at u64 | count u16 | entries | signature 64`;
/// entry: `type u8 | body (u16 length | bytes)`, strictly ascending by
/// (type, key). An unknown type is refused, never skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicy {
    /// The network.
    pub network_id: NetworkId,
    /// Strictly increases with every new policy.
    pub version: u64,
    /// When it was signed (ms).
    pub issued_at: u64,
    /// Retention devices, ascending by id.
    pub retention: Vec<RetentionDevice>,
    /// Federation partners, ascending by network id.
    pub partners: Vec<FederationPartner>,
    /// Retention-period floor in days.
    pub retention_floor_days: Option<u32>,
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
        self.policy.active_retention().next().is_some()
    }
    /// The network key that signed it (the retention devices' "identity").
    pub fn network_key(&self) -> VerifyingKey {
        self.network_key
    }
}

impl NetworkPolicy {
    /// Signs a policy naming only retention devices.
    pub fn sign(
        network_key: &SigningKey,
        network_id: NetworkId,
        version: u64,
        issued_at: u64,
        retention: Vec<RetentionDevice>,
    ) -> Result<Self, CertError> {
        Self::sign_entries(
            network_key,
            network_id,
            version,
            issued_at,
            PolicyEntries { retention, ..PolicyEntries::default() },
        )
    }

    /// Signs a policy with every kind of entry. Sorts the entries and refuses
    /// duplicates and out-of-range fields.
    pub fn sign_entries(
        network_key: &SigningKey,
        network_id: NetworkId,
        version: u64,
        issued_at: u64,
        mut entries: PolicyEntries,
    ) -> Result<Self, CertError> {
        entries.retention.sort_by_key(|d| d.device_id);
        entries.partners.sort_by_key(|p| p.network_id);
        let mut p = Self {
            network_id,
            version,
            issued_at,
            retention: entries.retention,
            partners: entries.partners,
            retention_floor_days: entries.retention_floor_days,
            signature: Signature([0; 64]),
        };
        p.check()?;
        p.signature = network_key.sign(&signing_input(label::NETWORK_POLICY, &p.body()));
        Ok(p)
    }

    /// Its entries, as the next policy starts from them (every entry kept
    /// unless changed).
    pub fn entries(&self) -> PolicyEntries {
        PolicyEntries {
            retention: self.retention.clone(),
            partners: self.partners.clone(),
            retention_floor_days: self.retention_floor_days,
        }
    }

    /// Retention devices senders must wrap to.
    pub fn active_retention(&self) -> impl Iterator<Item = &RetentionDevice> {
        self.retention.iter().filter(|d| d.state == RetentionState::Active)
    }

    fn entry_count(&self) -> usize {
        self.retention.len() + self.partners.len() + usize::from(self.retention_floor_days.is_some())
    }

    fn body(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(64 + self.entry_count() * 200);
        w.u8(PROTOCOL_VERSION)
            .u16(Suite::Curve25519Aes256Gcm.id())
            .raw(&self.network_id.0)
            .u64(self.version)
            .u64(self.issued_at)
            .u16(u16::try_from(self.entry_count()).unwrap_or(u16::MAX));
        for d in &self.retention {
            let mut b = Writer::with_capacity(160);
            b.raw(&d.device_id.0)
                .raw(&d.signing_key.0)
                .raw(&d.agreement_key.0)
                .u32(d.agreement_key_id)
                .u32(d.versions)
                .u8(match d.state {
                    RetentionState::Active => 1,
                    RetentionState::Draining => 2,
                })
                .bytes16(d.name.as_bytes());
            w.u8(ENTRY_RETENTION).bytes16(&b.finish());
        }
        for p in &self.partners {
            let mut b = Writer::with_capacity(160 + p.relay_url.len());
            b.raw(&p.network_id.0)
                .raw(&p.key_fingerprint)
                .bytes16(p.relay_url.as_bytes())
                .raw(&p.relay_key.0)
                .u32(p.features);
            w.u8(ENTRY_PARTNER).bytes16(&b.finish());
        }
        if let Some(days) = self.retention_floor_days {
            w.u8(ENTRY_RETENTION_FLOOR).bytes16(&days.to_be_bytes());
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
        let n = r.count16("policy entry count", MAX_ENTRIES, 1 + 2).map_err(&e)?;
        let mut p = Self {
            network_id,
            version,
            issued_at,
            retention: Vec::new(),
            partners: Vec::new(),
            retention_floor_days: None,
            signature: Signature([0; 64]),
        };
        let mut last_type = 0u8;
        for _ in 0..n {
            let kind = r.u8("policy entry type").map_err(&e)?;
            if kind < last_type {
                return Err(CertError::Invalid("policy entries are not in ascending type order"));
            }
            last_type = kind;
            let body = r.bytes16("policy entry", MAX_ENTRY_BODY).map_err(&e)?;
            let mut b = Reader::new(body);
            match kind {
                ENTRY_RETENTION => {
                    p.retention.push(RetentionDevice {
                        device_id: DeviceId(b.array("retention device id").map_err(&e)?),
                        signing_key: super::key(b.array("retention signing key").map_err(&e)?)?,
                        agreement_key: super::agreement_key(b.array("retention agreement key").map_err(&e)?)?,
                        agreement_key_id: b.u32("retention agreement key id").map_err(&e)?,
                        versions: b.u32("retention versions").map_err(&e)?,
                        state: match b.u8("retention state").map_err(&e)? {
                            1 => RetentionState::Active,
                            2 => RetentionState::Draining,
                            _ => return Err(CertError::Invalid("retention state must be 1 (active) or 2 (draining)")),
                        },
                        name: b.str16("retention device name", MAX_RETENTION_NAME).map_err(&e)?.to_owned(),
                    });
                    b.finish("retention device entry").map_err(&e)?;
                }
                ENTRY_PARTNER => {
                    p.partners.push(FederationPartner {
                        network_id: NetworkId(b.array("partner network id").map_err(&e)?),
                        key_fingerprint: b.array("partner key fingerprint").map_err(&e)?,
                        relay_url: b.str16("partner relay URL", MAX_RELAY_URL).map_err(&e)?.to_owned(),
                        relay_key: super::key(b.array("partner relay key").map_err(&e)?)?,
                        features: b.u32("partner features").map_err(&e)?,
                    });
                    b.finish("federation partner entry").map_err(&e)?;
                }
                ENTRY_RETENTION_FLOOR => {
                    if p.retention_floor_days.is_some() {
                        return Err(CertError::Invalid("more than one retention-period floor"));
                    }
                    p.retention_floor_days = Some(b.u32("retention floor days").map_err(&e)?);
                    b.finish("retention floor entry").map_err(&e)?;
                }
                other => return Err(CertError::UnknownPolicyEntry(other)),
            }
        }
        p.signature = Signature(r.array("signature").map_err(&e)?);
        r.finish("network policy").map_err(&e)?;
        p.check()?;
        Ok(p)
    }

    /// SHA-256 of the encoding: what a tracker remembers per version.
    pub fn digest(&self) -> [u8; 32] {
        sha256(&[&self.encode()])
    }

    fn check(&self) -> Result<(), CertError> {
        if self.retention.len() > MAX_RETENTION_DEVICES {
            return Err(CertError::Invalid("too many retention devices (limit 16)"));
        }
        for d in &self.retention {
            if d.name.len() > MAX_RETENTION_NAME {
                return Err(CertError::Invalid("retention device name longer than 64 bytes"));
            }
            super::check_versions(d.versions)?;
        }
        super::check_ascending(&self.retention, |d| d.device_id, "retention devices are not in ascending id order")?;
        if self.partners.len() > MAX_PARTNERS {
            return Err(CertError::Invalid("too many federation partners (limit 64)"));
        }
        for pair in self.partners.windows(2) {
            if let [a, b] = pair {
                if a.network_id >= b.network_id {
                    return Err(CertError::Invalid("federation partners are not in strictly ascending network order"));
                }
            }
        }
        for partner in &self.partners {
            if partner.network_id == self.network_id {
                return Err(CertError::Invalid("a network cannot be its own federation partner"));
            }
            if partner.relay_url.len() > MAX_RELAY_URL || !partner.relay_url.starts_with("https://") {
                return Err(CertError::Invalid("partner relay URL must be https:// and at most 256 bytes"));
            }
            if partner.features & !partner_features::ALL != 0 {
                return Err(CertError::Invalid("partner features name an undefined bit"));
            }
        }
        if let Some(days) = self.retention_floor_days {
            if !(1..=MAX_RETENTION_FLOOR_DAYS).contains(&days) {
                return Err(CertError::Invalid("retention-period floor must be 1 to 36500 days"));
            }
        }
        Ok(())
    }
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
