//! The archive: an append-only log of encrypted records in segments, each
//! record a leaf of an RFC 6962 Merkle tree, with checkpoints (tree size and
//! root) signed by the retention device.
//!
//! Layout under the destination (a local directory or an object store):
//!
//! ```text
//! archive.json                      network, device, its signing key (public)
//! segments/<first index, 16 digits>.seg
//! checkpoints/<tree size, 16 digits>.ckpt
//! files/<blob id>                   encrypted file bytes, as the relay held them
//! retired/<first index>.leaves      on a WORM bucket: the leaf hashes of a
//!                                   segment whose records were all deleted
//! ```
//!
//! Segment entries: `0x01 | len u32 | salt 32 | AES-256-GCM(record JSON)`,
//! leaf data `index u64 | salt | ciphertext`; or, once deleted under a
//! retention period, `0x02 | leaf hash 32` (the log stays provable). Then
//! `0x03 | signature 64`: the device's Ed25519 signature over the entries
//! (`strongroom/v2/archive-segment`: network, device, first index, their
//! SHA-256), so only the device adds segments; a reader holds the archive
//! key, which seals records, but not this key.
//!
//! Each record has its own key, `HKDF-SHA256(salt = 32 fresh random bytes,
//! IKM = archive key, info = "strongroom/v2/archive-record" 0x00 | network |
//! device | index u64)`, and is sealed once with nonce 0 and that same info
//! as associated data. No nonce can repeat under a key — not even when an
//! append is retried at the same index after a crash — so the archive key
//! has no usage limit (PROTOCOL.md §10).
//! Checkpoint: `tree size u64 | root 32 | timestamp u64 | signature 64`.
//! Segments and checkpoints are written whole (an object, or a file renamed
//! into place), so a crash never leaves half of one.
//!
//! On a bucket with S3 Object Lock (WORM) nothing is ever rewritten: a purge
//! appends its deletion record, and once every record of a segment is
//! deleted, writes the segment's leaf hashes to `retired/` (a new object)
//! and deletes the segment's key (a delete marker: the locked version stays
//! until its retention ends). Records deleted but still in a kept segment
//! are skipped by every reader.

use std::collections::HashSet;
use std::sync::Arc;

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use aws_lc_rs::hkdf;
use object_store::path::Path as ObjPath;
use object_store::{ObjectStore, PutPayload};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use strongroom_crypto::certs::{ArchiveCheckpoint, ArchiveSegment};
use strongroom_crypto::ids::{DeviceId, NetworkId};
use strongroom_crypto::keys::{SecretBytes, Signature, SigningKey, VerifyingKey};
use strongroom_crypto::merkle::{leaf_hash, Accumulator, Hash};

use crate::record::Record;
use crate::{hex, RetentionError};

const RECORD_LABEL: &[u8] = b"strongroom/v2/archive-record";
/// The archive format `archive.json` names.
pub const FORMAT: &str = "strongroom-archive-v2";
const TAG_SEALED: u8 = 1;
const TAG_REDACTED: u8 = 2;
/// The segment's signature, last: `0x03 | Ed25519 64` ([`ArchiveSegment`]).
const TAG_SIGNATURE: u8 = 3;
/// Checkpoint encoding length.
pub const CHECKPOINT_LEN: usize = 8 + 32 + 8 + 64;
/// Largest record accepted in a segment (a record holds at most one message).
const MAX_ENTRY: usize = 16 << 20;

/// Opens a destination: `s3://bucket/prefix` (credentials and endpoint from
/// the usual `AWS_*` variables), `memory:` (tests), or a local directory.
pub fn destination(spec: &str) -> Result<Arc<dyn ObjectStore>, RetentionError> {
    if spec.starts_with("s3://") {
        // The checksum header S3 requires on writes to an Object Lock bucket.
        let s3 = object_store::aws::AmazonS3Builder::from_env()
            .with_url(spec)
            .with_checksum_algorithm(object_store::aws::Checksum::SHA256)
            .build()?;
        let prefix = spec.trim_start_matches("s3://").split_once('/').map(|(_, p)| p.to_owned()).unwrap_or_default();
        if prefix.is_empty() {
            return Ok(Arc::new(s3));
        }
        return Ok(Arc::new(object_store::prefix::PrefixStore::new(s3, prefix.as_str())));
    }
    if spec == "memory:" {
        return Ok(Arc::new(object_store::memory::InMemory::new()));
    }
    let path = std::path::Path::new(spec);
    strongroom_client::private_fs::private_dir(path).map_err(crate::error::io(path))?;
    Ok(Arc::new(object_store::local::LocalFileSystem::new_with_prefix(path)?))
}

/// [`destination`], and whether it is WORM: on an S3 bucket with Object
/// Lock, whole-object writes carry the checksum headers the lock requires
/// ([`crate::locked_store::LockedStore`]) and purges never rewrite.
pub async fn open_destination(
    spec: &str,
) -> Result<(Arc<dyn ObjectStore>, Option<crate::aws::ObjectLock>), RetentionError> {
    let store = destination(spec)?;
    let bucket = match crate::aws::S3Bucket::for_destination(spec) {
        Ok(Some(bucket)) => bucket,
        Ok(None) => return Ok((store, None)),
        // Credentials from an instance role or SSO serve object_store, but
        // not the signed requests here: an ordinary bucket works as before;
        // a locked one refuses the writes (they lack its checksum header).
        Err(RetentionError::Usage(why)) => {
            tracing::warn!(%why, "cannot check the archive bucket for Object Lock; treating it as an ordinary bucket");
            return Ok((store, None));
        }
        Err(e) => return Err(e),
    };
    match bucket.lock().await.map_err(|e| {
        RetentionError::Cloud(format!(
            "cannot read the bucket's Object Lock settings (the credentials need s3:GetBucketObjectLockConfiguration): {e}"
        ))
    })? {
        Some(lock) => Ok((Arc::new(crate::locked_store::LockedStore::new(store, bucket, lock.days)), Some(lock))),
        None => Ok((store, None)),
    }
}

