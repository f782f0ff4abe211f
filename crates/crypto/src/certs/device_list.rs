use super::{check_versions, key, CertError};
use crate::codec::{Reader, Writer};
use crate::ids::{DeviceId, NetworkId, UserId};
use crate::keys::{signing_input, Signature, SigningKey, VerifyingKey};
use crate::suite::{check_version, label, Suite, PROTOCOL_VERSION};

/// Most devices one user may have listed (active and revoked).
pub const MAX_DEVICES: usize = 256;
/// Longest device name, in bytes of UTF-8.
pub const MAX_DEVICE_NAME: usize = 64;

/// One device in a user's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    /// The device.
    pub device_id: DeviceId,
    /// Its Ed25519 signing key.
    pub signing_key: VerifyingKey,
    /// When it was added (ms since the Unix epoch).
    pub created_at: u64,
    /// Revoked devices stay listed so peers can tell "revoked" from "unknown".
    pub revoked: bool,
    /// Protocol versions the device can open: bit v set = version v
    /// ([`crate::suite::SUPPORTED_VERSIONS`] for this crate). A sender never
    /// sends a version the device lacks.
    pub versions: u32,
    /// A label the user chose ("laptop").
    pub name: String,
}

/// A user's devices, signed by the user's identity key, which only the
/// account's primary device holds (PROTOCOL.md §8).
///
/// Lists form a hash chain: list `n + 1` names the SHA-256 of list `n`
/// ([`DeviceList::digest`]) and the first list has version 1 and 32 zero
/// bytes. A list cannot skip versions, so a list signed at version 2^64 − 1
/// cannot follow anything a peer has seen, and a revoked device stays
/// revoked in every later list.
///
/// Encoding: `version u8 | suite u16 | network 16 | user 16 | identity key 32 |
/// list version u64 | previous 32 | issued_at u64 | count u16 | entries | signature 64`;
/// entry: `device 16 | signing key 32 | created_at u64 | revoked u8 (0/1) |
/// versions u32 | name (u16 length | UTF-8)`. Entries are in strictly ascending device id
/// order. Signature over `"strongroom/v2/device-list" 0x00 | everything before it`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceList {
    /// Network of the user.
    pub network_id: NetworkId,
    /// Whose devices.
    pub user_id: UserId,
    /// The identity key that signed the list.
    pub identity_key: VerifyingKey,
    /// 1 for the first list, then exactly one more than the list it follows.
    pub version: u64,
    /// SHA-256 of the list this one follows; zeros for version 1.
    pub previous: [u8; 32],
    /// When it was signed (ms).
    pub issued_at: u64,
    /// The devices, ascending by id.
    pub devices: Vec<DeviceEntry>,
    signature: Signature,
}

/// What the caller already knows about the user whose list it checks.
#[derive(Debug, Clone, Copy)]
pub struct DeviceListExpectation {
    /// The caller's network.
    pub network_id: NetworkId,
    /// The user asked for.
    pub user_id: UserId,
    /// The identity key pinned on first use, if any.
    pub pinned_identity: Option<VerifyingKey>,
    /// The highest list version seen before and the SHA-256 of that list
    /// ([`DeviceList::digest`]), if any: an older version is a rollback, a
    /// different list under the same version is the relay showing two views,
    /// the next version must name that digest, and a later one needs the
    /// lists in between ([`VerifiedDeviceList::successor`]).
    pub seen: Option<(u64, [u8; 32])>,
}

/// A device list whose signature and identity were checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDeviceList {
    list: DeviceList,
}

/// One active device from a verified list: safe to encrypt to (given a
/// verified pre-key) and to accept signatures from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedDevice {
    pub(crate) network_id: NetworkId,
    pub(crate) user_id: UserId,
    pub(crate) identity_key: VerifyingKey,
    pub(crate) device_id: DeviceId,
    pub(crate) signing_key: VerifyingKey,
    pub(crate) versions: u32,
}

impl VerifiedDevice {
    /// Network.
    pub fn network_id(&self) -> NetworkId {
        self.network_id
    }
    /// Owner.
    pub fn user_id(&self) -> UserId {
        self.user_id
    }
    /// Owner's identity key.
    pub fn identity_key(&self) -> VerifyingKey {
        self.identity_key
    }
    /// Device.
    pub fn device_id(&self) -> DeviceId {
        self.device_id
    }
    /// Device signing key.
    pub fn signing_key(&self) -> VerifyingKey {
        self.signing_key
    }
    /// Protocol versions it advertises (bit v = version v).
    pub fn versions(&self) -> u32 {
        self.versions
    }
}

impl DeviceList {
    /// Signs the first device list of an identity key (version 1).
    pub fn first(
        identity: &SigningKey,
        network_id: NetworkId,
        user_id: UserId,
        issued_at: u64,
        devices: Vec<DeviceEntry>,
    ) -> Result<Self, CertError> {
        Self::sign(identity, network_id, user_id, 1, [0; 32], issued_at, devices)
    }

