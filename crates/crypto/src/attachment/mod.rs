//! Attachments: a chunked AEAD stream (the STREAM construction) with flat
//! memory for files of any size.
//!
//! ```text
//! blob   = stream header (27 bytes) | chunk_0 | … | chunk_n
//! header = "SRAT" | version u8 (2) | suite u16 (1) | chunk size u32 | stream id 16
//! key    = HKDF-SHA256(salt = stream id, IKM = file key,
//!                      info = "strongroom/v2/attachment" 0x00 | header)
//! chunk_i = AES-256-GCM(key, nonce = i u64 | 0x000000 | last u8, aad = "", plaintext_i)
//! ```
//! Every chunk but the last holds exactly `chunk size` plaintext bytes; the
//! last holds 1..=chunk size bytes (0 only for an empty file), with `last = 1`
//! in its nonce. Reordering or splicing changes a chunk's index; truncation
//! loses the last flag; a chunk from another file fails under another key.

mod stream;

pub use stream::{decrypt, encrypt, StreamSummary};

use thiserror::Error;

use crate::codec::{DecodeError, Reader, Writer};
use crate::keys::SecretBytes;
use crate::primitives::{self, AeadKey, AEAD_TAG_LEN};
use crate::suite::{check_version, label, Suite, VersionError, PROTOCOL_VERSION};

/// Encoded stream header size.
pub const STREAM_HEADER_LEN: usize = 4 + 1 + 2 + 4 + 16;
/// The chunk size senders use by default (256 KiB).
pub const DEFAULT_CHUNK_SIZE: u32 = 256 * 1024;
/// Smallest accepted chunk size.
pub const MIN_CHUNK_SIZE: u32 = 1024;
/// Largest accepted chunk size (bounds a receiver's memory).
pub const MAX_CHUNK_SIZE: u32 = 16 * 1024 * 1024;
const MAGIC: &[u8; 4] = b"SRAT";

/// Why an attachment stream was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AttachmentError {
    /// The stream header is malformed.
    #[error("malformed attachment header: {0}")]
    Decode(#[from] DecodeError),
    /// Unknown version or suite.
    #[error("{0}")]
    Version(#[from] VersionError),
    /// The chunk size is outside 1 KiB..=16 MiB.
    #[error("attachment chunk size {0} is outside {MIN_CHUNK_SIZE}..={MAX_CHUNK_SIZE}")]
    ChunkSize(u32),
    /// A chunk failed authentication: altered, reordered, or from another file.
    #[error("attachment chunk {chunk} does not authenticate: the file was altered, reordered or spliced")]
    Tampered {
        /// Zero-based chunk index.
        chunk: u64,
    },
    /// The stream ended before its last chunk.
    #[error("attachment is truncated: it ends after {chunks} chunks without its final chunk")]
    Truncated {
        /// Complete chunks seen.
        chunks: u64,
    },
    /// Data after the final chunk, or a chunk given after `last`.
    #[error("attachment has data after its final chunk")]
    TrailingData,
    /// A non-final chunk of the wrong size was given to the sealer.
    #[error("chunk {chunk} has {len} bytes; every chunk but the last must have exactly {chunk_size}")]
    ChunkLength {
        /// Chunk index.
        chunk: u64,
        /// Its length.
        len: usize,
        /// The stream's chunk size.
        chunk_size: u32,
    },
    /// The blob's SHA-256 differs from the file reference.
    #[error("attachment hash does not match the message's file reference")]
    HashMismatch,
    /// The plaintext size differs from the file reference.
    #[error("attachment is {got} bytes; the message says {expected}")]
    SizeMismatch {
        /// Size in the reference.
        expected: u64,
        /// Size decrypted.
        got: u64,
    },
    /// Reading or writing the stream failed.
    #[error("attachment I/O failed ({kind:?}): {message}")]
    Io {
        /// The I/O error kind.
        kind: std::io::ErrorKind,
        /// Its description.
        message: String,
    },
    /// The backend failed.
    #[error("cryptographic backend failure")]
    Backend,
}

impl From<std::io::Error> for AttachmentError {
    fn from(e: std::io::Error) -> Self {
        AttachmentError::Io { kind: e.kind(), message: e.to_string() }
    }
}

fn header_bytes(chunk_size: u32, stream_id: &[u8; 16]) -> [u8; STREAM_HEADER_LEN] {
    let mut w = Writer::with_capacity(STREAM_HEADER_LEN);
    w.raw(MAGIC).u8(PROTOCOL_VERSION).u16(Suite::Curve25519Aes256Gcm.id()).u32(chunk_size).raw(stream_id);
    let mut out = [0u8; STREAM_HEADER_LEN];
    out.copy_from_slice(&w.finish());
    out
}

fn chunk_key(
    file_key: &SecretBytes<32>,
    header: &[u8; STREAM_HEADER_LEN],
    stream_id: &[u8; 16],
) -> Result<AeadKey, AttachmentError> {
    let key = primitives::hkdf_sha256_key(stream_id, file_key.expose(), &[label::ATTACHMENT, &[0], header])
        .map_err(|_| AttachmentError::Backend)?;
    primitives::aead_key(key.expose()).map_err(|_| AttachmentError::Backend)
}

fn nonce(index: u64, last: bool) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    n
}

fn check_chunk_size(chunk_size: u32) -> Result<(), AttachmentError> {
    if (MIN_CHUNK_SIZE..=MAX_CHUNK_SIZE).contains(&chunk_size) {
        Ok(())
    } else {
        Err(AttachmentError::ChunkSize(chunk_size))
    }
}

