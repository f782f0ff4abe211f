//! The witness: a second place (another directory or bucket, ideally under
//! other control) where every signed checkpoint is also written. Deleting
//! the newest records and checkpoints from the archive leaves a newer
//! checkpoint at the witness; rewriting older ones leaves a witness root no
//! RFC 9162 consistency proof links to the archive's.

use object_store::ObjectStore;
use strongroom_crypto::merkle::{consistency_proof, verify_consistency, Accumulator};

use crate::archive::{numbered, StoredCheckpoint};
use crate::verify::{Trusted, VerifyReport};
use crate::RetentionError;

impl VerifyReport {
    /// Compares the archive (already read by [`crate::verify::verify`]) with
    /// the newest checkpoint at `witness` whose signature verifies.
    pub async fn compare_with_witness(
        &mut self,
        witness: &dyn ObjectStore,
        trusted: &Trusted<'_>,
    ) -> Result<(), RetentionError> {
        self.witness_checked = true;
        let mut newest: Option<StoredCheckpoint> = None;
        let mut witnessed = std::collections::BTreeMap::new();
        for (size, path) in numbered(witness, &format!("{}/checkpoints", trusted.device), "ckpt").await? {
            let bytes = witness.get(&path).await?.bytes().await?;
            let signed = StoredCheckpoint::decode(&bytes).filter(|cp| {
                cp.tree_size == size
                    && cp.statement(trusted.network, trusted.device).verify(&trusted.signing_key, &cp.signature).is_ok()
            });
            match signed {
                Some(cp) => {
                    witnessed.insert(cp.tree_size, cp.root);
                    newest = Some(cp);
                }
                None => self.problem(format!("witness checkpoint {path}: malformed or not signed by this device")),
            }
        }
        let Some(w) = newest else {
            self.problem(
                "the witness holds no signed checkpoint (is --witness the place the service writes to?)".into(),
            );
            return Ok(());
        };
        self.witness_size = Some(w.tree_size);
        let Some((&size, &root)) = self.checkpoint_roots.last_key_value() else {
            self.problem(format!(
                "the witness holds a signed checkpoint at size {} but the archive has none: its records were deleted",
                w.tree_size
            ));
            return Ok(());
        };
        if w.tree_size > size {
            self.problem(format!(
                "the witness holds a signed checkpoint at size {}, newer than the archive's newest ({size}): records {size}..={} were deleted, or the archive was rolled back",
                w.tree_size,
                w.tree_size - 1
            ));
            return Ok(());
        }
        // Leaves are missing past a gap already reported: nothing to prove from.
        let all = std::mem::take(&mut self.leaves);
        let Some(n) = usize::try_from(size).ok().filter(|n| *n <= all.len()) else {
            self.leaves = all;
            return Ok(());
        };
        let leaves = all.get(..n).unwrap_or_default();
        // Every checkpoint the witness holds, not only the newest: an archive
        // cut back and grown again past the old size is caught at the sizes
        // it rewrote.
        let mut acc = Accumulator::new();
        let mut rewritten = Vec::new();
        for leaf in leaves {
            acc.push(*leaf);
            if witnessed.get(&acc.size()).is_some_and(|root| acc.root().as_ref() != Some(root)) {
                rewritten.push(acc.size());
            }
        }
        for n in rewritten {
            self.problem(format!(
                "the witness's checkpoint at size {n} does not match the archive's first {n} records: they were rewritten"
            ));
        }
        let linked = consistency_proof(leaves, w.tree_size as usize)
            .is_some_and(|proof| verify_consistency(w.tree_size, size, &w.root, &root, &proof));
        if !linked {
            self.problem(format!(
                "no consistency proof links the witness's checkpoint at size {} to the archive's at size {size}: records before {} were rewritten",
                w.tree_size, w.tree_size
            ));
        }
        self.leaves = all;
        Ok(())
    }
}