/// The directory a destination is, when it is a local one (its writes are
/// then fsynced by [`Archive::fsync_in`]).
pub fn local_dir(spec: &str) -> Option<std::path::PathBuf> {
    (!spec.starts_with("s3://") && spec != "memory:").then(|| std::path::PathBuf::from(spec))
}

/// `archive.json`: what the archive belongs to. No secrets.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ArchiveHeader {
    /// Format.
    pub format: String,
    /// Network (hex).
    pub network_id: String,
    /// Retention device (hex).
    pub device_id: String,
    /// Its checkpoint signing key (hex).
    pub signing_key: String,
    /// Created (ms).
    pub created_at: u64,
}

/// One segment entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// An encrypted record.
    Sealed {
        /// Random salt the record's own key is derived with.
        salt: [u8; 32],
        /// Ciphertext and tag.
        ciphertext: Vec<u8>,
    },
    /// A record deleted under a retention period: only its leaf hash remains.
    Redacted(Hash),
}

impl Entry {
    /// The leaf hash of this entry at `index`.
    pub fn leaf(&self, index: u64) -> Hash {
        match self {
            Entry::Sealed { salt, ciphertext } => {
                let mut data = Vec::with_capacity(40 + ciphertext.len());
                data.extend_from_slice(&index.to_be_bytes());
                data.extend_from_slice(salt);
                data.extend_from_slice(ciphertext);
                leaf_hash(&data)
            }
            Entry::Redacted(h) => *h,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Entry::Sealed { salt, ciphertext } => {
                out.push(TAG_SEALED);
                out.extend_from_slice(&((32 + ciphertext.len()) as u32).to_be_bytes());
                out.extend_from_slice(salt);
                out.extend_from_slice(ciphertext);
            }
            Entry::Redacted(h) => {
                out.push(TAG_REDACTED);
                out.extend_from_slice(h);
            }
        }
    }
}

/// Parses a segment (its signature, if any, is not checked here); the
/// error says at which byte and why.
pub fn parse_segment(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    parse_signed_segment(bytes).map(|(entries, _)| entries)
}

/// A segment's signature and the bytes it covers.
pub type SegmentSignature<'a> = Option<(Signature, &'a [u8])>;

/// A segment's entries and its signature with the bytes it covers.
pub fn parse_signed_segment(bytes: &[u8]) -> Result<(Vec<Entry>, SegmentSignature<'_>), String> {
    let mut entries = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let tag = bytes.get(at).copied().ok_or("truncated")?;
        match tag {
            TAG_SIGNATURE => {
                let sig: [u8; 64] = bytes
                    .get(at + 1..)
                    .filter(|rest| rest.len() == 64)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| format!("at byte {at}: a signature that is not the segment's last 65 bytes"))?;
                let body = bytes.get(..at).unwrap_or_default();
                return Ok((entries, Some((Signature::from_bytes(sig), body))));
            }
            TAG_SEALED => {
                let len_bytes: [u8; 4] = bytes
                    .get(at + 1..at + 5)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| format!("entry {} at byte {at}: truncated length", entries.len()))?;
                let len = u32::from_be_bytes(len_bytes) as usize;
                if !(32 + 16..=MAX_ENTRY).contains(&len) {
                    return Err(format!("entry {} at byte {at}: impossible length {len}", entries.len()));
                }
                let body = bytes
                    .get(at + 5..at + 5 + len)
                    .ok_or_else(|| format!("entry {} at byte {at}: truncated (needs {len} bytes)", entries.len()))?;
                let (salt, ciphertext) = body.split_at(32);
                let salt: [u8; 32] = salt.try_into().map_err(|_| "salt".to_owned())?;
                entries.push(Entry::Sealed { salt, ciphertext: ciphertext.to_vec() });
                at += 5 + len;
            }
            TAG_REDACTED => {
                let h: Hash = bytes
                    .get(at + 1..at + 33)
                    .and_then(|b| b.try_into().ok())
                    .ok_or_else(|| format!("entry {} at byte {at}: truncated deletion marker", entries.len()))?;
                entries.push(Entry::Redacted(h));
                at += 33;
            }
            other => return Err(format!("entry {} at byte {at}: unknown entry type {other}", entries.len())),
        }
    }
    Ok((entries, None))
}

/// The statement a segment's signature covers.
pub fn segment_statement(network: NetworkId, device: DeviceId, first: u64, body: &[u8]) -> ArchiveSegment {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body);
    let mut d = [0u8; 32];
    d.copy_from_slice(digest.as_ref());
    ArchiveSegment { network_id: network, device_id: device, first, digest: d }
}

/// Encodes entries into a segment.
pub fn encode_segment(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        e.encode(&mut out);
    }
    out
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// Leaves covered.
    pub tree_size: u64,
    /// Root over them.
    pub root: Hash,
    /// When (ms).
    pub timestamp: u64,
    /// By the retention device.
    pub signature: Signature,
}

impl StoredCheckpoint {
    /// Encodes to [`CHECKPOINT_LEN`] bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(CHECKPOINT_LEN);
        v.extend_from_slice(&self.tree_size.to_be_bytes());
        v.extend_from_slice(&self.root);
        v.extend_from_slice(&self.timestamp.to_be_bytes());
        v.extend_from_slice(self.signature.as_bytes());
        v
    }

    /// Decodes; `None` if the length is wrong.
    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != CHECKPOINT_LEN {
            return None;
        }
        Some(Self {
            tree_size: u64::from_be_bytes(b.get(0..8)?.try_into().ok()?),
            root: b.get(8..40)?.try_into().ok()?,
            timestamp: u64::from_be_bytes(b.get(40..48)?.try_into().ok()?),
            signature: Signature::from_bytes(b.get(48..112)?.try_into().ok()?),
        })
    }

    /// The signed statement.
    pub fn statement(&self, network: NetworkId, device: DeviceId) -> ArchiveCheckpoint {
        ArchiveCheckpoint {
            network_id: network,
            device_id: device,
            tree_size: self.tree_size,
            root: self.root,
            timestamp: self.timestamp,
        }
    }
}