    /// Signs the list that follows this one: the next version, chained to
    /// this list's digest.
    pub fn next(&self, identity: &SigningKey, issued_at: u64, devices: Vec<DeviceEntry>) -> Result<Self, CertError> {
        let version = self.version.checked_add(1).ok_or(CertError::Invalid("device list version exhausted"))?;
        Self::sign(identity, self.network_id, self.user_id, version, self.digest(), issued_at, devices)
    }

    /// Signs a device list with the user's identity key. Sorts the devices
    /// and refuses duplicates and out-of-range fields; [`DeviceList::first`]
    /// and [`DeviceList::next`] pick `version` and `previous` for the chain.
    pub fn sign(
        identity: &SigningKey,
        network_id: NetworkId,
        user_id: UserId,
        version: u64,
        previous: [u8; 32],
        issued_at: u64,
        mut devices: Vec<DeviceEntry>,
    ) -> Result<Self, CertError> {
        devices.sort_by_key(|d| d.device_id);
        check_entries(&devices)?;
        check_chain_start(version, &previous)?;
        let mut list = Self {
            network_id,
            user_id,
            identity_key: identity.verifying_key(),
            version,
            previous,
            issued_at,
            devices,
            signature: Signature([0; 64]),
        };
        list.signature = identity.sign(&signing_input(label::DEVICE_LIST, &list.body()));
        Ok(list)
    }

    fn body(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(100 + self.devices.len() * 100);
        w.u8(PROTOCOL_VERSION)
            .u16(Suite::Curve25519Aes256Gcm.id())
            .raw(&self.network_id.0)
            .raw(&self.user_id.0)
            .raw(&self.identity_key.0)
            .u64(self.version)
            .raw(&self.previous)
            .u64(self.issued_at)
            .u16(u16::try_from(self.devices.len()).unwrap_or(u16::MAX));
        for d in &self.devices {
            w.raw(&d.device_id.0)
                .raw(&d.signing_key.0)
                .u64(d.created_at)
                .u8(u8::from(d.revoked))
                .u32(d.versions)
                .bytes16(d.name.as_bytes());
        }
        w.finish()
    }

    /// SHA-256 of the encoding: what a device remembers per user with the
    /// version, to refuse a different list under the same version.
    pub fn digest(&self) -> [u8; 32] {
        crate::primitives::sha256(&[&self.encode()])
    }

    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = self.body();
        v.extend_from_slice(&self.signature.0);
        v
    }

    /// Parses the wire encoding (does not check the signature).
    pub fn decode(bytes: &[u8]) -> Result<Self, CertError> {
        let e = CertError::decode("device list");
        let mut r = Reader::new(bytes);
        check_version(r.u8("version").map_err(&e)?)?;
        Suite::from_id(r.u16("suite").map_err(&e)?)?;
        let network_id = NetworkId(r.array("network id").map_err(&e)?);
        let user_id = UserId(r.array("user id").map_err(&e)?);
        let identity_key = key(r.array("identity key").map_err(&e)?)?;
        let version = r.u64("list version").map_err(&e)?;
        let previous = r.array("previous list digest").map_err(&e)?;
        let issued_at = r.u64("issued_at").map_err(&e)?;
        let n = r.count16("device count", MAX_DEVICES, 16 + 32 + 8 + 1 + 4 + 2).map_err(&e)?;
        let mut devices = Vec::with_capacity(n);
        for _ in 0..n {
            devices.push(DeviceEntry {
                device_id: DeviceId(r.array("device id").map_err(&e)?),
                signing_key: key(r.array("device signing key").map_err(&e)?)?,
                created_at: r.u64("device created_at").map_err(&e)?,
                revoked: r.bool("device revoked flag").map_err(&e)?,
                versions: r.u32("device versions").map_err(&e)?,
                name: r.str16("device name", MAX_DEVICE_NAME).map_err(&e)?.to_owned(),
            });
        }
        let signature = Signature(r.array("signature").map_err(&e)?);
        r.finish("device list").map_err(&e)?;
        check_entries(&devices)?;
        check_chain_start(version, &previous)?;
        Ok(Self { network_id, user_id, identity_key, version, previous, issued_at, devices, signature })
    }

    /// Checks the list against what the caller knows: network, user, pinned
    /// identity key, no rollback, and the identity key's signature.
    pub fn verify(&self, expect: &DeviceListExpectation) -> Result<VerifiedDeviceList, CertError> {
        if self.network_id != expect.network_id {
            return Err(CertError::WrongNetwork { expected: expect.network_id, got: self.network_id });
        }
        if self.user_id != expect.user_id {
            return Err(CertError::WrongUser { expected: expect.user_id, got: self.user_id });
        }
        if let Some(pinned) = expect.pinned_identity {
            if pinned != self.identity_key {
                return Err(CertError::IdentityChanged { user: self.user_id });
            }
        }
        self.identity_key
            .verify(&signing_input(label::DEVICE_LIST, &self.body()), &self.signature)
            .map_err(|_| CertError::BadSignature { what: "device list" })?;
        if let Some((seen, digest)) = expect.seen {
            if self.version < seen {
                return Err(CertError::DeviceListRollback { seen, got: self.version });
            }
            if self.version == seen && !same_digest(&self.digest(), &digest) {
                return Err(CertError::DeviceListConflict { version: seen });
            }
            if self.version == seen.saturating_add(1) && !same_digest(&self.previous, &digest) {
                return Err(CertError::DeviceListFork { version: self.version });
            }
            if self.version > seen.saturating_add(1) {
                return Err(CertError::DeviceListGap { seen, got: self.version });
            }
        }
        Ok(VerifiedDeviceList { list: self.clone() })
    }
}

fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(&a[..], &b[..]))
}

/// Version 0 does not exist; only version 1 starts a chain (zero digest).
fn check_chain_start(version: u64, previous: &[u8; 32]) -> Result<(), CertError> {
    match (version, previous.iter().all(|b| *b == 0)) {
        (0, _) => Err(CertError::Invalid("device list version 0 does not exist; the first list is version 1")),
        (1, false) => Err(CertError::Invalid("device list version 1 starts a chain and names no previous list")),
        (2.., true) => Err(CertError::Invalid("a device list after version 1 must name the digest of the list before")),
        _ => Ok(()),
    }
}

fn check_entries(devices: &[DeviceEntry]) -> Result<(), CertError> {
    if devices.len() > MAX_DEVICES {
        return Err(CertError::Invalid("too many devices in the list (limit 256)"));
    }
    for d in devices {
        if d.name.len() > MAX_DEVICE_NAME {
            return Err(CertError::Invalid("device name longer than 64 bytes"));
        }
        check_versions(d.versions)?;
    }
    super::check_ascending(devices, |d| d.device_id, "device list entries are not in ascending id order")
}

impl VerifiedDeviceList {
    /// Checks `next` as the list that follows this one: same network, user
    /// and identity key, the next version, this list's digest as its
    /// `previous`, a valid signature, and every device revoked here still
    /// listed and revoked (revocation is final).
    pub fn successor(&self, next: &DeviceList) -> Result<VerifiedDeviceList, CertError> {
        let expect = DeviceListExpectation {
            network_id: self.list.network_id,
            user_id: self.list.user_id,
            pinned_identity: Some(self.list.identity_key),
            seen: Some((self.list.version, self.list.digest())),
        };
        if next.version <= self.list.version {
            return Err(CertError::DeviceListRollback { seen: self.list.version, got: next.version });
        }
        let verified = next.verify(&expect)?;
        for old in self.list.devices.iter().filter(|d| d.revoked) {
            let still = next.devices.iter().any(|d| d.device_id == old.device_id && d.revoked);
            if !still {
                return Err(CertError::DeviceRevived { user: self.list.user_id, device: old.device_id });
            }
        }
        Ok(verified)
    }

    /// What changed from `before` to this list: devices added, and devices
    /// revoked (or dropped), by name, for showing to people.
    pub fn changes_since<'a>(&'a self, before: &'a DeviceList) -> (Vec<&'a DeviceEntry>, Vec<&'a DeviceEntry>) {
        let active = |l: &DeviceList, id: DeviceId| l.devices.iter().any(|d| d.device_id == id && !d.revoked);
        let added = self.list.devices.iter().filter(|d| !d.revoked && !active(before, d.device_id)).collect();
        let removed = before.devices.iter().filter(|d| !d.revoked && !active(&self.list, d.device_id)).collect();
        (added, removed)
    }

    /// The verified list.
    pub fn list(&self) -> &DeviceList {
        &self.list
    }

    /// The user's identity key (the one that signed).
    pub fn identity_key(&self) -> VerifyingKey {
        self.list.identity_key
    }

    /// Looks up an active device: unknown and revoked devices are errors.
    pub fn device(&self, device_id: DeviceId) -> Result<VerifiedDevice, CertError> {
        let entry = self
            .list
            .devices
            .binary_search_by_key(&device_id, |d| d.device_id)
            .ok()
            .and_then(|i| self.list.devices.get(i))
            .ok_or(CertError::UnknownDevice { user: self.list.user_id, device: device_id })?;
        if entry.revoked {
            return Err(CertError::RevokedDevice { user: self.list.user_id, device: device_id });
        }
        Ok(self.verified(entry))
    }

    /// A device the list names as revoked, for checking what it signed
    /// before (a membership statement a current device's later statement
    /// vouches for). Never a recipient or a sender.
    pub fn revoked_device(&self, device_id: DeviceId) -> Result<VerifiedDevice, CertError> {
        self.list
            .devices
            .iter()
            .find(|d| d.device_id == device_id && d.revoked)
            .map(|d| self.verified(d))
            .ok_or(CertError::UnknownDevice { user: self.list.user_id, device: device_id })
    }

    /// Every active device.
    pub fn active_devices(&self) -> impl Iterator<Item = VerifiedDevice> + '_ {
        self.list.devices.iter().filter(|d| !d.revoked).map(|d| self.verified(d))
    }

    fn verified(&self, d: &DeviceEntry) -> VerifiedDevice {
        VerifiedDevice {
            network_id: self.list.network_id,
            user_id: self.list.user_id,
            identity_key: self.list.identity_key,
            device_id: d.device_id,
            signing_key: d.signing_key,
            versions: d.versions,
        }
    }
}