/// Encrypts an attachment chunk by chunk (sans-IO).
pub struct AttachmentSealer {
    key: AeadKey,
    chunk_size: u32,
    index: u64,
    done: bool,
}

impl AttachmentSealer {
    /// Starts a stream; returns the sealer and the header to write first.
    /// `stream_id` must be random (it salts the chunk key).
    pub fn new(
        file_key: &SecretBytes<32>,
        stream_id: [u8; 16],
        chunk_size: u32,
    ) -> Result<(Self, [u8; STREAM_HEADER_LEN]), AttachmentError> {
        check_chunk_size(chunk_size)?;
        let header = header_bytes(chunk_size, &stream_id);
        let key = chunk_key(file_key, &header, &stream_id)?;
        Ok((Self { key, chunk_size, index: 0, done: false }, header))
    }

    /// The plaintext bytes per chunk.
    pub fn chunk_size(&self) -> usize {
        self.chunk_size as usize
    }

    /// Encrypts `chunk` in place and appends its tag. Every chunk but the
    /// last must be exactly the chunk size.
    pub fn seal_chunk(&mut self, chunk: &mut Vec<u8>, last: bool) -> Result<(), AttachmentError> {
        if self.done {
            return Err(AttachmentError::TrailingData);
        }
        // The last chunk carries 1..=chunk size bytes; it is empty only when
        // the whole file is (one encoding per file).
        let len_ok = if last {
            chunk.len() <= self.chunk_size() && (!chunk.is_empty() || self.index == 0)
        } else {
            chunk.len() == self.chunk_size()
        };
        if !len_ok {
            return Err(AttachmentError::ChunkLength {
                chunk: self.index,
                len: chunk.len(),
                chunk_size: self.chunk_size,
            });
        }
        let tag = primitives::seal_with(&self.key, nonce(self.index, last), &[], chunk)
            .map_err(|_| AttachmentError::Backend)?;
        chunk.extend_from_slice(&tag);
        self.index += 1;
        self.done = last;
        Ok(())
    }
}

/// Decrypts an attachment chunk by chunk (sans-IO).
pub struct AttachmentOpener {
    key: AeadKey,
    chunk_size: u32,
    index: u64,
    done: bool,
}

impl AttachmentOpener {
    /// Reads the stream header and derives the chunk key.
    pub fn new(file_key: &SecretBytes<32>, header: &[u8]) -> Result<Self, AttachmentError> {
        let mut r = Reader::new(header);
        if r.array::<4>("attachment magic")? != *MAGIC {
            return Err(AttachmentError::Decode(DecodeError::Invalid {
                field: "attachment magic",
                reason: "not a Strongroom attachment (expected \"SRAT\")",
            }));
        }
        check_version(r.u8("attachment version")?)?;
        Suite::from_id(r.u16("attachment suite")?)?;
        let chunk_size = r.u32("chunk size")?;
        check_chunk_size(chunk_size)?;
        let stream_id: [u8; 16] = r.array("stream id")?;
        r.finish("attachment header")?;
        let expected = header_bytes(chunk_size, &stream_id);
        let key = chunk_key(file_key, &expected, &stream_id)?;
        Ok(Self { key, chunk_size, index: 0, done: false })
    }

    /// Ciphertext bytes of a full chunk (chunk size plus tag).
    pub fn sealed_chunk_len(&self) -> usize {
        self.chunk_size as usize + AEAD_TAG_LEN
    }

    /// Decrypts one sealed chunk in place, removing its tag. `last` says
    /// whether the stream ends after it.
    pub fn open_chunk(&mut self, chunk: &mut Vec<u8>, last: bool) -> Result<(), AttachmentError> {
        if self.done {
            return Err(AttachmentError::TrailingData);
        }
        let index = self.index;
        let ok_len = if last {
            chunk.len() >= AEAD_TAG_LEN && chunk.len() <= self.sealed_chunk_len()
        } else {
            chunk.len() == self.sealed_chunk_len()
        };
        if !ok_len {
            return Err(if last {
                AttachmentError::Truncated { chunks: index }
            } else {
                AttachmentError::Tampered { chunk: index }
            });
        }
        let split = chunk.len() - AEAD_TAG_LEN;
        if last && split == 0 && index > 0 {
            // An empty final chunk after full ones: authentic only if the
            // key holder made it, and never what a sender writes.
            return Err(AttachmentError::Tampered { chunk: index });
        }
        let mut tag = [0u8; AEAD_TAG_LEN];
        tag.copy_from_slice(chunk.get(split..).unwrap_or_default());
        chunk.truncate(split);
        // A full-size final chunk might really be a non-final one whose
        // successors were cut off. Keep a copy (of this one chunk per file)
        // so that case can be told apart from tampering if it fails.
        let full_final = (last && split == self.chunk_size as usize).then(|| chunk.clone());
        if primitives::open_with(&self.key, nonce(index, last), &[], chunk, &tag).is_err() {
            let truncated = full_final.is_some_and(|mut copy| {
                primitives::open_with(&self.key, nonce(index, false), &[], &mut copy, &tag).is_ok()
            });
            return Err(if truncated {
                AttachmentError::Truncated { chunks: index + 1 }
            } else {
                AttachmentError::Tampered { chunk: index }
            });
        }
        self.index += 1;
        self.done = last;
        Ok(())
    }

    /// Confirms the final chunk was seen.
    pub fn finish(&self) -> Result<(), AttachmentError> {
        if self.done {
            Ok(())
        } else {
            Err(AttachmentError::Truncated { chunks: self.index })
        }
    }
}
