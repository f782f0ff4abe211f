//! The witness: a second place (another directory or bucket, ideally under
//! other control) where every signed checkpoint is also written. Deleting
//! the newest records and checkpoints from the archive leaves a newer
//! checkpoint at the witness; rewriting older ones leaves a witness root no
//! RFC 9162 consistency proof links to the archive's.

use object_store::ObjectStore;
use strongroom_crypto::merkle::{consistency_proof, verify_consistency};

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
        for (size, path) in numbered(witness, "checkpoints", "ckpt").await? {
            let bytes = witness.get(&path).await?.bytes().await?;
            let signed = StoredCheckpoint::decode(&bytes).filter(|cp| {
                cp.tree_size == size
                    && cp.statement(trusted.network, trusted.device).verify(&trusted.signing_key, &cp.signature).is_ok()
            });
            match signed {
                Some(cp) => newest = Some(cp),
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
        let Some((&size, root)) = self.checkpoint_roots.last_key_value() else {
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
        let Some(leaves) = self.leaves.get(..size as usize) else { return Ok(()) };
        let linked = consistency_proof(leaves, w.tree_size as usize)
            .is_some_and(|proof| verify_consistency(w.tree_size, size, &w.root, root, &proof));
        if !linked {
            self.problem(format!(
                "no consistency proof links the witness's checkpoint at size {} to the archive's at size {size}: records before {} were rewritten",
                w.tree_size, w.tree_size
            ));
        }
        Ok(())
    }
}
