//! Padding hides the exact size of a message: the sealed plaintext is
//! `content length u32 | content | zero bytes`, padded up to the next bucket.
//! Buckets are powers of two from 256 bytes to [`MAX_PADDED_LEN`].

use zeroize::Zeroizing;

pub(crate) const LEN_PREFIX: usize = 4;
const MIN_BUCKET: usize = 256;
/// Largest padded plaintext an envelope may carry (256 KiB).
pub(crate) const MAX_PADDED_LEN: usize = 256 * 1024;

/// The bucket for `len` bytes of content, or `None` if it does not fit.
pub(crate) fn bucket(len: usize) -> Option<usize> {
    let needed = len.checked_add(LEN_PREFIX)?;
    let b = needed.max(MIN_BUCKET).checked_next_power_of_two()?;
    (b <= MAX_PADDED_LEN).then_some(b)
}

/// Pads `content`, leaving `extra` spare capacity for the AEAD tag.
pub(crate) fn pad(content: &[u8], extra: usize) -> Option<Zeroizing<Vec<u8>>> {
    let size = bucket(content.len())?;
    let len = u32::try_from(content.len()).ok()?;
    let mut v = Zeroizing::new(Vec::with_capacity(size + extra));
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(content);
    v.resize(size, 0);
    Some(v)
}

/// Strips padding; `None` unless the length is a bucket size, the prefix
/// fits, and every padding byte is zero.
pub(crate) fn unpad(padded: &[u8]) -> Option<&[u8]> {
    if padded.len() < MIN_BUCKET || padded.len() > MAX_PADDED_LEN || !padded.len().is_power_of_two() {
        return None;
    }
    let (prefix, rest) = padded.split_at_checked(LEN_PREFIX)?;
    let len = usize::try_from(u32::from_be_bytes(prefix.try_into().ok()?)).ok()?;
    let (content, zeros) = rest.split_at_checked(len)?;
    if bucket(len) != Some(padded.len()) || zeros.iter().any(|&b| b != 0) {
        return None;
    }
    Some(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets() {
        assert_eq!(bucket(0), Some(256));
        assert_eq!(bucket(252), Some(256));
        assert_eq!(bucket(253), Some(512));
        assert_eq!(bucket(MAX_PADDED_LEN - 4), Some(MAX_PADDED_LEN));
        assert_eq!(bucket(MAX_PADDED_LEN - 3), None);
    }

    #[test]
    fn round_trip_and_rejects() {
        for n in [0usize, 1, 252, 253, 1000] {
            let content = vec![7u8; n];
            let p = pad(&content, 16).unwrap();
            assert_eq!(p.len(), bucket(n).unwrap());
            assert_eq!(unpad(&p), Some(&content[..]));
        }
        let mut p = pad(b"abc", 0).unwrap();
        p[10] = 1;
        assert_eq!(unpad(&p), None, "non-zero padding");
        let mut p = pad(b"abc", 0).unwrap();
        p[3] = 0xff;
        assert_eq!(unpad(&p), None, "length past the end");
        let p = pad(&[1u8; 300], 0).unwrap();
        let mut shrunk = p.to_vec();
        shrunk[..4].copy_from_slice(&10u32.to_be_bytes());
        assert_eq!(unpad(&shrunk), None, "length that belongs in a smaller bucket");
        assert_eq!(unpad(&[0u8; 100]), None, "not a bucket size");
    }
}
