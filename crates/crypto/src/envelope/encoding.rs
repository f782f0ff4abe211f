//! The two wire forms of an envelope.
//!
//! Full form (what the sender posts):
//! `header 219 | form u8 = 1 | ciphertext (u32 length | bytes) |
//!  wrap count u32 | wraps (101 each, ascending by (network, user, device)) |
//!  signature 64`
//!
//! Delivered form (what one device receives: its own wrap and a proof):
//! `header 219 | form u8 = 2 | ciphertext (u32 length | bytes) |
//!  tree size u32 | leaf index u32 | wrap 101 | proof count u8 | proof (32 each) |
//!  signature 64`
//!
//! Both carry the same signature, over
//! `"strongroom/v2/envelope" 0x00 | header | SHA-256(ciphertext) | tree size u32 |
//!  Merkle root of the wraps`.

use super::header::{Header, HEADER_LEN};
use super::wrap::{Wrap, WRAP_LEN};
use super::EnvelopeError;
use crate::codec::{Reader, Writer};
use crate::content::MAX_PADDED_LEN;
use crate::ids::{DeviceId, NetworkId, UserId};
use crate::keys::Signature;
use crate::merkle::{self, Hash, Tree, MAX_PROOF_LEN};
use crate::primitives::{sha256, AEAD_TAG_LEN};
use crate::suite::label;

/// Most recipient devices one envelope may name.
pub const MAX_RECIPIENTS: usize = 16_384;
/// Largest ciphertext: the largest padded plaintext plus the tag.
pub const MAX_CIPHERTEXT: usize = MAX_PADDED_LEN + AEAD_TAG_LEN;

const FORM_FULL: u8 = 1;
const FORM_DELIVERED: u8 = 2;

/// A sealed message with a wrap for every recipient device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub(crate) header: Header,
    pub(crate) ciphertext: Vec<u8>,
    pub(crate) wraps: Vec<Wrap>,
    pub(crate) signature: Signature,
}

/// A sealed message as one device receives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredEnvelope {
    pub(crate) header: Header,
    pub(crate) ciphertext: Vec<u8>,
    pub(crate) tree_size: u32,
    pub(crate) leaf_index: u32,
    pub(crate) wrap: Wrap,
    pub(crate) proof: Vec<Hash>,
    pub(crate) signature: Signature,
}

pub(crate) fn signature_input(header: &[u8; HEADER_LEN], ciphertext: &[u8], tree_size: u32, root: &Hash) -> Vec<u8> {
    let mut w = Writer::with_capacity(label::ENVELOPE.len() + 1 + HEADER_LEN + 32 + 4 + 32);
    w.raw(label::ENVELOPE).u8(0).raw(header).raw(&sha256(&[ciphertext])).u32(tree_size).raw(root);
    w.finish()
}

pub(crate) fn wraps_tree(wraps: &[Wrap]) -> Option<Tree> {
    Tree::new(wraps.iter().map(|w| merkle::leaf_hash(&w.encode())).collect())
}

fn read_start<'a>(bytes: &'a [u8], form: u8) -> Result<(Header, &'a [u8], Reader<'a>), EnvelopeError> {
    let mut r = Reader::new(bytes);
    let header = Header::read(&mut r)?;
    match r.u8("envelope form")? {
        f if f == form => {}
        FORM_FULL | FORM_DELIVERED => return Err(EnvelopeError::WrongForm),
        _ => {
            return Err(EnvelopeError::Decode(crate::codec::DecodeError::Invalid {
                field: "envelope form",
                reason: "must be 1 (full) or 2 (delivered)",
            }))
        }
    }
    let ciphertext = r.bytes32("ciphertext", MAX_CIPHERTEXT)?;
    if ciphertext.len() < AEAD_TAG_LEN {
        return Err(EnvelopeError::Decode(crate::codec::DecodeError::Invalid {
            field: "ciphertext",
            reason: "shorter than the AEAD tag",
        }));
    }
    Ok((header, ciphertext, r))
}

impl Envelope {
    /// The clear-text header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The wraps, ascending by (network, user, device): the exact recipient set.
    pub fn wraps(&self) -> &[Wrap] {
        &self.wraps
    }

    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::with_capacity(HEADER_LEN + 9 + self.ciphertext.len() + self.wraps.len() * WRAP_LEN + 64);
        w.raw(&self.header.encode())
            .u8(FORM_FULL)
            .bytes32(&self.ciphertext)
            .u32(u32::try_from(self.wraps.len()).unwrap_or(u32::MAX));
        for wrap in &self.wraps {
            wrap.write(&mut w);
        }
        w.raw(&self.signature.0);
        w.finish()
    }

    /// Parses the full form. Checks structure only (wraps sorted and unique);
    /// authenticity is checked when a device opens its delivery.
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let (header, ciphertext, mut r) = read_start(bytes, FORM_FULL)?;
        let n = r.count32("wrap count", MAX_RECIPIENTS, WRAP_LEN)?;
        if n == 0 {
            return Err(EnvelopeError::NoRecipients);
        }
        let mut wraps = Vec::with_capacity(n);
        for _ in 0..n {
            wraps.push(Wrap::read(&mut r)?);
        }
        let signature = Signature(r.array("signature")?);
        r.finish("envelope")?;
        check_sorted(&wraps)?;
        Ok(Self { header, ciphertext: ciphertext.to_vec(), wraps, signature })
    }

    /// The delivery for one device, or `None` if it is not a recipient.
    pub fn for_device(&self, network: NetworkId, user: UserId, device: DeviceId) -> Option<DeliveredEnvelope> {
        let index = self.wraps.binary_search_by_key(&(network, user, device), Wrap::recipient).ok()?;
        let tree = wraps_tree(&self.wraps)?;
        self.delivery(&tree, index)
    }

    /// The deliveries for every recipient, building the wrap tree once.
    pub fn deliveries(&self) -> Vec<DeliveredEnvelope> {
        let Some(tree) = wraps_tree(&self.wraps) else {
            return Vec::new();
        };
        (0..self.wraps.len()).filter_map(|i| self.delivery(&tree, i)).collect()
    }

    fn delivery(&self, tree: &Tree, index: usize) -> Option<DeliveredEnvelope> {
        Some(DeliveredEnvelope {
            header: self.header,
            ciphertext: self.ciphertext.clone(),
            tree_size: u32::try_from(self.wraps.len()).ok()?,
            leaf_index: u32::try_from(index).ok()?,
            wrap: *self.wraps.get(index)?,
            proof: tree.inclusion_proof(index)?,
            signature: self.signature,
        })
    }
}

