//! RFC 6962 / RFC 9162 Merkle tree hashing: used for the wraps of an
//! envelope (so a device can be sent only its own wrap plus a proof) and,
//! for the retention archive log, which grows one leaf at a time
//! ([`Accumulator`]).
//!
//! `leaf = SHA-256(0x00 | data)`, `node = SHA-256(0x01 | left | right)`; a tree
//! of `n` leaves splits at the largest power of two below `n`.

use crate::primitives::sha256;

/// A 32-byte tree hash.
pub type Hash = [u8; 32];

/// Longest inclusion proof accepted (trees of up to 2^32 leaves).
pub const MAX_PROOF_LEN: usize = 32;

/// Hash of a leaf's data.
pub fn leaf_hash(data: &[u8]) -> Hash {
    sha256(&[&[0x00], data])
}

/// Hash of an interior node.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

/// Every level of a tree, leaves first. Built bottom-up: pairing nodes and
/// carrying an unpaired last node up unchanged gives exactly the RFC 6962
/// tree, in linear time.
pub struct Tree {
    levels: Vec<Vec<Hash>>,
}

impl Tree {
    /// Builds the tree over leaf hashes. `None` for an empty tree, which the
    /// protocol never uses.
    pub fn new(leaves: Vec<Hash>) -> Option<Self> {
        if leaves.is_empty() {
            return None;
        }
        let mut levels = vec![leaves];
        while let Some(last) = levels.last().filter(|l| l.len() > 1) {
            let next = last
                .chunks(2)
                .map(|pair| match pair {
                    [l, r] => node_hash(l, r),
                    [single] => *single,
                    _ => [0u8; 32],
                })
                .collect();
            levels.push(next);
        }
        Some(Self { levels })
    }

    /// The root hash.
    pub fn root(&self) -> Hash {
        self.levels.last().and_then(|l| l.first()).copied().unwrap_or([0u8; 32])
    }

    /// Number of leaves.
    pub fn size(&self) -> usize {
        self.levels.first().map_or(0, Vec::len)
    }

    /// The audit path for leaf `index`, bottom-up (RFC 9162 section 2.1.3.1).
    pub fn inclusion_proof(&self, index: usize) -> Option<Vec<Hash>> {
        if index >= self.size() {
            return None;
        }
        let mut path = Vec::new();
        let mut i = index;
        for level in &self.levels {
            if level.len() == 1 {
                break;
            }
            let sibling = i ^ 1;
            // An unpaired last node is carried up: no hash at this level.
            if let Some(h) = level.get(sibling) {
                path.push(*h);
            }
            i /= 2;
        }
        Some(path)
    }
}

