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

use crate::archive::{load_entries, segment_list, Archive, Entry, StoredCheckpoint};
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
    /// This record's own key (hex); left out with `--no-record-keys`. It
    /// opens the whole record, the key of its file included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record_key: Option<String>,
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

/// What [`write_proofs`] wrote.
pub struct Written {
    /// The checkpoint the proofs lead to.
    pub head: Option<SignedHead>,
    /// Proofs written.
    pub proofs: u64,
    /// Documents with no proof (newer than the newest signed checkpoint).
    pub unproven: Vec<String>,
}

/// Writes a proof line for each record at `wanted` (index to document id)
/// against the newest signed checkpoint; with `record_keys`, each with its
/// own record key. Reads the segments twice without decrypting anything
/// and holds only leaf hashes (32 bytes a record).
pub async fn write_proofs(
    archive: &Archive,
    wanted: &BTreeMap<u64, String>,
    record_keys: bool,
    out: &mut (dyn std::io::Write + Send),
) -> Result<Written, RetentionError> {
    let Some(head) = archive.signed_head().await? else {
        return Ok(Written { head: None, proofs: 0, unproven: wanted.values().cloned().collect() });
    };
    let store = archive.store().as_ref();
    let segments = segment_list(store).await?;
    let mut leaves: Vec<Hash> = Vec::new();
    for (first, path, retired) in &segments {
        for (k, entry) in load_entries(store, path, *retired).await?.iter().enumerate() {
            let index = first + k as u64;
            if index < head.tree_size {
                leaves.push(entry.leaf(index));
            }
        }
    }
    let tree =
        Tree::new(leaves).ok_or_else(|| RetentionError::Corrupt("a signed checkpoint over no records".into()))?;
    if tree.root() != head.root || tree.size() as u64 != head.tree_size {
        return Err(RetentionError::Corrupt(
            "the records do not match the newest signed checkpoint; run `strongroom retention verify`".into(),
        ));
    }
    let mut proven: BTreeSet<u64> = BTreeSet::new();
    for (first, path, retired) in &segments {
        let last = first.saturating_add(1 << 24);
        if wanted.range(*first..last).next().is_none() {
            continue;
        }
        for (k, entry) in load_entries(store, path, *retired).await?.into_iter().enumerate() {
            let index = first + k as u64;
            let (Some(doc_id), Entry::Sealed { salt, ciphertext }) = (wanted.get(&index), entry) else { continue };
            if index >= head.tree_size {
                continue;
            }
            let aad = archive.sealer().context(index);
            let key = if record_keys {
                let key = archive
                    .sealer()
                    .record_key_bytes(&salt, &aad)
                    .ok_or_else(|| RetentionError::Corrupt(format!("record {index}: no key")))?;
                Some(hex(key.as_slice()))
            } else {
                None
            };
            let path = usize::try_from(index)
                .ok()
                .and_then(|i| tree.inclusion_proof(i))
                .ok_or_else(|| RetentionError::Corrupt(format!("record {index}: no inclusion path")))?;
            let proof = Proof {
                doc_id: doc_id.clone(),
                index,
                leaf: hex(&Entry::Sealed { salt, ciphertext: ciphertext.clone() }.leaf(index)),
                salt: hex(&salt),
                ciphertext: STANDARD.encode(&ciphertext),
                aad: hex(&aad),
                record_key: key,
                path: path.iter().map(|h| hex(h)).collect(),
                tree_size: head.tree_size,
            };
            serde_json::to_writer(&mut *out, &proof).map_err(|e| RetentionError::Corrupt(e.to_string()))?;
            out.write_all(b"\n").map_err(|e| RetentionError::Io { path: "proofs.jsonl".into(), source: e })?;
            proven.insert(index);
        }
    }
    let unproven = wanted.iter().filter(|(i, _)| !proven.contains(i)).map(|(_, d)| d.clone()).collect();
    Ok(Written { head: Some(head.into()), proofs: proven.len() as u64, unproven })
}
