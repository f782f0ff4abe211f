//! Streaming helpers over `std::io` readers and writers, for files of any
//! size in two chunk buffers of memory.

use std::io::{ErrorKind, Read, Write};

use super::{AttachmentError, AttachmentOpener, AttachmentSealer, STREAM_HEADER_LEN};
use crate::content::FileRef;
use crate::keys::SecretBytes;
use crate::primitives::{Sha256, AEAD_TAG_LEN};

/// What a stream pass measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSummary {
    /// Plaintext bytes.
    pub plaintext_len: u64,
    /// Encrypted blob bytes (header and tags included).
    pub ciphertext_len: u64,
    /// SHA-256 of the encrypted blob.
    pub ciphertext_sha256: [u8; 32],
}

impl StreamSummary {
    /// Checks a decrypted blob against the message's file reference.
    pub fn check(&self, file: &FileRef) -> Result<(), AttachmentError> {
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&self.ciphertext_sha256[..], &file.ciphertext_sha256[..])) {
            return Err(AttachmentError::HashMismatch);
        }
        if self.plaintext_len != file.size {
            return Err(AttachmentError::SizeMismatch { expected: file.size, got: self.plaintext_len });
        }
        Ok(())
    }
}

/// Reads until `buf` holds `want` bytes or the input ends.
fn fill(input: &mut impl Read, buf: &mut Vec<u8>, want: usize) -> Result<(), AttachmentError> {
    while buf.len() < want {
        let start = buf.len();
        buf.resize(want, 0);
        let got = loop {
            match input.read(buf.get_mut(start..).unwrap_or_default()) {
                Ok(n) => break n,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => {
                    buf.truncate(start);
                    return Err(e.into());
                }
            }
        };
        buf.truncate(start + got);
        if got == 0 {
            break;
        }
    }
    Ok(())
}

/// Encrypts `input` to `output` as an attachment stream.
pub fn encrypt(
    file_key: &SecretBytes<32>,
    stream_id: [u8; 16],
    chunk_size: u32,
    mut input: impl Read,
    mut output: impl Write,
) -> Result<StreamSummary, AttachmentError> {
    let (mut sealer, header) = AttachmentSealer::new(file_key, stream_id, chunk_size)?;
    let cs = sealer.chunk_size();
    let mut hash = Sha256::new();
    output.write_all(&header)?;
    hash.update(&header);
    let mut summary =
        StreamSummary { plaintext_len: 0, ciphertext_len: STREAM_HEADER_LEN as u64, ciphertext_sha256: [0; 32] };
    // One chunk of lookahead tells whether the current chunk is the last.
    let mut cur = Vec::with_capacity(cs + AEAD_TAG_LEN);
    let mut next = Vec::with_capacity(cs + AEAD_TAG_LEN);
    fill(&mut input, &mut cur, cs)?;
    loop {
        let last = if cur.len() < cs {
            true
        } else {
            next.clear();
            fill(&mut input, &mut next, cs)?;
            next.is_empty()
        };
        summary.plaintext_len += cur.len() as u64;
        sealer.seal_chunk(&mut cur, last)?;
        hash.update(&cur);
        output.write_all(&cur)?;
        summary.ciphertext_len += cur.len() as u64;
        if last {
            break;
        }
        std::mem::swap(&mut cur, &mut next);
    }
    output.flush()?;
    summary.ciphertext_sha256 = hash.finish();
    Ok(summary)
}

/// Decrypts an attachment stream from `input` to `output`. Plaintext is
/// written chunk by chunk as it authenticates; on error, discard the output.
pub fn decrypt(
    file_key: &SecretBytes<32>,
    mut input: impl Read,
    mut output: impl Write,
) -> Result<StreamSummary, AttachmentError> {
    let mut header = Vec::with_capacity(STREAM_HEADER_LEN);
    fill(&mut input, &mut header, STREAM_HEADER_LEN)?;
    let mut opener = AttachmentOpener::new(file_key, &header)?;
    let mut hash = Sha256::new();
    hash.update(&header);
    let full = opener.sealed_chunk_len();
    let mut summary =
        StreamSummary { plaintext_len: 0, ciphertext_len: STREAM_HEADER_LEN as u64, ciphertext_sha256: [0; 32] };
    let mut cur = Vec::with_capacity(full + 1);
    fill(&mut input, &mut cur, full)?;
    if cur.is_empty() {
        return Err(AttachmentError::Truncated { chunks: 0 });
    }
    let mut next = Vec::with_capacity(full + 1);
    loop {
        let last = if cur.len() < full {
            true
        } else {
            next.clear();
            fill(&mut input, &mut next, full)?;
            next.is_empty()
        };
        hash.update(&cur);
        summary.ciphertext_len += cur.len() as u64;
        opener.open_chunk(&mut cur, last)?;
        summary.plaintext_len += cur.len() as u64;
        output.write_all(&cur)?;
        if last {
            break;
        }
        std::mem::swap(&mut cur, &mut next);
    }
    opener.finish()?;
    output.flush()?;
    summary.ciphertext_sha256 = hash.finish();
    Ok(summary)
}
