//! What a message says: the typed payload sealed inside an envelope.
//!
//! Encoding: `content version u8 (1) | type u16 | body length u32 | body`.
//! A type this software does not know is returned as [`Content::Unknown`]
//! with its bytes, so a newer peer's message is surfaced ("update to see this
//! message"), never silently dropped.

mod control;
mod padding;

pub use control::Control;
pub(crate) use padding::{pad, unpad, MAX_PADDED_LEN};

use thiserror::Error;

use crate::codec::{DecodeError, Reader, Writer};
use crate::ids::{BlobId, ConversationId, MessageId, UserId};
use crate::keys::SecretBytes;

/// Content format version this crate writes and reads.
pub const CONTENT_VERSION: u8 = 1;
/// Longest text body, in bytes of UTF-8.
pub const MAX_TEXT: usize = 64 * 1024;
/// Longest reaction (an emoji sequence), in bytes.
pub const MAX_REACTION: usize = 64;
/// Most message ids in one receipt.
pub const MAX_RECEIPT_IDS: usize = 1024;
/// Longest attachment media type.
pub const MAX_MEDIA_TYPE: usize = 127;
/// Longest attachment file name.
pub const MAX_FILE_NAME: usize = 255;

/// A message payload.
#[derive(Clone, PartialEq)]
#[non_exhaustive]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Text answering an earlier message.
    Reply {
        /// The message answered.
        in_reply_to: MessageId,
        /// The answer.
        text: String,
    },
    /// New text for an earlier message of the same sender.
    Edit {
        /// The message edited.
        target: MessageId,
        /// Its new text.
        text: String,
    },
    /// Delete an earlier message for everyone.
    Recall {
        /// The message recalled.
        target: MessageId,
    },
    /// Add or remove a reaction.
    Reaction {
        /// The message reacted to.
        target: MessageId,
        /// The emoji.
        emoji: String,
        /// True to take the reaction back.
        remove: bool,
    },
    /// Delivery or read receipt for some messages.
    Receipt {
        /// Delivered or read.
        kind: ReceiptKind,
        /// When (ms since the Unix epoch).
        at: u64,
        /// Which messages.
        message_ids: Vec<MessageId>,
    },
    /// An encrypted attachment.
    File(FileRef),
    /// A position, static or live until a time.
    Location(Location),
    /// Membership and room control.
    Control(Control),
    /// A text, file or location forwarded from another conversation, with
    /// where it came from (who sent it, where and when): its provenance
    /// stays on the record.
    Forwarded {
        /// Where it came from.
        origin: ForwardOrigin,
        /// What was forwarded: text, a file or a location (never itself forwarded).
        content: Box<Content>,
    },
    /// A type this version does not know, kept as it came.
    Unknown {
        /// The wire type number.
        type_id: u16,
        /// The raw body.
        body: Vec<u8>,
    },
}

/// Where a forwarded message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardOrigin {
    /// The conversation it was read in.
    pub conversation: ConversationId,
    /// Its message id there.
    pub message: MessageId,
    /// Who sent it there.
    pub sender: UserId,
    /// When they sent it (ms).
    pub sent_at: u64,
}

impl ForwardOrigin {
    /// The origin of a forward made where data retention is off: every
    /// field zero, so the message is marked forwarded but says nothing of
    /// where it came from.
    pub const WITHHELD: ForwardOrigin = ForwardOrigin {
        conversation: ConversationId::from_bytes([0; 16]),
        message: MessageId::from_bytes([0; 16]),
        sender: UserId::from_bytes([0; 16]),
        sent_at: 0,
    };

    /// Whether this is [`ForwardOrigin::WITHHELD`].
    pub fn is_withheld(&self) -> bool {
        *self == Self::WITHHELD
    }
}

/// Which receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    /// Stored on the device.
    Delivered,
    /// Shown to the user.
    Read,
}

/// A pointer to an encrypted attachment plus the key to read it.
#[derive(Clone, PartialEq)]
pub struct FileRef {
    /// Where the ciphertext is stored.
    pub blob_id: BlobId,
    /// The attachment stream key.
    pub file_key: SecretBytes<32>,
    /// SHA-256 of the whole encrypted blob, checked on download.
    pub ciphertext_sha256: [u8; 32],
    /// Plaintext size in bytes.
    pub size: u64,
    /// Media type, e.g. `application/pdf`.
    pub media_type: String,
    /// Original file name.
    pub name: String,
}

