//! The canonical binary encoding every Strongroom structure uses.
//!
//! Integers are big-endian and fixed-width; variable-length fields carry a
//! length prefix. There is exactly one encoding of each value, so signatures
//! over encodings are unambiguous. Every read is bounds-checked and returns a
//! [`DecodeError`] instead of panicking.

use thiserror::Error;

/// Why a byte string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended before the named field was complete.
    #[error("input truncated while reading {field}")]
    Truncated {
        /// Field being read.
        field: &'static str,
    },
    /// A length or count exceeds the limit for that field.
    #[error("{field} is {len}, over the limit of {max}")]
    TooLong {
        /// Field being read.
        field: &'static str,
        /// Declared length or count.
        len: u64,
        /// Largest accepted value.
        max: u64,
    },
    /// Bytes remain after the structure ended.
    #[error("{count} unexpected trailing bytes after {what}")]
    TrailingBytes {
        /// Structure that was decoded.
        what: &'static str,
        /// Number of extra bytes.
        count: usize,
    },
    /// A field holds a value the format does not allow.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Field being read.
        field: &'static str,
        /// What was wrong with it.
        reason: &'static str,
    },
}

/// Appends encoded fields to a buffer.
#[derive(Default)]
pub(crate) struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub(crate) fn with_capacity(cap: usize) -> Self {
        Self { buf: Vec::with_capacity(cap) }
    }

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Fixed-size field: no length prefix.
    pub(crate) fn raw(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }

    /// Variable field with a u16 length prefix. Callers bound `v` beforehand;
    /// lengths past `u16::MAX` are a programming error caught by the encoder's
    /// own limits, so saturating here never produces a valid-looking field.
    pub(crate) fn bytes16(&mut self, v: &[u8]) -> &mut Self {
        let len = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.u16(len);
        self.raw(v.get(..usize::from(len)).unwrap_or(v))
    }

    /// Variable field with a u32 length prefix.
    pub(crate) fn bytes32(&mut self, v: &[u8]) -> &mut Self {
        let len = u32::try_from(v.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.raw(v)
    }

    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads encoded fields from a byte slice, never past its end.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub(crate) fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated { field });
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, field)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }

    pub(crate) fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }

    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(DecodeError::Invalid { field, reason: "boolean must be 0 or 1" }),
        }
    }

    /// u16-prefixed bytes, at most `max` long.
    pub(crate) fn bytes16(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = usize::from(self.u16(field)?);
        check_len(field, len, max)?;
        self.take(len, field)
    }

    /// u32-prefixed bytes, at most `max` long.
    pub(crate) fn bytes32(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(self.u32(field)?).unwrap_or(usize::MAX);
        check_len(field, len, max)?;
        self.take(len, field)
    }

    /// UTF-8 text with a u16 length prefix.
    pub(crate) fn str16(&mut self, field: &'static str, max: usize) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes16(field, max)?)
            .map_err(|_| DecodeError::Invalid { field, reason: "not valid UTF-8" })
    }

    /// UTF-8 text with a u32 length prefix.
    pub(crate) fn str32(&mut self, field: &'static str, max: usize) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.bytes32(field, max)?)
            .map_err(|_| DecodeError::Invalid { field, reason: "not valid UTF-8" })
    }

    /// A u16 element count, at most `max`, checked against the bytes left so a
    /// hostile count cannot make the caller reserve memory it will never fill.
    pub(crate) fn count16(&mut self, field: &'static str, max: usize, min_elem: usize) -> Result<usize, DecodeError> {
        let n = usize::from(self.u16(field)?);
        self.check_count(field, n, max, min_elem)
    }

    /// A u32 element count; see [`Reader::count16`].
    pub(crate) fn count32(&mut self, field: &'static str, max: usize, min_elem: usize) -> Result<usize, DecodeError> {
        let n = usize::try_from(self.u32(field)?).unwrap_or(usize::MAX);
        self.check_count(field, n, max, min_elem)
    }

    fn check_count(&self, field: &'static str, n: usize, max: usize, min_elem: usize) -> Result<usize, DecodeError> {
        check_len(field, n, max)?;
        if n.saturating_mul(min_elem) > self.buf.len() {
            return Err(DecodeError::Truncated { field });
        }
        Ok(n)
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    pub(crate) fn finish(self, what: &'static str) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes { what, count: self.buf.len() })
        }
    }
}

fn check_len(field: &'static str, len: usize, max: usize) -> Result<(), DecodeError> {
    if len > max {
        return Err(DecodeError::TooLong { field, len: len as u64, max: max as u64 });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_field_kind() {
        let mut w = Writer::default();
        w.u8(7).u16(0x0102).u32(0x0304_0506).u64(9).bytes16(b"ab").bytes32(b"cde").raw(&[1, 2]);
        let bytes = w.finish();
        let mut r = Reader::new(&bytes);
        assert_eq!(r.u8("a").unwrap(), 7);
        assert_eq!(r.u16("b").unwrap(), 0x0102);
        assert_eq!(r.u32("c").unwrap(), 0x0304_0506);
        assert_eq!(r.u64("d").unwrap(), 9);
        assert_eq!(r.bytes16("f", 10).unwrap(), b"ab");
        assert_eq!(r.bytes32("g", 10).unwrap(), b"cde");
        assert_eq!(r.array::<2>("h").unwrap(), [1, 2]);
        r.finish("test").unwrap();
    }

    #[test]
    fn rejects_truncation_oversize_and_trailing() {
        assert_eq!(Reader::new(&[0]).u16("x"), Err(DecodeError::Truncated { field: "x" }));
        let mut r = Reader::new(&[0, 5, 1, 2]);
        assert!(matches!(r.bytes16("x", 4), Err(DecodeError::TooLong { len: 5, .. })));
        let mut r = Reader::new(&[0, 3, 1, 2]);
        assert_eq!(r.bytes16("x", 4), Err(DecodeError::Truncated { field: "x" }));
        assert!(matches!(Reader::new(&[1]).finish("t"), Err(DecodeError::TrailingBytes { count: 1, .. })));
        assert!(Reader::new(&[2]).bool("b").is_err());
        // A count larger than the bytes that could hold it is refused up front.
        let mut r = Reader::new(&[0xff, 0xff, 0, 0]);
        assert_eq!(r.count16("n", 100_000, 16), Err(DecodeError::Truncated { field: "n" }));
    }
}
