//! Proof that an export came from the archive unaltered. For each exported
//! record, `proofs.jsonl` holds its stored leaf (salt and ciphertext), its
//! own record key (which opens that record alone: keys are per record), and
//! its RFC 9162 inclusion path up to the archive's newest signed checkpoint,
//! which the manifest carries. A reviewer recomputes the leaf hash, folds
//! the path to the checkpoint's root, checks the checkpoint's signature,
//! and decrypts the ciphertext to the record the export shows.

use std::collections::{BTreeMap, BTreeSet};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;
use strongroom_crypto::merkle::{Hash, Tree};

use crate::archive::{read_entries, Archive, Entry, StoredCheckpoint};
use crate::{hex, RetentionError};

/// One line of `proofs.jsonl`.
#[derive(Debug, Serialize)]
pub struct Proof {
    /// The exported document.
    pub doc_id: String,
    /// Its leaf index.
    pub index: u64,
    /// Its leaf hash (hex): `SHA-256(0x00 | u64 index | salt | ciphertext)`.
    pub leaf: String,
    /// The salt its key was derived with (hex).
    pub salt: String,
    /// The sealed record (base64): AES-256-GCM, nonce 0, with `aad`.
    pub ciphertext: String,
    /// The associated data (hex): `"strongroom/v2/archive-record" 0x00 |
    /// network | device | u64 index`.
    pub aad: String,
    /// This record's own key (hex).
    pub record_key: String,
    /// The inclusion path (hex), bottom-up, for `tree_size` leaves.
    pub path: Vec<String>,
    /// The checkpoint's size.
    pub tree_size: u64,
}

/// The checkpoint the proofs lead to, as the manifest states it.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct SignedHead {
    /// Leaves.
    pub tree_size: u64,
    /// Root (hex).
    pub root: String,
    /// When signed (ms).
    pub timestamp: u64,
    /// Ed25519 signature (hex) over `"strongroom/v2/archive-checkpoint" 0x00
    /// | network | device | u64 tree_size | root | u64 timestamp`.
    pub signature: String,
}

impl From<StoredCheckpoint> for SignedHead {
    fn from(cp: StoredCheckpoint) -> Self {
        Self {
            tree_size: cp.tree_size,
            root: hex(&cp.root),
            timestamp: cp.timestamp,
            signature: hex(cp.signature.as_bytes()),
        }
    }
}

/// Proofs for the records at `wanted` (index to document id), against the
/// newest signed checkpoint.
pub async fn proofs(
    archive: &Archive,
    wanted: &BTreeMap<u64, String>,
) -> Result<(Option<SignedHead>, Vec<Proof>), RetentionError> {
    let Some(head) = archive.signed_head().await? else { return Ok((None, Vec::new())) };
    let mut leaves: Vec<Hash> = Vec::new();
    let mut sealed: BTreeMap<u64, ([u8; 32], Vec<u8>)> = BTreeMap::new();
    let keep: BTreeSet<u64> = wanted.keys().copied().collect();
    read_entries(archive.store().as_ref(), archive.sealer(), |index, entry, _| {
        if index < head.tree_size {
            leaves.push(entry.leaf(index));
            if let (true, Entry::Sealed { salt, ciphertext }) = (keep.contains(&index), entry) {
                sealed.insert(index, (*salt, ciphertext.clone()));
            }
        }
    })
    .await?;
    let tree =
        Tree::new(leaves).ok_or_else(|| RetentionError::Corrupt("a signed checkpoint over no records".into()))?;
    if tree.root() != head.root {
        return Err(RetentionError::Corrupt(
            "the records do not match the newest signed checkpoint; run `strongroom retention verify`".into(),
        ));
    }
    let mut out = Vec::new();
    for (index, doc_id) in wanted {
        let Some((salt, ciphertext)) = sealed.get(index) else { continue };
        let aad = archive.sealer().context(*index);
        let key = archive
            .sealer()
            .record_key_bytes(salt, &aad)
            .ok_or_else(|| RetentionError::Corrupt(format!("record {index}: no key")))?;
        let path = usize::try_from(*index)
            .ok()
            .and_then(|i| tree.inclusion_proof(i))
            .ok_or_else(|| RetentionError::Corrupt(format!("record {index}: no inclusion path")))?;
        let mut data = Vec::with_capacity(40 + ciphertext.len());
        data.extend_from_slice(&index.to_be_bytes());
        data.extend_from_slice(salt);
        data.extend_from_slice(ciphertext);
        out.push(Proof {
            doc_id: doc_id.clone(),
            index: *index,
            leaf: hex(&strongroom_crypto::merkle::leaf_hash(&data)),
            salt: hex(salt),
            ciphertext: STANDARD.encode(ciphertext),
            aad: hex(&aad),
            record_key: hex(key.as_slice()),
            path: path.iter().map(|h| hex(h)).collect(),
            tree_size: head.tree_size,
        });
    }
    Ok((Some(head.into()), out))
}