/// The root implied by a leaf, its index, the tree size and an audit path
/// (RFC 9162 section 2.1.3.2). `None` if the path does not fit the size.
pub fn root_from_proof(leaf: Hash, index: u64, size: u64, path: &[Hash]) -> Option<Hash> {
    if index >= size || path.len() > MAX_PROOF_LEN {
        return None;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf;
    for p in path {
        if s == 0 {
            return None;
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    (s == 0).then_some(r)
}

/// An append-only log's root, kept in O(log n) memory: the roots of the
/// perfect subtrees the leaves so far form (as in a binary counter). The
/// RFC 6962 root of any size is these folded from the right.
#[derive(Debug, Clone, Default)]
pub struct Accumulator {
    /// (height, hash) of perfect subtrees, largest first.
    peaks: Vec<(u32, Hash)>,
    size: u64,
}

impl Accumulator {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf (its [`leaf_hash`]).
    pub fn push(&mut self, leaf: Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(height, left)) = self.peaks.last() {
            if height != node.0 {
                break;
            }
            self.peaks.pop();
            node = (height + 1, node_hash(&left, &node.1));
        }
        self.peaks.push(node);
        self.size += 1;
    }

    /// Number of leaves.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The RFC 6962 root; `None` while empty.
    pub fn root(&self) -> Option<Hash> {
        let mut iter = self.peaks.iter().rev();
        let mut acc = iter.next()?.1;
        for (_, left) in iter {
            acc = node_hash(left, &acc);
        }
        Some(acc)
    }
}

/// The RFC 6962 root over leaf hashes (the recursive definition, MTH);
/// `None` for no leaves.
pub fn root_of(leaves: &[Hash]) -> Option<Hash> {
    Tree::new(leaves.to_vec()).map(|t| t.root())
}

/// The largest power of two smaller than `n` (n >= 2).
fn split(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// A consistency proof that the tree over the first `m` of `leaves` is a
/// prefix of the tree over all of them (RFC 9162 section 2.1.4.1). `None`
/// unless `0 < m <= leaves.len()`.
pub fn consistency_proof(leaves: &[Hash], m: usize) -> Option<Vec<Hash>> {
    fn subproof(m: usize, d: &[Hash], b: bool, out: &mut Vec<Hash>) -> Option<()> {
        let n = d.len();
        if m == n {
            if !b {
                out.push(root_of(d)?);
            }
            return Some(());
        }
        let k = split(n);
        if m <= k {
            subproof(m, d.get(..k)?, b, out)?;
            out.push(root_of(d.get(k..)?)?);
        } else {
            subproof(m - k, d.get(k..)?, false, out)?;
            out.push(root_of(d.get(..k)?)?);
        }
        Some(())
    }
    if m == 0 || m > leaves.len() {
        return None;
    }
    let mut out = Vec::new();
    subproof(m, leaves, true, &mut out)?;
    Some(out)
}

/// Checks a consistency proof between a tree of `first` leaves with root
/// `first_root` and one of `second` leaves with root `second_root` (RFC 9162
/// section 2.1.4.2): whether the second tree extends the first unchanged.
pub fn verify_consistency(first: u64, second: u64, first_root: &Hash, second_root: &Hash, proof: &[Hash]) -> bool {
    if first == 0 || first > second || proof.len() > 2 * MAX_PROOF_LEN {
        return false;
    }
    if first == second {
        return proof.is_empty() && first_root == second_root;
    }
    // If `first` is an exact power of two, the first tree's root is the
    // start of the path.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if first.is_power_of_two() {
        path.push(*first_root);
    }
    path.extend_from_slice(proof);
    let Some((start, rest)) = path.split_first() else { return false };
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*start, *start);
    for c in rest {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && fr == *first_root && sr == *second_root
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consistency_proofs_link_every_prefix_and_nothing_else() {
        let leaves: Vec<Hash> = (0..70u32).map(|i| leaf_hash(&i.to_be_bytes())).collect();
        for n in 1..=leaves.len() {
            let all = &leaves[..n];
            let root_n = mth(all);
            for m in 1..=n {
                let proof = consistency_proof(all, m).unwrap();
                let root_m = mth(&all[..m]);
                assert!(verify_consistency(m as u64, n as u64, &root_m, &root_n, &proof), "m={m} n={n}");
                // A rewritten prefix, a later root or a truncated proof fails.
                // (A wrong size can pass, as for inclusion proofs: each
                // checkpoint's signature binds its root to its size.)
                let mut other = all[..m].to_vec();
                other[0] = leaf_hash(b"rewritten");
                assert!(!verify_consistency(m as u64, n as u64, &mth(&other), &root_n, &proof), "m={m} n={n}");
                if m < n {
                    assert!(!verify_consistency(m as u64, n as u64, &root_m, &root_n, &proof[1..]), "m={m} n={n}");
                    if n < leaves.len() {
                        let later = mth(&leaves[..n + 1]);
                        assert!(!verify_consistency(m as u64, n as u64, &root_m, &later, &proof), "m={m} n={n}");
                    }
                }
            }
        }
        assert!(consistency_proof(&leaves, 0).is_none());
        assert!(consistency_proof(&leaves[..3], 4).is_none());
        assert!(!verify_consistency(0, 5, &[0; 32], &[0; 32], &[]));
        assert!(!verify_consistency(6, 5, &[0; 32], &[0; 32], &[]));
    }

    #[test]
    fn accumulator_matches_the_tree_at_every_size() {
        let mut acc = Accumulator::new();
        assert_eq!(acc.root(), None);
        let mut leaves = Vec::new();
        for i in 0u32..300 {
            let leaf = leaf_hash(&i.to_be_bytes());
            leaves.push(leaf);
            acc.push(leaf);
            assert_eq!(acc.root(), Some(mth(&leaves)), "size {}", i + 1);
            assert_eq!(acc.size(), u64::from(i) + 1);
        }
    }

    /// RFC 6962 MTH, written recursively as in the RFC, to check the
    /// bottom-up construction against.
    fn mth(leaves: &[Hash]) -> Hash {
        match leaves.len() {
            0 => sha256(&[]),
            1 => leaves[0],
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                node_hash(&mth(&leaves[..k]), &mth(&leaves[k..]))
            }
        }
    }

    #[test]
    #[allow(clippy::needless_range_loop)]
    fn matches_recursive_definition_and_proofs_verify() {
        for n in 1..=40usize {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&[i as u8])).collect();
            let tree = Tree::new(leaves.clone()).unwrap();
            assert_eq!(tree.root(), mth(&leaves), "size {n}");
            for i in 0..n {
                let path = tree.inclusion_proof(i).unwrap();
                assert_eq!(root_from_proof(leaves[i], i as u64, n as u64, &path), Some(tree.root()), "n={n} i={i}");
                // A wrong index never yields the root. (A wrong size can: the
                // envelope signature covers the size separately.)
                if n > 1 {
                    let other = (i + 1) % n;
                    assert_ne!(root_from_proof(leaves[i], other as u64, n as u64, &path), Some(tree.root()));
                }
            }
        }
    }

    #[test]
    fn rfc6962_empty_and_known_values() {
        // Known answer: the CT test tree's leaf 0 is the empty string.
        assert_eq!(
            crate::hex::encode(&leaf_hash(b"")),
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
        );
        assert!(Tree::new(vec![]).is_none());
        assert_eq!(root_from_proof([0; 32], 0, 0, &[]), None);
        assert_eq!(root_from_proof([0; 32], 0, 1, &[[1; 32]]), None);
    }
}