/// A geographic position (WGS 84).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Location {
    /// Degrees, -90..=90.
    pub latitude: f64,
    /// Degrees, -180..=180.
    pub longitude: f64,
    /// Radius of uncertainty, metres (finite, >= 0).
    pub accuracy_m: f32,
    /// For live location: updates stop at this time (ms); `None` for static.
    pub live_until: Option<u64>,
}

/// Why a content payload could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ContentError {
    /// Malformed bytes.
    #[error("malformed message content: {0}")]
    Decode(#[from] DecodeError),
    /// A content version this software does not read.
    #[error("message content version {0} is not supported; upgrade Strongroom")]
    UnsupportedVersion(u8),
    /// A field out of range.
    #[error("invalid message content: {0}")]
    Invalid(&'static str),
    /// Encoded content larger than an envelope can carry.
    #[error("message content is {len} bytes; the limit is {max} (send large data as a file)")]
    TooLarge {
        /// Encoded size.
        len: usize,
        /// Limit.
        max: usize,
    },
}

mod type_id {
    pub const TEXT: u16 = 1;
    pub const REPLY: u16 = 2;
    pub const EDIT: u16 = 3;
    pub const RECALL: u16 = 4;
    pub const REACTION: u16 = 5;
    pub const RECEIPT: u16 = 6;
    pub const FILE: u16 = 7;
    pub const LOCATION: u16 = 8;
    pub const CONTROL: u16 = 9;
    pub const FORWARDED: u16 = 10;
}

impl Content {
    /// The wire type number.
    pub fn type_id(&self) -> u16 {
        match self {
            Content::Text(_) => type_id::TEXT,
            Content::Reply { .. } => type_id::REPLY,
            Content::Edit { .. } => type_id::EDIT,
            Content::Recall { .. } => type_id::RECALL,
            Content::Reaction { .. } => type_id::REACTION,
            Content::Receipt { .. } => type_id::RECEIPT,
            Content::File(_) => type_id::FILE,
            Content::Location(_) => type_id::LOCATION,
            Content::Control(_) => type_id::CONTROL,
            Content::Forwarded { .. } => type_id::FORWARDED,
            Content::Unknown { type_id, .. } => *type_id,
        }
    }

    /// Encodes the content, refusing out-of-range fields.
    pub fn encode(&self) -> Result<Vec<u8>, ContentError> {
        self.validate()?;
        let mut body = Writer::default();
        match self {
            Content::Text(text) => {
                body.bytes32(text.as_bytes());
            }
            Content::Reply { in_reply_to: m, text } | Content::Edit { target: m, text } => {
                body.raw(&m.0).bytes32(text.as_bytes());
            }
            Content::Recall { target } => {
                body.raw(&target.0);
            }
            Content::Reaction { target, emoji, remove } => {
                body.raw(&target.0).u8(u8::from(*remove)).bytes16(emoji.as_bytes());
            }
            Content::Receipt { kind, at, message_ids } => {
                body.u8(match kind {
                    ReceiptKind::Delivered => 1,
                    ReceiptKind::Read => 2,
                })
                .u64(*at)
                .u16(u16::try_from(message_ids.len()).unwrap_or(u16::MAX));
                for id in message_ids {
                    body.raw(&id.0);
                }
            }
            Content::File(f) => {
                body.raw(&f.blob_id.0)
                    .raw(f.file_key.expose())
                    .raw(&f.ciphertext_sha256)
                    .u64(f.size)
                    .bytes16(f.media_type.as_bytes())
                    .bytes16(f.name.as_bytes());
            }
            Content::Location(l) => {
                body.u64(l.latitude.to_bits())
                    .u64(l.longitude.to_bits())
                    .u32(l.accuracy_m.to_bits())
                    .u64(l.live_until.unwrap_or(0));
            }
            Content::Control(c) => c.encode(&mut body),
            Content::Forwarded { origin, content } => {
                body.raw(&origin.conversation.0)
                    .raw(&origin.message.0)
                    .raw(&origin.sender.0)
                    .u64(origin.sent_at)
                    .bytes32(&content.encode()?);
            }
            Content::Unknown { body: raw, .. } => {
                body.raw(raw);
            }
        }
        let body = body.finish();
        let mut w = Writer::with_capacity(7 + body.len());
        w.u8(CONTENT_VERSION).u16(self.type_id()).bytes32(&body);
        let out = w.finish();
        let max = MAX_PADDED_LEN - padding::LEN_PREFIX;
        if out.len() > max {
            return Err(ContentError::TooLarge { len: out.len(), max });
        }
        Ok(out)
    }

    /// Decodes content; unknown types become [`Content::Unknown`].
    pub fn decode(bytes: &[u8]) -> Result<Self, ContentError> {
        let mut r = Reader::new(bytes);
        let version = r.u8("content version")?;
        if version != CONTENT_VERSION {
            return Err(ContentError::UnsupportedVersion(version));
        }
        let type_id = r.u16("content type")?;
        let body = r.bytes32("content body", MAX_PADDED_LEN)?;
        r.finish("content")?;
        let mut b = Reader::new(body);
        let content = match type_id {
            type_id::TEXT => Content::Text(b.str32("text", MAX_TEXT)?.to_owned()),
            type_id::REPLY => Content::Reply {
                in_reply_to: MessageId(b.array("reply target")?),
                text: b.str32("reply text", MAX_TEXT)?.to_owned(),
            },
            type_id::EDIT => Content::Edit {
                target: MessageId(b.array("edit target")?),
                text: b.str32("edit text", MAX_TEXT)?.to_owned(),
            },
            type_id::RECALL => Content::Recall { target: MessageId(b.array("recall target")?) },
            type_id::REACTION => Content::Reaction {
                target: MessageId(b.array("reaction target")?),
                remove: b.bool("reaction remove flag")?,
                emoji: b.str16("reaction", MAX_REACTION)?.to_owned(),
            },
            type_id::RECEIPT => {
                let kind = match b.u8("receipt kind")? {
                    1 => ReceiptKind::Delivered,
                    2 => ReceiptKind::Read,
                    _ => return Err(ContentError::Invalid("receipt kind must be 1 (delivered) or 2 (read)")),
                };
                let at = b.u64("receipt time")?;
                let n = b.count16("receipt id count", MAX_RECEIPT_IDS, 16)?;
                let mut message_ids = Vec::with_capacity(n);
                for _ in 0..n {
                    message_ids.push(MessageId(b.array("receipt message id")?));
                }
                Content::Receipt { kind, at, message_ids }
            }
            type_id::FILE => Content::File(FileRef {
                blob_id: BlobId(b.array("blob id")?),
                file_key: SecretBytes::new(b.array("file key")?),
                ciphertext_sha256: b.array("file hash")?,
                size: b.u64("file size")?,
                media_type: b.str16("media type", MAX_MEDIA_TYPE)?.to_owned(),
                name: b.str16("file name", MAX_FILE_NAME)?.to_owned(),
            }),
            type_id::LOCATION => {
                let latitude = f64::from_bits(b.u64("latitude")?);
                let longitude = f64::from_bits(b.u64("longitude")?);
                let accuracy_m = f32::from_bits(b.u32("accuracy")?);
                let live_until = match b.u64("live until")? {
                    0 => None,
                    t => Some(t),
                };
                Content::Location(Location { latitude, longitude, accuracy_m, live_until })
            }
            type_id::CONTROL => Content::Control(Control::decode(&mut b)?),
            type_id::FORWARDED => {
                let origin = ForwardOrigin {
                    conversation: ConversationId(b.array("forwarded from conversation")?),
                    message: MessageId(b.array("forwarded message id")?),
                    sender: UserId(b.array("forwarded from sender")?),
                    sent_at: b.u64("forwarded message time")?,
                };
                // Checked by `validate`: text, a file or a location. A forward
                // inside a forward is refused before it is decoded, so no
                // input nests the decoder deeper than this.
                let inner_bytes = b.bytes32("forwarded content", MAX_PADDED_LEN)?;
                if inner_bytes.get(1..3) == Some(&type_id::FORWARDED.to_be_bytes()[..]) {
                    return Err(ContentError::Invalid("only a text, a file or a location can be forwarded"));
                }
                let inner = Content::decode(inner_bytes)?;
                Content::Forwarded { origin, content: Box::new(inner) }
            }
            other => Content::Unknown { type_id: other, body: b.rest().to_vec() },
        };
        b.finish("content body")?;
        content.validate()?;
        Ok(content)
    }

    /// Checks every field is in range (what [`Content::decode`] enforces).
    pub fn validate(&self) -> Result<(), ContentError> {
        let text_ok = |t: &str| t.len() <= MAX_TEXT;
        let ok = match self {
            Content::Text(t) | Content::Reply { text: t, .. } | Content::Edit { text: t, .. } => text_ok(t),
            Content::Reaction { emoji, .. } => !emoji.is_empty() && emoji.len() <= MAX_REACTION,
            Content::Receipt { message_ids, .. } => message_ids.len() <= MAX_RECEIPT_IDS,
            Content::File(f) => f.media_type.len() <= MAX_MEDIA_TYPE && f.name.len() <= MAX_FILE_NAME,
            Content::Location(l) => {
                return if !(l.latitude.is_finite() && (-90.0..=90.0).contains(&l.latitude)) {
                    Err(ContentError::Invalid("latitude must be between -90 and 90"))
                } else if !(l.longitude.is_finite() && (-180.0..=180.0).contains(&l.longitude)) {
                    Err(ContentError::Invalid("longitude must be between -180 and 180"))
                } else if !(l.accuracy_m.is_finite() && l.accuracy_m >= 0.0) {
                    Err(ContentError::Invalid("accuracy must be a finite number of metres >= 0"))
                } else if l.live_until == Some(0) {
                    Err(ContentError::Invalid("live_until of 0 is reserved for static locations"))
                } else {
                    Ok(())
                };
            }
            Content::Control(c) => return c.validate(),
            Content::Forwarded { content, .. } => {
                return match content.as_ref() {
                    Content::Text(_) | Content::File(_) | Content::Location(_) => content.validate(),
                    _ => Err(ContentError::Invalid("only a text, a file or a location can be forwarded")),
                };
            }
            Content::Recall { .. } | Content::Unknown { .. } => true,
        };
        if ok {
            Ok(())
        } else {
            Err(ContentError::Invalid("a field is empty or over its length limit"))
        }
    }
}

/// Shows the kind of content and sizes only: message text and file keys never
/// reach logs through `Debug`.
impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Content::Text(t) => write!(f, "Text({} bytes)", t.len()),
            Content::Reply { in_reply_to, text } => write!(f, "Reply({in_reply_to:?}, {} bytes)", text.len()),
            Content::Edit { target, text } => write!(f, "Edit({target:?}, {} bytes)", text.len()),
            Content::Recall { target } => write!(f, "Recall({target:?})"),
            Content::Reaction { target, remove, .. } => write!(f, "Reaction({target:?}, remove: {remove})"),
            Content::Receipt { kind, message_ids, .. } => write!(f, "Receipt({kind:?}, {} ids)", message_ids.len()),
            Content::File(file) => write!(f, "File({:?}, {} bytes)", file.blob_id, file.size),
            Content::Location(_) => write!(f, "Location(***)"),
            Content::Control(c) => write!(f, "Control({c:?})"),
            Content::Forwarded { origin, content } => write!(f, "Forwarded({:?}, {content:?})", origin.message),
            Content::Unknown { type_id, body } => write!(f, "Unknown(type {type_id}, {} bytes)", body.len()),
        }
    }
}

impl std::fmt::Debug for FileRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileRef").field("blob_id", &self.blob_id).field("size", &self.size).finish_non_exhaustive()
    }
}

pub(crate) fn user_list(b: &mut Reader<'_>, field: &'static str, max: usize) -> Result<Vec<UserId>, DecodeError> {
    let n = b.count16(field, max, 16)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(UserId(b.array(field)?));
    }
    Ok(v)
}
