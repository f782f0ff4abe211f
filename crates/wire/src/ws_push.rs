//! A push as a binary frame: what a device that opened its socket with
//! `?pushes=binary` is sent instead of a JSON `message` frame. The envelope
//! travels as its own bytes (no base64, a quarter smaller, nothing to escape),
//! under the same fields a [`Delivery`] has.
//!
//! ```text
//! 0x02       kind: message
//! 16 bytes   message id
//! 16 bytes   conversation id
//! u64 (BE)   per-conversation sequence number
//! u64 (BE)   received at (ms since the Unix epoch)
//! rest       the delivered-form envelope
//! ```

use crate::{ConversationId, Delivery, MessageId, B64};

/// The first byte of a push frame.
pub const PUSH_KIND: u8 = 0x02;

/// Bytes before the envelope.
const HEAD: usize = 1 + 16 + 16 + 8 + 8;

/// Why a binary frame from the relay is not a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PushFrameError {
    /// Not a push frame.
    #[error("a binary frame from the relay is a push: 0x02, then 48 bytes of fields, then the envelope")]
    NotAPush,
    /// Cut short, or no envelope.
    #[error("the push frame is shorter than its fields and an envelope")]
    Truncated,
}

impl Delivery {
    /// The delivery as a binary push frame.
    pub fn to_push_frame(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD + self.envelope.0.len());
        out.push(PUSH_KIND);
        out.extend_from_slice(self.message_id.as_bytes());
        out.extend_from_slice(self.conversation_id.as_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.received_at.to_be_bytes());
        out.extend_from_slice(&self.envelope.0);
        out
    }

    /// Reads a binary push frame. Never panics; the envelope is left to its own decoder.
    pub fn from_push_frame(frame: &[u8]) -> Result<Self, PushFrameError> {
        let (&kind, rest) = frame.split_first().ok_or(PushFrameError::Truncated)?;
        if kind != PUSH_KIND {
            return Err(PushFrameError::NotAPush);
        }
        let (message_id, rest) = rest.split_first_chunk::<16>().ok_or(PushFrameError::Truncated)?;
        let (conversation_id, rest) = rest.split_first_chunk::<16>().ok_or(PushFrameError::Truncated)?;
        let (seq, rest) = rest.split_first_chunk::<8>().ok_or(PushFrameError::Truncated)?;
        let (received_at, envelope) = rest.split_first_chunk::<8>().ok_or(PushFrameError::Truncated)?;
        if envelope.is_empty() {
            return Err(PushFrameError::Truncated);
        }
        Ok(Self {
            message_id: MessageId::from_bytes(*message_id),
            conversation_id: ConversationId::from_bytes(*conversation_id),
            seq: u64::from_be_bytes(*seq),
            received_at: u64::from_be_bytes(*received_at),
            envelope: B64(envelope.to_vec()),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn sample() -> Delivery {
        Delivery {
            message_id: MessageId::from_bytes([1; 16]),
            conversation_id: ConversationId::from_bytes([2; 16]),
            seq: 7,
            received_at: 1_700_000_000_000,
            envelope: B64(vec![9; 40]),
        }
    }

    #[test]
    fn round_trips_and_is_smaller_than_json() {
        let d = sample();
        let frame = d.to_push_frame();
        assert_eq!(frame.len(), HEAD + 40);
        assert_eq!(Delivery::from_push_frame(&frame), Ok(d.clone()));
        let json = serde_json::to_string(&crate::WsFrame::Message(d)).unwrap();
        assert!(frame.len() < json.len());
    }

    #[test]
    fn short_or_foreign_frames_are_refused() {
        let frame = sample().to_push_frame();
        for cut in 0..=HEAD {
            assert_eq!(Delivery::from_push_frame(frame.get(..cut).unwrap()), Err(PushFrameError::Truncated), "{cut}");
        }
        let mut other = frame.clone();
        other[0] = crate::SEND_KIND;
        assert_eq!(Delivery::from_push_frame(&other), Err(PushFrameError::NotAPush));
    }

    proptest::proptest! {
        /// Arbitrary bytes never panic; whatever decodes re-encodes to the same bytes.
        #[test]
        fn arbitrary_frames_decode_without_panic_and_canonically(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..120)) {
            if let Ok(d) = Delivery::from_push_frame(&bytes) {
                proptest::prop_assert_eq!(d.to_push_frame(), bytes);
            }
        }
    }
}