/// An envelope split for a relay's storage: the part every recipient shares
/// (stored once) and a small tail per recipient device. For each device,
/// `prefix | tail | signature` is exactly its delivered form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryParts {
    /// `header | form 2 | ciphertext | tree size`.
    pub prefix: Vec<u8>,
    /// The sender's signature (the last 64 bytes of every delivery).
    pub signature: [u8; 64],
    /// Per recipient (network, user, device): `leaf index u32 | wrap |
    /// proof count u8 | proof`.
    pub tails: Vec<(NetworkId, UserId, DeviceId, Vec<u8>)>,
}

impl DeliveryParts {
    /// The delivered form for one tail.
    pub fn join(prefix: &[u8], tail: &[u8], signature: &[u8]) -> Vec<u8> {
        let mut v = Vec::with_capacity(prefix.len() + tail.len() + signature.len());
        v.extend_from_slice(prefix);
        v.extend_from_slice(tail);
        v.extend_from_slice(signature);
        v
    }
}

impl Envelope {
    /// Splits the envelope into what a relay stores (see [`DeliveryParts`]).
    pub fn delivery_parts(&self) -> DeliveryParts {
        let mut w = Writer::with_capacity(HEADER_LEN + 9 + self.ciphertext.len());
        w.raw(&self.header.encode())
            .u8(FORM_DELIVERED)
            .bytes32(&self.ciphertext)
            .u32(u32::try_from(self.wraps.len()).unwrap_or(u32::MAX));
        let prefix = w.finish();
        let tails = match wraps_tree(&self.wraps) {
            Some(tree) => self
                .wraps
                .iter()
                .enumerate()
                .map(|(i, wrap)| {
                    let proof = tree.inclusion_proof(i).unwrap_or_default();
                    let mut t = Writer::with_capacity(4 + WRAP_LEN + 1 + 32 * proof.len());
                    t.u32(u32::try_from(i).unwrap_or(u32::MAX));
                    wrap.write(&mut t);
                    t.u8(u8::try_from(proof.len()).unwrap_or(u8::MAX));
                    for h in &proof {
                        t.raw(h);
                    }
                    (wrap.network_id, wrap.user_id, wrap.device_id, t.finish())
                })
                .collect(),
            None => Vec::new(),
        };
        DeliveryParts { prefix, signature: self.signature.0, tails }
    }
}

fn check_sorted(wraps: &[Wrap]) -> Result<(), EnvelopeError> {
    for pair in wraps.windows(2) {
        if let [a, b] = pair {
            if a.recipient() >= b.recipient() {
                return Err(EnvelopeError::Decode(crate::codec::DecodeError::Invalid {
                    field: "wraps",
                    reason: "not in strictly ascending (network, user, device) order",
                }));
            }
        }
    }
    Ok(())
}

impl DeliveredEnvelope {
    /// The clear-text header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The wrap addressed to this device.
    pub fn wrap(&self) -> &Wrap {
        &self.wrap
    }

    /// The wire encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut w =
            Writer::with_capacity(HEADER_LEN + 15 + self.ciphertext.len() + WRAP_LEN + 32 * self.proof.len() + 64);
        w.raw(&self.header.encode())
            .u8(FORM_DELIVERED)
            .bytes32(&self.ciphertext)
            .u32(self.tree_size)
            .u32(self.leaf_index);
        self.wrap.write(&mut w);
        w.u8(u8::try_from(self.proof.len()).unwrap_or(u8::MAX));
        for h in &self.proof {
            w.raw(h);
        }
        w.raw(&self.signature.0);
        w.finish()
    }

    /// Parses the delivered form (structure only).
    pub fn decode(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let (header, ciphertext, mut r) = read_start(bytes, FORM_DELIVERED)?;
        let tree_size = r.u32("tree size")?;
        let leaf_index = r.u32("leaf index")?;
        if tree_size == 0 || usize::try_from(tree_size).map_or(true, |n| n > MAX_RECIPIENTS) || leaf_index >= tree_size
        {
            return Err(EnvelopeError::Decode(crate::codec::DecodeError::Invalid {
                field: "tree size or leaf index",
                reason: "tree size must be 1..=16384 and the index below it",
            }));
        }
        let wrap = Wrap::read(&mut r)?;
        let n = usize::from(r.u8("proof count")?);
        if n > MAX_PROOF_LEN {
            return Err(EnvelopeError::Decode(crate::codec::DecodeError::TooLong {
                field: "proof count",
                len: n as u64,
                max: MAX_PROOF_LEN as u64,
            }));
        }
        let mut proof = Vec::with_capacity(n);
        for _ in 0..n {
            proof.push(r.array("proof hash")?);
        }
        let signature = Signature(r.array("signature")?);
        r.finish("delivered envelope")?;
        Ok(Self { header, ciphertext: ciphertext.to_vec(), tree_size, leaf_index, wrap, proof, signature })
    }
}