/// Record encryption under the archive key (a key per record, derived).
pub struct Sealer {
    archive_key: SecretBytes<32>,
    network: NetworkId,
    device: DeviceId,
}

impl Sealer {
    /// For the archive of `device` in `network`.
    pub fn new(archive_key: &SecretBytes<32>, network: NetworkId, device: DeviceId) -> Result<Self, RetentionError> {
        Ok(Self { archive_key: archive_key.clone(), network, device })
    }

    /// `"strongroom/v2/archive-record" 0x00 | network | device | index u64`:
    /// both the HKDF info and the associated data.
    pub fn context(&self, index: u64) -> Vec<u8> {
        let mut a = Vec::with_capacity(RECORD_LABEL.len() + 41);
        a.extend_from_slice(RECORD_LABEL);
        a.push(0);
        a.extend_from_slice(self.network.as_bytes());
        a.extend_from_slice(self.device.as_bytes());
        a.extend_from_slice(&index.to_be_bytes());
        a
    }

    fn record_key(&self, salt: &[u8; 32], context: &[u8]) -> Option<LessSafeKey> {
        let key = self.record_key_bytes(salt, context)?;
        Some(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key.as_slice()).ok()?))
    }

    /// The key of the record sealed with `salt` under `context` (its own:
    /// disclosing it, as an export's proof does, opens that record alone).
    pub fn record_key_bytes(&self, salt: &[u8; 32], context: &[u8]) -> Option<zeroize::Zeroizing<[u8; 32]>> {
        struct Len;
        impl hkdf::KeyType for Len {
            fn len(&self) -> usize {
                32
            }
        }
        let mut key = zeroize::Zeroizing::new([0u8; 32]);
        hkdf::Salt::new(hkdf::HKDF_SHA256, salt)
            .extract(self.archive_key.expose())
            .expand(&[context], Len)
            .and_then(|okm| okm.fill(key.as_mut_slice()))
            .ok()?;
        Some(key)
    }

    /// Seals a record as leaf `index`, under a key of its own.
    pub fn seal(&self, index: u64, record: &Record) -> Result<Entry, RetentionError> {
        let mut salt = [0u8; 32];
        OsRng.fill_bytes(&mut salt);
        self.seal_with_salt(index, record, salt)
    }

    /// [`Sealer::seal`] with a given salt (test vectors; never reuse one).
    pub fn seal_with_salt(&self, index: u64, record: &Record, salt: [u8; 32]) -> Result<Entry, RetentionError> {
        let mut buf = zeroize::Zeroizing::new(
            serde_json::to_vec(record).map_err(|e| RetentionError::Corrupt(format!("record encoding: {e}")))?,
        );
        let context = self.context(index);
        let key = self.record_key(&salt, &context).ok_or_else(|| RetentionError::Corrupt("record key".into()))?;
        key.seal_in_place_append_tag(Nonce::assume_unique_for_key([0; 12]), Aad::from(&context), &mut *buf)
            .map_err(|_| RetentionError::Corrupt("sealing a record".into()))?;
        Ok(Entry::Sealed { salt, ciphertext: buf.to_vec() })
    }

    /// Opens leaf `index`; `None` if it does not authenticate there.
    pub fn open(&self, index: u64, salt: &[u8; 32], ciphertext: &[u8]) -> Option<Record> {
        let mut buf = zeroize::Zeroizing::new(ciphertext.to_vec());
        let context = self.context(index);
        let key = self.record_key(salt, &context)?;
        let plain = key.open_in_place(Nonce::assume_unique_for_key([0; 12]), Aad::from(&context), &mut buf).ok()?;
        serde_json::from_slice(plain).ok()
    }
}

/// A segment's name for its first index.
pub fn segment_name(first: u64) -> ObjPath {
    ObjPath::from(format!("segments/{first:016}.seg"))
}

/// A checkpoint's name for its tree size.
pub fn checkpoint_name(size: u64) -> ObjPath {
    ObjPath::from(format!("checkpoints/{size:016}.ckpt"))
}

/// A retired segment's leaf hashes (WORM).
pub fn retired_name(first: u64) -> ObjPath {
    ObjPath::from(format!("retired/{first:016}.leaves"))
}

/// Every segment in order, `(first index, path, retired)`: a retired one
/// (WORM) only where its segment's key is gone.
pub async fn segment_list(store: &dyn ObjectStore) -> Result<Vec<(u64, ObjPath, bool)>, RetentionError> {
    let mut all: std::collections::BTreeMap<u64, (ObjPath, bool)> = std::collections::BTreeMap::new();
    for (first, path) in numbered(store, "retired", "leaves").await? {
        all.insert(first, (path, true));
    }
    for (first, path) in numbered(store, "segments", "seg").await? {
        all.insert(first, (path, false));
    }
    Ok(all.into_iter().map(|(first, (path, retired))| (first, path, retired)).collect())
}

/// A segment's entries; a retired one's are its leaf hashes.
pub async fn load_entries(
    store: &dyn ObjectStore,
    path: &ObjPath,
    retired: bool,
) -> Result<Vec<Entry>, RetentionError> {
    let bytes = store.get(path).await?.bytes().await?;
    if retired {
        if bytes.is_empty() || bytes.len() % 32 != 0 {
            return Err(RetentionError::Corrupt(format!("{path}: {} bytes is not a list of leaf hashes", bytes.len())));
        }
        return Ok(bytes.chunks_exact(32).filter_map(|c| <[u8; 32]>::try_from(c).ok()).map(Entry::Redacted).collect());
    }
    parse_segment(&bytes).map_err(|e| RetentionError::Corrupt(format!("{path}: {e}")))
}

/// A file's name.
pub fn file_name(blob_id: &str) -> ObjPath {
    ObjPath::from(format!("files/{blob_id}"))
}

