//! A deterministic little network for protocol tests: users with devices,
//! signed device lists and pre-keys, an optional retention device and policy.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::collections::HashMap;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use strongroom_crypto::certs::*;
use strongroom_crypto::envelope::*;
use strongroom_crypto::ids::*;
use strongroom_crypto::keys::*;

pub const NOW: u64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z in ms
pub const YEAR_MS: u64 = 365 * 24 * 3600 * 1000;

pub struct Device {
    pub id: DeviceId,
    pub key: SigningKey,
    pub prekeys: HashMap<PreKeyRef, AgreementSecret>,
    pub signed: Vec<SignedPreKey>,
}

pub struct User {
    pub id: UserId,
    pub identity: SigningKey,
    pub devices: Vec<Device>,
    pub list: DeviceList,
}

pub struct Retention {
    pub device: RetentionDevice,
    pub secret: AgreementSecret,
    pub keys: HashMap<PreKeyRef, AgreementSecret>,
}

pub struct World {
    pub rng: ChaCha20Rng,
    pub net: NetworkId,
    pub network_key: SigningKey,
    pub users: Vec<User>,
    pub retention: Option<Retention>,
    pub policy: NetworkPolicy,
    pub counter: std::sync::atomic::AtomicU64,
}

pub const MEDIUM: PreKeyRef = PreKeyRef { kind: PreKeyKind::MediumTerm, id: 1 };

impl World {
    /// `devices[i]` devices for user i; a retention device if `retention`.
    pub fn new(seed: u64, devices: &[usize], retention: bool) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let net = NetworkId::random(&mut rng);
        let network_key = SigningKey::generate(&mut rng);
        let mut users = Vec::new();
        for &n in devices {
            let id = UserId::random(&mut rng);
            let identity = SigningKey::generate(&mut rng);
            let mut devs = Vec::new();
            for d in 0..n {
                let dev_id = DeviceId::random(&mut rng);
                let key = SigningKey::generate(&mut rng);
                let mut prekeys = HashMap::new();
                let mut signed = Vec::new();
                for r in [MEDIUM, PreKeyRef { kind: PreKeyKind::OneTime, id: 100 }] {
                    let secret = AgreementSecret::generate(&mut rng);
                    signed.push(
                        SignedPreKey::sign(&key, net, id, dev_id, r, secret.public(), NOW - 1000, NOW + YEAR_MS)
                            .unwrap(),
                    );
                    prekeys.insert(r, secret);
                }
                let _ = d;
                devs.push(Device { id: dev_id, key, prekeys, signed });
            }
            let entries = devs
                .iter()
                .enumerate()
                .map(|(i, d)| DeviceEntry {
                    device_id: d.id,
                    signing_key: d.key.verifying_key(),
                    created_at: NOW - 5000,
                    revoked: false,
                    versions: strongroom_crypto::suite::SUPPORTED_VERSIONS,
                    name: format!("device {i}"),
                })
                .collect();
            let list = DeviceList::first(&identity, net, id, NOW - 5000, entries).unwrap();
            users.push(User { id, identity, devices: devs, list });
        }
        let retention = retention.then(|| {
            let secret = AgreementSecret::generate(&mut rng);
            let device = RetentionDevice {
                device_id: DeviceId::random(&mut rng),
                signing_key: SigningKey::generate(&mut rng).verifying_key(),
                agreement_key: secret.public(),
                agreement_key_id: 7,
                versions: strongroom_crypto::suite::SUPPORTED_VERSIONS,
                state: RetentionState::Active,
                name: "Acme compliance archive".into(),
            };
            let mut keys = HashMap::new();
            keys.insert(
                PreKeyRef { kind: PreKeyKind::Retention, id: 7 },
                AgreementSecret::from_bytes(secret.expose_bytes().clone()).unwrap(),
            );
            Retention { device, secret, keys }
        });
        let policy = NetworkPolicy::sign(
            &network_key,
            net,
            1,
            NOW - 10_000,
            retention.iter().map(|r| r.device.clone()).collect(),
        )
        .unwrap();
        Self { rng, net, network_key, users, retention, policy, counter: std::sync::atomic::AtomicU64::new(0) }
    }

    pub fn expectation(&self, u: usize) -> DeviceListExpectation {
        DeviceListExpectation {
            network_id: self.net,
            user_id: self.users[u].id,
            pinned_identity: Some(self.users[u].identity.verifying_key()),
            seen: None,
        }
    }

    pub fn verified_list(&self, u: usize) -> VerifiedDeviceList {
        self.users[u].list.verify(&self.expectation(u)).unwrap()
    }

    pub fn verified_policy(&self) -> VerifiedPolicy {
        PolicyTracker::new(self.network_key.verifying_key(), self.net).verify(&self.policy).unwrap()
    }

    /// Every device of the given users (medium-term pre-key), plus retention.
    pub fn recipients(&self, users: &[usize]) -> Vec<Recipient> {
        let mut out = Vec::new();
        for &u in users {
            let list = self.verified_list(u);
            for d in &self.users[u].devices {
                let dev = list.device(d.id).unwrap();
                let pk = d.signed.iter().find(|s| s.key_ref == MEDIUM).unwrap();
                out.push(Recipient::from(&pk.verify(&dev, NOW).unwrap()));
            }
        }
        out.extend(self.verified_policy().retention_recipients());
        out
    }

    pub fn sender(&self, u: usize, d: usize) -> Sender<'_> {
        Sender {
            network_id: self.net,
            user_id: self.users[u].id,
            identity_key: self.users[u].identity.verifying_key(),
            device_id: self.users[u].devices[d].id,
            signing_key: &self.users[u].devices[d].key,
        }
    }

    pub fn me(&self, u: usize, d: usize) -> RecipientDevice {
        RecipientDevice {
            network_id: self.net,
            user_id: self.users[u].id,
            identity_key: self.users[u].identity.verifying_key(),
            device_id: self.users[u].devices[d].id,
        }
    }

    pub fn retention_me(&self) -> RecipientDevice {
        RecipientDevice {
            network_id: self.net,
            user_id: UserId::RETENTION,
            identity_key: self.network_key.verifying_key(),
            device_id: self.retention.as_ref().unwrap().device.device_id,
        }
    }

    /// Metadata with a fresh message id.
    pub fn meta(&self) -> MessageMeta {
        let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let mut id = [0x4d; 16];
        id[8..].copy_from_slice(&n.to_be_bytes());
        MessageMeta {
            host_network_id: self.net,
            conversation_id: ConversationId::from_bytes([0x42; 16]),
            message_id: MessageId::from_bytes(id),
            timestamp: NOW,
            ttl_secs: 0,
            burn_on_read_secs: 0,
            membership: MembershipCommitment::default(),
        }
    }
}
