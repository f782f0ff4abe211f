//! A send over the WebSocket: one binary frame carries what `POST
//! /v1/messages` carries (the envelope's raw bytes and the optional
//! settings tag), under a request id the answer echoes. A device with its
//! socket open sends without an HTTP request and response per message, and
//! several sends share the socket's reads and writes.
//!
//! ```text
//! 0x01       kind: send
//! u64 (BE)   request id, chosen by the device, echoed by `sent` / `send_failed`
//! u8         settings-tag length n (0: no tag)
//! n bytes    settings tag, UTF-8 (the `strongroom-settings-tag` header's value)
//! rest       the envelope, full form, exactly as `POST /v1/messages` takes it
//! ```

/// The first byte of a send frame.
pub const SEND_KIND: u8 = 0x01;

/// Bytes before the settings tag: kind, request id, tag length.
const HEAD: usize = 1 + 8 + 1;

/// The most bytes a send frame adds to its envelope.
pub const SEND_OVERHEAD: usize = HEAD + u8::MAX as usize;

/// A decoded send frame, borrowing the frame's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendFrame<'a> {
    /// Echoed in the answer.
    pub request: u64,
    /// The settings the sender applied, if it names them.
    pub settings_tag: Option<&'a str>,
    /// The envelope's full-form bytes (not checked here: the relay decodes them).
    pub envelope: &'a [u8],
}

/// Why a binary frame is not a send frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendFrameError {
    /// Too short to hold a kind and a request id.
    #[error("a binary frame is a send: 0x01, an 8-byte request id, a tag length, the tag, the envelope")]
    TooShort,
    /// The first byte names no kind of binary frame.
    #[error("unknown binary frame kind {0:#04x}; the only one is 0x01 (send)")]
    UnknownKind(u8),
    /// A settings tag longer than a frame can carry (255 bytes).
    #[error("a settings tag is at most 255 bytes")]
    TagTooLong,
    /// The request id was read but the rest is not a send.
    #[error("request {request}: {reason}")]
    Malformed {
        /// The request id, so the answer can name it.
        request: u64,
        /// What was wrong.
        reason: &'static str,
    },
}

impl SendFrameError {
    /// The request id, when the frame got that far.
    pub fn request(&self) -> Option<u64> {
        match self {
            Self::Malformed { request, .. } => Some(*request),
            _ => None,
        }
    }
}

impl<'a> SendFrame<'a> {
    /// Reads a binary frame. Never panics; the envelope itself is left to its own decoder.
    pub fn decode(frame: &'a [u8]) -> Result<Self, SendFrameError> {
        let (&kind, rest) = frame.split_first().ok_or(SendFrameError::TooShort)?;
        if kind != SEND_KIND {
            return Err(SendFrameError::UnknownKind(kind));
        }
        let (id, rest) = rest.split_first_chunk::<8>().ok_or(SendFrameError::TooShort)?;
        let request = u64::from_be_bytes(*id);
        let bad = |reason| SendFrameError::Malformed { request, reason };
        let (&len, rest) = rest.split_first().ok_or(bad("the settings-tag length is missing"))?;
        let (tag, envelope) =
            rest.split_at_checked(usize::from(len)).ok_or(bad("the settings tag runs past the frame"))?;
        let settings_tag = match len {
            0 => None,
            _ => Some(std::str::from_utf8(tag).map_err(|_| bad("the settings tag is not UTF-8"))?),
        };
        if envelope.is_empty() {
            return Err(bad("the envelope is missing"));
        }
        Ok(Self { request, settings_tag, envelope })
    }

    /// The frame's bytes. A tag is never dropped: one too long is an error.
    pub fn encode(&self) -> Result<Vec<u8>, SendFrameError> {
        let tag = self.settings_tag.unwrap_or("");
        let len = u8::try_from(tag.len()).map_err(|_| SendFrameError::TagTooLong)?;
        let mut out = Vec::with_capacity(HEAD + tag.len() + self.envelope.len());
        out.push(SEND_KIND);
        out.extend_from_slice(&self.request.to_be_bytes());
        out.push(len);
        out.extend_from_slice(tag.as_bytes());
        out.extend_from_slice(self.envelope);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn round_trips_with_and_without_a_tag() {
        for tag in [None, Some("abc"), Some("é")] {
            let f = SendFrame { request: 0x0102_0304_0506_0708, settings_tag: tag, envelope: b"env" };
            let bytes = f.encode().unwrap();
            assert_eq!(bytes[..9], [1, 1, 2, 3, 4, 5, 6, 7, 8]);
            assert_eq!(SendFrame::decode(&bytes), Ok(f));
        }
    }

    #[test]
    fn malformed_frames_say_what_is_wrong_and_keep_the_request_id_once_read() {
        assert_eq!(SendFrame::decode(&[]), Err(SendFrameError::TooShort));
        assert_eq!(SendFrame::decode(&[1, 0, 0]), Err(SendFrameError::TooShort));
        assert_eq!(SendFrame::decode(&[2; 20]), Err(SendFrameError::UnknownKind(2)));
        let head = [1, 0, 0, 0, 0, 0, 0, 0, 7];
        let cases: [(Vec<u8>, &str); 4] = [
            (head.to_vec(), "length is missing"),
            ([&head[..], &[5, b'a']].concat(), "runs past"),
            ([&head[..], &[1, 0xff, 9]].concat(), "not UTF-8"),
            ([&head[..], &[1, b'a']].concat(), "envelope is missing"),
        ];
        for (bytes, what) in cases {
            let e = SendFrame::decode(&bytes).unwrap_err();
            assert_eq!(e.request(), Some(7), "{bytes:?}");
            assert!(e.to_string().contains(what), "{e}");
        }
    }

    #[test]
    fn an_overlong_tag_is_refused_not_dropped() {
        let tag = "t".repeat(256);
        let f = SendFrame { request: 1, settings_tag: Some(&tag), envelope: b"e" };
        assert_eq!(f.encode(), Err(SendFrameError::TagTooLong));
        let tag = "t".repeat(255);
        let f = SendFrame { request: 1, settings_tag: Some(&tag), envelope: b"e" };
        assert_eq!(SendFrame::decode(&f.encode().unwrap()), Ok(f));
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic; whatever decodes re-encodes to the same bytes.
        #[test]
        fn arbitrary_frames_decode_without_panic_and_canonically(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            if let Ok(f) = SendFrame::decode(&bytes) {
                proptest::prop_assert_eq!(f.encode().unwrap(), bytes);
            }
        }

        #[test]
        fn every_send_round_trips(request: u64, tag in "[a-z0-9]{0,80}", envelope in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..64)) {
            let f = SendFrame { request, settings_tag: (!tag.is_empty()).then_some(tag.as_str()), envelope: &envelope };
            let bytes = f.encode().unwrap();
            proptest::prop_assert_eq!(SendFrame::decode(&bytes), Ok(f));
        }
    }
}