/// Objects under `prefix` whose names are `<16 digits>.<ext>`, sorted by number.
pub async fn numbered(store: &dyn ObjectStore, prefix: &str, ext: &str) -> Result<Vec<(u64, ObjPath)>, RetentionError> {
    use futures_util::TryStreamExt;
    let listed: Vec<_> = store.list(Some(&ObjPath::from(prefix))).try_collect().await?;
    let mut out = Vec::new();
    for meta in listed {
        let name = meta.location.filename().unwrap_or_default().to_owned();
        let n = name.strip_suffix(ext).and_then(|n| n.strip_suffix('.')).and_then(|n| n.parse::<u64>().ok());
        match n {
            Some(n) => out.push((n, meta.location)),
            None => return Err(RetentionError::Corrupt(format!("unexpected object {} in the archive", meta.location))),
        }
    }
    out.sort_by_key(|(n, _)| *n);
    Ok(out)
}

/// A checkpoint's name at a witness: under the retention device's id, so
/// one witness can serve an old and a new device (a rotation) side by side.
pub fn witness_checkpoint_name(device: DeviceId, size: u64) -> ObjPath {
    ObjPath::from(format!("{device}/checkpoints/{size:016}.ckpt"))
}

/// Writes a checkpoint to the witness only if it holds none of that size
/// (a witness never lets one be replaced): the same bytes again are fine,
/// different ones mean the archive was rewritten since.
async fn put_witness(witness: &dyn ObjectStore, path: &ObjPath, bytes: bytes::Bytes) -> Result<(), RetentionError> {
    match witness.put_opts(path, bytes.clone().into(), object_store::PutMode::Create.into()).await {
        Ok(_) => Ok(()),
        Err(object_store::Error::AlreadyExists { .. }) => {
            if witness.get(path).await?.bytes().await? == bytes {
                Ok(())
            } else {
                Err(RetentionError::Corrupt(format!(
                    "the witness already holds a different checkpoint at {path}: this archive was rewritten or rolled back since; run `strongroom retention verify --witness`"
                )))
            }
        }
        // A store without create-only writes: an ordinary write.
        Err(object_store::Error::NotImplemented) => {
            witness.put(path, bytes.into()).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The writable archive.
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    sealer: Sealer,
    /// `None` for a reader: nothing can be added.
    signer: Option<SigningKey>,
    /// The device's checkpoint and segment key.
    public: VerifyingKey,
    network: NetworkId,
    device: DeviceId,
    acc: Accumulator,
    archived: HashSet<[u8; 16]>,
    /// Membership statements archived (by SHA-256), kept or since deleted.
    statements: HashSet<[u8; 32]>,
    checkpointed: u64,
    last_checkpoint: Option<StoredCheckpoint>,
    /// Indices named by deletion records.
    deleted: HashSet<u64>,
    /// On a WORM bucket: purge never rewrites a segment.
    worm: bool,
    /// The longest default retention (days) the archive recorded its bucket
    /// as having (`storage_locked` records): `verify` holds the bucket to it.
    worm_days: Option<u64>,
    /// Where every checkpoint is also written (another directory or bucket):
    /// removing the newest records and checkpoints from the archive then
    /// leaves a newer signed checkpoint there (`verify --witness`).
    witness: Option<Arc<dyn ObjectStore>>,
    /// For an archive in a local directory: its root, so every segment,
    /// checkpoint and file (and the directory naming it) is fsynced before
    /// `append` or `put_file` returns, and so before the relay is told.
    fsync_roots: Vec<std::path::PathBuf>,
    /// fsyncs done (files and directories).
    synced: std::sync::atomic::AtomicU64,
}

impl Archive {
    /// Opens (or creates) the archive, replaying every segment to rebuild
    /// the log state and the set of archived message ids; signs a
    /// checkpoint if the last run stopped between a segment and its checkpoint.
    pub async fn open(
        store: Arc<dyn ObjectStore>,
        archive_key: &SecretBytes<32>,
        signer: SigningKey,
        network: NetworkId,
        device: DeviceId,
    ) -> Result<Self, RetentionError> {
        let public = signer.verifying_key();
        Self::open_as(store, archive_key, Some(signer), public, network, device).await
    }

    /// Opens an existing archive read-only (a designated third party's
    /// reader key: the archive key without the device's signing key).
    /// Search and export work; anything that would add a record is refused.
    pub async fn open_reader(
        store: Arc<dyn ObjectStore>,
        archive_key: &SecretBytes<32>,
        signing_public: VerifyingKey,
        network: NetworkId,
        device: DeviceId,
    ) -> Result<Self, RetentionError> {
        Self::open_as(store, archive_key, None, signing_public, network, device).await
    }

    async fn open_as(
        store: Arc<dyn ObjectStore>,
        archive_key: &SecretBytes<32>,
        signer: Option<SigningKey>,
        signing_public: VerifyingKey,
        network: NetworkId,
        device: DeviceId,
    ) -> Result<Self, RetentionError> {
        let header_path = ObjPath::from("archive.json");
        let expected = ArchiveHeader {
            format: FORMAT.into(),
            network_id: network.to_string(),
            device_id: device.to_string(),
            signing_key: hex(signing_public.as_bytes()),
            created_at: crate::now_ms(),
        };
        match store.get(&header_path).await {
            Ok(got) => {
                let h: ArchiveHeader = serde_json::from_slice(&got.bytes().await?)
                    .map_err(|_| RetentionError::Corrupt("archive.json is malformed".into()))?;
                if h.format != FORMAT {
                    return Err(RetentionError::Usage(format!(
                        "this archive is in format {}; this Strongroom writes {FORMAT}: archive to a new destination",
                        h.format
                    )));
                }
                if h.network_id != expected.network_id
                    || h.device_id != expected.device_id
                    || h.signing_key != expected.signing_key
                {
                    return Err(RetentionError::Usage(
                        "this archive belongs to another retention device or network; choose another destination"
                            .into(),
                    ));
                }
            }
            Err(object_store::Error::NotFound { .. }) if signer.is_none() => {
                return Err(RetentionError::Usage("no archive here (archive.json is missing); check --archive".into()))
            }
            Err(object_store::Error::NotFound { .. }) => {
                let json = serde_json::to_vec_pretty(&expected).map_err(|e| RetentionError::Corrupt(e.to_string()))?;
                store.put(&header_path, PutPayload::from(json)).await?;
            }
            Err(e) => return Err(e.into()),
        }
        let sealer = Sealer::new(archive_key, network, device)?;
        let mut archive = Self {
            store,
            sealer,
            signer,
            public: signing_public,
            network,
            device,
            acc: Accumulator::new(),
            archived: HashSet::new(),
            statements: HashSet::new(),
            checkpointed: 0,
            last_checkpoint: None,
            deleted: HashSet::new(),
            worm: false,
            worm_days: None,
            witness: None,
            fsync_roots: Vec::new(),
            synced: Default::default(),
        };
        archive.replay().await?;
        if archive.checkpointed < archive.acc.size() && archive.signer.is_some() {
            // A damaged checkpoint already at that size is left for verify to
            // name (nothing is overwritten); the next append signs a newer one.
            match archive.checkpoint().await {
                Ok(()) | Err(RetentionError::Corrupt(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(archive)
    }

    /// Reads the segments after what this process has read (all of them at
    /// open; at an append, what another writer added meanwhile). Only what
    /// this device wrote is taken: segments up to the newest signed
    /// checkpoint must reach its root, and every later one must carry the
    /// device's signature, so a holder of the archive key alone cannot add
    /// records (a deletion record, say) that this device would then sign.
    async fn replay(&mut self) -> Result<(), RetentionError> {
        let signed = self.newest_checkpoint().await?;
        for (first, path, retired) in segment_list(self.store.as_ref()).await? {
            if first < self.acc.size() {
                continue;
            }
            if first != self.acc.size() {
                return Err(RetentionError::Corrupt(format!(
                    "segment {path} starts at record {first}, expected {}; run `strongroom retention verify`",
                    self.acc.size()
                )));
            }
            let covered = signed.is_some_and(|cp| cp.tree_size > first);
            let entries = if retired || covered {
                load_entries(self.store.as_ref(), &path, retired).await?
            } else {
                let bytes = self.store.get(&path).await?.bytes().await?;
                let (entries, sig) =
                    parse_signed_segment(&bytes).map_err(|e| RetentionError::Corrupt(format!("{path}: {e}")))?;
                let authentic = sig.is_some_and(|(sig, body)| {
                    segment_statement(self.network, self.device, first, body).verify(&self.public, &sig).is_ok()
                });
                if !authentic {
                    return Err(RetentionError::Corrupt(format!(
                        "segment {path} is not signed by this retention device and no signed checkpoint covers it: someone else wrote it (a holder of the archive key alone?); run `strongroom retention verify`"
                    )));
                }
                entries
            };
            for entry in entries {
                let index = self.acc.size();
                if let Entry::Sealed { salt, ciphertext } = &entry {
                    let record = self.sealer.open(index, salt, ciphertext).ok_or_else(|| {
                        RetentionError::Corrupt(format!(
                            "record {index} does not decrypt; run `strongroom retention verify`"
                        ))
                    })?;
                    self.note(&record);
                }
                self.acc.push(entry.leaf(index));
                if let Some(cp) = signed.filter(|cp| cp.tree_size == self.acc.size()) {
                    if self.acc.root() != Some(cp.root) {
                        return Err(RetentionError::Corrupt(format!(
                            "the records do not match the signed checkpoint at size {}: altered, inserted or removed; run `strongroom retention verify`",
                            cp.tree_size
                        )));
                    }
                }
            }
        }
        if let Some(cp) = signed.filter(|cp| cp.tree_size > self.acc.size()) {
            return Err(RetentionError::Corrupt(format!(
                "a signed checkpoint covers {} records but the archive holds {}: records were removed; run `strongroom retention verify`",
                cp.tree_size,
                self.acc.size()
            )));
        }
        if let Some(cp) = signed {
            self.checkpointed = self.checkpointed.max(cp.tree_size);
        }
        Ok(())
    }

    /// The newest checkpoint this device signed (stored under its own size).
    /// A damaged or forged newer one is passed over, not trusted: `verify`
    /// names it, and segments after the one taken must be signed.
    async fn newest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, RetentionError> {
        for (size, path) in numbered(self.store.as_ref(), "checkpoints", "ckpt").await?.into_iter().rev() {
            let bytes = self.store.get(&path).await?.bytes().await?;
            let cp = StoredCheckpoint::decode(&bytes)
                .filter(|cp| cp.tree_size == size)
                .filter(|cp| cp.statement(self.network, self.device).verify(&self.public, &cp.signature).is_ok());
            match cp {
                Some(cp) => return Ok(Some(cp)),
                None => tracing::warn!(%path, "a checkpoint this device did not sign is passed over; run verify"),
            }
        }
        Ok(None)
    }

    /// Writes every checkpoint from now on to `witness` as well, starting
    /// with the archive's newest one.
    pub async fn set_witness(&mut self, witness: Arc<dyn ObjectStore>) -> Result<(), RetentionError> {
        if let Some((size, path)) = numbered(self.store.as_ref(), "checkpoints", "ckpt").await?.pop() {
            let bytes = self.store.get(&path).await?.bytes().await?;
            put_witness(witness.as_ref(), &witness_checkpoint_name(self.device, size), bytes).await?;
        }
        self.witness = Some(witness);
        Ok(())
    }

    /// Records so far.
    pub fn size(&self) -> u64 {
        self.acc.size()
    }

    /// The checkpoint this process signed last.
    pub fn last_checkpoint(&self) -> Option<StoredCheckpoint> {
        self.last_checkpoint
    }

    /// Remembers what a record archives: its message id, or its membership
    /// statement (also one a deletion record names).
    fn note(&mut self, record: &Record) {
        if let Some(id) = record.message_id.as_deref().and_then(crate::unhex::<16>) {
            self.archived.insert(id);
        }
        self.statements.extend(record.statement());
        self.deleted.extend(record.deleted.iter().map(|d| d.index));
        if let Some(days) = record.locked_days() {
            self.worm_days = self.worm_days.max(Some(days));
        }
        self.statements
            .extend(record.deleted.iter().filter_map(|d| d.statement.as_deref().and_then(crate::unhex::<32>)));
    }

    /// The network, the device and the key its checkpoints are signed with.
    pub fn identity(&self) -> (NetworkId, DeviceId, VerifyingKey) {
        (self.network, self.device, self.public)
    }

    /// The newest checkpoint this device signed.
    pub async fn signed_head(&self) -> Result<Option<StoredCheckpoint>, RetentionError> {
        self.newest_checkpoint().await
    }

    /// Signs an export's `manifest.json`; `None` for a reader.
    pub fn sign_export(&self, manifest: &[u8]) -> Option<Signature> {
        let signer = self.signer.as_ref()?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, manifest);
        let mut d = [0u8; 32];
        d.copy_from_slice(digest.as_ref());
        Some(
            strongroom_crypto::certs::ExportManifest { network_id: self.network, device_id: self.device, digest: d }
                .sign(signer),
        )
    }

    /// Whether a deletion record names leaf `index`.
    pub fn is_deleted(&self, index: u64) -> bool {
        self.deleted.contains(&index)
    }

    /// Marks this archive as on a WORM bucket (S3 Object Lock): purges
    /// retire whole segments instead of rewriting them.
    pub fn set_worm(&mut self, worm: bool) {
        self.worm = worm;
    }

    /// Records the bucket's Object Lock (`mode`, default `days`) when it is
    /// longer than any recorded before: from then on `verify` names a
    /// bucket whose default was lowered, or a version locked for less.
    pub async fn record_lock(&mut self, mode: &str, days: u64, actor: &str) -> Result<(), RetentionError> {
        if self.signer.is_none() || self.worm_days.is_some_and(|d| d >= days) {
            return Ok(());
        }
        let detail = serde_json::json!({"mode": mode, "days": days});
        self.append(&[Record::access("storage_locked", actor, Some("the archive bucket's Object Lock"), detail)]).await
    }

    /// Whether this archive is on a WORM bucket.
    pub fn worm(&self) -> bool {
        self.worm
    }

    /// Whether a message or membership record is in the archive already.
    fn already_archived(&self, r: &Record) -> bool {
        r.message_id.as_deref().and_then(crate::unhex::<16>).is_some_and(|id| self.archived.contains(&id))
            || r.statement().is_some_and(|d| self.statements.contains(&d))
    }

    /// Whether a membership statement (by SHA-256) was archived.
    pub fn contains_statement(&self, digest: &[u8; 32]) -> bool {
        self.statements.contains(digest)
    }

    /// Whether a message is already archived.
    pub fn contains(&self, message_id: &[u8; 16]) -> bool {
        self.archived.contains(message_id)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    /// The record sealer (for reading).
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// Appends records as one segment, then signs a checkpoint over them.
    /// When this returns, they are durable in the destination.
    pub async fn append(&mut self, records: &[Record]) -> Result<(), RetentionError> {
        if records.is_empty() {
            return Ok(());
        }
        if self.signer.is_none() {
            return Err(RetentionError::Usage(
                "a reader key can search, export and verify but cannot add to the archive".into(),
            ));
        }
        // Segments are written create-only: another writer (a hold or purge
        // beside the running service) that took this position first is read,
        // and the records go after it; nothing is ever overwritten.
        let mut attempts = 0;
        let mut records: Vec<&Record> = records.iter().collect();
        let (first, entries) = loop {
            let first = self.acc.size();
            let mut entries = Vec::with_capacity(records.len());
            for (i, r) in records.iter().enumerate() {
                entries.push(self.sealer.seal(first + i as u64, r)?);
            }
            let bytes = bytes::Bytes::from(self.signed_segment(first, &entries)?);
            match self
                .store
                .put_opts(&segment_name(first), bytes.clone().into(), object_store::PutMode::Create.into())
                .await
            {
                Ok(_) => break (first, entries),
                Err(object_store::Error::AlreadyExists { .. }) if attempts < 8 => {
                    attempts += 1;
                    self.replay().await?;
                    // What an earlier try of this same append wrote (it
                    // failed after the write: a replica, an fsync, a
                    // timeout) is not written again.
                    records.retain(|r| !self.already_archived(r));
                    if records.is_empty() {
                        return if self.checkpointed < self.acc.size() { self.checkpoint().await } else { Ok(()) };
                    }
                }
                // A store without create-only writes.
                Err(object_store::Error::NotImplemented) => {
                    self.store.put(&segment_name(first), bytes.into()).await?;
                    break (first, entries);
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.fsync(&segment_name(first)).await?;
        for (i, (entry, record)) in entries.iter().zip(records).enumerate() {
            self.acc.push(entry.leaf(first + i as u64));
            self.note(record);
        }
        self.checkpoint().await
    }

    /// A segment's bytes: its entries, then the device's signature over them.
    fn signed_segment(&self, first: u64, entries: &[Entry]) -> Result<Vec<u8>, RetentionError> {
        let Some(signer) = &self.signer else {
            return Err(RetentionError::Usage("a reader key cannot sign segments".into()));
        };
        let mut bytes = encode_segment(entries);
        let sig = segment_statement(self.network, self.device, first, &bytes).sign(signer);
        bytes.push(TAG_SIGNATURE);
        bytes.extend_from_slice(sig.as_bytes());
        Ok(bytes)
    }

    async fn checkpoint(&mut self) -> Result<(), RetentionError> {
        let Some(root) = self.acc.root() else { return Ok(()) };
        let mut cp = StoredCheckpoint {
            tree_size: self.acc.size(),
            root,
            timestamp: crate::now_ms(),
            signature: Signature::from_bytes([0; 64]),
        };
        let Some(signer) = &self.signer else {
            return Err(RetentionError::Usage("a reader key cannot sign checkpoints".into()));
        };
        cp.signature = cp.statement(self.network, self.device).sign(signer);
        let name = checkpoint_name(cp.tree_size);
        match self.store.put_opts(&name, PutPayload::from(cp.encode()), object_store::PutMode::Create.into()).await {
            Ok(_) => {}
            // Signed by an earlier try, or by another writer of this device
            // over the same records: the same root, or the log forked.
            Err(object_store::Error::AlreadyExists { .. }) => {
                let there = StoredCheckpoint::decode(&self.store.get(&name).await?.bytes().await?);
                match there.filter(|t| {
                    t.root == cp.root
                        && t.statement(self.network, self.device).verify(&self.public, &t.signature).is_ok()
                }) {
                    Some(t) => cp = t,
                    None => {
                        return Err(RetentionError::Corrupt(format!(
                            "{name} already holds a different checkpoint: run `strongroom retention verify`"
                        )))
                    }
                }
            }
            Err(object_store::Error::NotImplemented) => {
                self.store.put(&name, PutPayload::from(cp.encode())).await?;
            }
            Err(e) => return Err(e.into()),
        }
        self.fsync(&checkpoint_name(cp.tree_size)).await?;
        if let Some(w) = &self.witness {
            put_witness(w.as_ref(), &witness_checkpoint_name(self.device, cp.tree_size), cp.encode().into()).await?;
        }
        self.checkpointed = cp.tree_size;
        self.last_checkpoint = Some(cp);
        Ok(())
    }

    /// Stores a file's encrypted bytes (streamed from a local file).
    pub async fn put_file(&self, blob_id: &str, local: &std::path::Path) -> Result<(), RetentionError> {
        use object_store::WriteMultipart;
        use tokio::io::AsyncReadExt;
        // Stored already (a retried batch): files are written whole, and
        // writing again would leave a second version on a WORM bucket.
        match self.store.head(&file_name(blob_id)).await {
            Ok(_) => return self.fsync(&file_name(blob_id)).await,
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
        let mut f = tokio::fs::File::open(local).await.map_err(crate::error::io(local))?;
        let upload = self.store.put_multipart(&file_name(blob_id)).await?;
        let mut writer = WriteMultipart::new(upload);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf).await.map_err(crate::error::io(local))?;
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(4).await?;
            writer.write(buf.get(..n).unwrap_or_default());
        }
        writer.finish().await?;
        self.fsync(&file_name(blob_id)).await
    }

    /// fsyncs what this archive writes from now on (a local directory
    /// archive, or replica, at `root`): the object store itself only
    /// renames into place.
    pub fn fsync_in(&mut self, root: std::path::PathBuf) {
        self.fsync_roots.push(root);
    }

    /// How many fsyncs this archive has done.
    pub fn synced(&self) -> u64 {
        self.synced.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The object at `path` and its directory, to disk. An error is
    /// transient: nothing was acknowledged, so the batch comes again.
    async fn fsync(&self, path: &ObjPath) -> Result<(), RetentionError> {
        for root in &self.fsync_roots {
            self.fsync_one(root, path).await?;
        }
        Ok(())
    }

    async fn fsync_one(&self, root: &std::path::Path, path: &ObjPath) -> Result<(), RetentionError> {
        let file = root.join(path.as_ref());
        let path_text = file.display().to_string();
        let done = tokio::task::spawn_blocking(move || -> Result<u64, RetentionError> {
            std::fs::File::open(&file).and_then(|f| f.sync_all()).map_err(crate::error::io(&file))?;
            let dir = file.parent().unwrap_or(&file).to_path_buf();
            std::fs::File::open(&dir).and_then(|d| d.sync_all()).map_err(crate::error::io(&dir))?;
            Ok(2)
        })
        .await
        .map_err(|e| RetentionError::Io { path: path_text, source: std::io::Error::other(e.to_string()) })??;
        self.synced.fetch_add(done, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Reads every record in order: `f(index, record)`; deleted ones are skipped.
    pub async fn for_each(&self, mut f: impl FnMut(u64, Record)) -> Result<(), RetentionError> {
        read_records(self.store.as_ref(), &self.sealer, |i, r| match r {
            Some(r) if !self.deleted.contains(&i) => f(i, r),
            _ => {}
        })
        .await
    }

    /// Replaces every entry a deletion record names with a deletion marker
    /// (its leaf hash), also those a crashed purge left; on a WORM bucket,
    /// retires whole segments instead ([`Archive::retire`]).
    pub async fn redact(&mut self) -> Result<(), RetentionError> {
        if self.worm {
            return self.retire().await;
        }
        let indices = &self.deleted;
        for (first, path) in numbered(self.store.as_ref(), "segments", "seg").await? {
            let bytes = self.store.get(&path).await?.bytes().await?;
            let mut entries = parse_segment(&bytes).map_err(|e| RetentionError::Corrupt(format!("{path}: {e}")))?;
            let mut changed = false;
            for (i, entry) in entries.iter_mut().enumerate() {
                let index = first + i as u64;
                if indices.contains(&index) && matches!(entry, Entry::Sealed { .. }) {
                    *entry = Entry::Redacted(entry.leaf(index));
                    changed = true;
                }
            }
            if changed {
                self.store.put(&path, PutPayload::from(self.signed_segment(first, &entries)?)).await?;
            }
        }
        Ok(())
    }

    /// On a WORM bucket: every segment whose records are all deleted is
    /// replaced by its leaf hashes in `retired/` (a new object, create-only)
    /// and its key deleted (a delete marker; the locked version itself goes
    /// when its retention ends, by the bucket's lifecycle rule).
    async fn retire(&mut self) -> Result<(), RetentionError> {
        for (first, path, retired) in segment_list(self.store.as_ref()).await? {
            if retired {
                continue;
            }
            let entries = load_entries(self.store.as_ref(), &path, false).await?;
            let all_gone = entries
                .iter()
                .enumerate()
                .all(|(i, e)| matches!(e, Entry::Redacted(_)) || self.deleted.contains(&(first + i as u64)));
            if !all_gone || entries.is_empty() {
                continue;
            }
            let mut leaves = Vec::with_capacity(entries.len() * 32);
            for (i, e) in entries.iter().enumerate() {
                leaves.extend_from_slice(&e.leaf(first + i as u64));
            }
            let name = retired_name(first);
            match self.store.put_opts(&name, leaves.clone().into(), object_store::PutMode::Create.into()).await {
                Ok(_) => {}
                // Written by a purge that stopped before deleting the
                // segment: the segment goes only if it says the same.
                Err(object_store::Error::AlreadyExists { .. }) => {
                    if self.store.get(&name).await?.bytes().await?.as_ref() != leaves.as_slice() {
                        return Err(RetentionError::Corrupt(format!(
                            "{name} does not hold {path}'s leaf hashes: someone else wrote it; run `strongroom retention verify`"
                        )));
                    }
                }
                Err(e) => return Err(e.into()),
            }
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Removes a stored file.
    pub async fn delete_file(&self, blob_id: &str) -> Result<(), RetentionError> {
        match self.store.delete(&file_name(blob_id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Reads every entry in order: `f(index, Some(record))`, or `None` for a
/// deleted one. Stops at the first damaged segment or record.
pub async fn read_records(
    store: &dyn ObjectStore,
    sealer: &Sealer,
    mut f: impl FnMut(u64, Option<Record>),
) -> Result<(), RetentionError> {
    read_entries(store, sealer, |i, _, r| f(i, r)).await
}

/// [`read_records`], with each stored entry too.
pub async fn read_entries(
    store: &dyn ObjectStore,
    sealer: &Sealer,
    mut f: impl FnMut(u64, &Entry, Option<Record>),
) -> Result<(), RetentionError> {
    let mut next = 0u64;
    for (first, path, retired) in segment_list(store).await? {
        if first != next {
            return Err(RetentionError::Corrupt(format!("segment {path} is out of place; run verify")));
        }
        for entry in load_entries(store, &path, retired).await? {
            match &entry {
                Entry::Sealed { salt, ciphertext } => {
                    let r = sealer.open(next, salt, ciphertext).ok_or_else(|| {
                        RetentionError::Corrupt(format!("record {next} does not decrypt; run verify"))
                    })?;
                    f(next, &entry, Some(r));
                }
                Entry::Redacted(_) => f(next, &entry, None),
            }
            next += 1;
        }
    }
    Ok(())
}

/// The device's checkpoint key as `archive.json` names it.
pub async fn header(store: &dyn ObjectStore) -> Result<ArchiveHeader, RetentionError> {
    let got = store.get(&ObjPath::from("archive.json")).await.map_err(|e| match e {
        object_store::Error::NotFound { .. } => {
            RetentionError::Usage("no archive here (archive.json is missing); check --archive".into())
        }
        other => other.into(),
    })?;
    serde_json::from_slice(&got.bytes().await?).map_err(|_| RetentionError::Corrupt("archive.json is malformed".into()))
}

/// `policy-seen.json`: the newest network policy this retention device has
/// verified (version and SHA-256), so an older or forked one is refused
/// after a restart too. Kept with the archive, the device's durable state.
const POLICY_SEEN: &str = "policy-seen.json";

#[derive(Serialize, Deserialize)]
struct PolicySeen {
    version: u64,
    digest: String,
    /// Its retention-period floor (days), the shortest period the network
    /// key allows: an offline purge keeps at least this long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    floor_days: Option<u32>,
    /// Written by a release that records the floor (an older file says
    /// nothing about it, which is not "no floor").
    #[serde(default)]
    floor_recorded: bool,
}

async fn read_policy_seen(store: &dyn ObjectStore) -> Result<Option<PolicySeen>, RetentionError> {
    let got = match store.get(&ObjPath::from(POLICY_SEEN)).await {
        Ok(got) => got.bytes().await?,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    serde_json::from_slice(&got).map(Some).map_err(|_| RetentionError::Corrupt(format!("{POLICY_SEEN} is malformed")))
}

/// The retention-period floor of the newest policy seen (days), if it set
/// one; an error if this archive has not recorded it yet.
pub async fn policy_floor(store: &dyn ObjectStore) -> Result<Option<u32>, RetentionError> {
    match read_policy_seen(store).await? {
        Some(seen) if seen.floor_recorded => Ok(seen.floor_days),
        _ => Err(RetentionError::Usage(
            "this archive has not recorded the network policy's retention floor yet: run `strongroom retention run` (or a purge without --offline) once".into(),
        )),
    }
}

/// The newest policy seen, if any.
pub async fn policy_seen(store: &dyn ObjectStore) -> Result<Option<(u64, [u8; 32])>, RetentionError> {
    let Some(seen) = read_policy_seen(store).await? else { return Ok(None) };
    let digest = crate::unhex::<32>(&seen.digest)
        .ok_or_else(|| RetentionError::Corrupt(format!("{POLICY_SEEN} has a malformed digest")))?;
    Ok(Some((seen.version, digest)))
}

/// Records the newest policy seen, with its retention-period floor.
pub async fn save_policy_seen(
    store: &dyn ObjectStore,
    (version, digest): (u64, [u8; 32]),
    floor_days: Option<u32>,
) -> Result<(), RetentionError> {
    let json = serde_json::to_vec(&PolicySeen { version, digest: hex(&digest), floor_days, floor_recorded: true })
        .map_err(|e| RetentionError::Corrupt(e.to_string()))?;
    store.put(&ObjPath::from(POLICY_SEEN), PutPayload::from(json)).await?;
    Ok(())
}

/// Parses a verifying key from hex.
pub fn verifying_key(hex_key: &str) -> Option<VerifyingKey> {
    crate::unhex::<32>(hex_key).and_then(|k| VerifyingKey::from_bytes(k).ok())
}
