//! 128-bit identifiers. Random, opaque, compared by value, printed as hex.

use rand_core::{CryptoRng, RngCore};

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub(crate) [u8; 16]);

        impl $name {
            /// Wraps 16 bytes.
            pub const fn from_bytes(bytes: [u8; 16]) -> Self {
                Self(bytes)
            }

            /// A fresh random id.
            pub fn random(rng: &mut (impl RngCore + CryptoRng)) -> Self {
                let mut b = [0u8; 16];
                rng.fill_bytes(&mut b);
                Self(b)
            }

            /// The 16 id bytes.
            pub const fn as_bytes(&self) -> &[u8; 16] {
                &self.0
            }

            /// Parses 32 hex digits.
            pub fn parse_hex(s: &str) -> Option<Self> {
                crate::hex::decode_array(s).map(Self)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&crate::hex::encode(&self.0))
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        /// As 32 lowercase hex digits (the form the relay's JSON uses).
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&crate::hex::encode(&self.0))
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                Self::parse_hex(&text).ok_or_else(|| {
                    serde::de::Error::custom(concat!("a ", stringify!($name), " is 32 hex digits"))
                })
            }
        }
    };
}

id_type!(
    /// A network (tenant).
    NetworkId
);
id_type!(
    /// A user account within a network.
    UserId
);
id_type!(
    /// One device of a user, or a retention device.
    DeviceId
);
id_type!(
    /// A 1:1 chat, group or room.
    ConversationId
);
id_type!(
    /// One message; chosen by the sender, unique, and the replay-guard key.
    MessageId
);
id_type!(
    /// An encrypted attachment stored on the relay.
    BlobId
);

impl MessageId {
    /// A fresh id that sorts by when it was made: `now_ms` (the header's
    /// timestamp, which travels in the clear anyway) in the first 6 bytes,
    /// big-endian, then 80 random bits. The relay keeps every id it accepted
    /// in a unique index for its replay guard; random ids put each new one on
    /// a random page of it, so a commit of a hundred messages rewrote a
    /// hundred pages, where ids in time order append to the last few. The
    /// relay relies on neither order nor time: an id is still any 16 bytes.
    pub fn ordered(rng: &mut (impl RngCore + CryptoRng), now_ms: u64) -> Self {
        let mut b = [0u8; 16];
        rng.fill_bytes(&mut b);
        // The low 6 bytes of the time (the top 2 are dropped: good until the year 10889).
        for (slot, byte) in b.iter_mut().zip(now_ms.to_be_bytes().into_iter().skip(2)) {
            *slot = byte;
        }
        Self(b)
    }
}

impl UserId {
    /// The reserved user id retention devices are addressed under. Retention
    /// devices belong to the network, not to a user; their "identity key" is
    /// the network key that certified them.
    pub const RETENTION: UserId = UserId([0xff; 16]);
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ordered_ids_lead_with_the_time_and_keep_80_random_bits() {
        let mut rng = rand_core::OsRng;
        let t = 0x0123_4567_89ab_u64;
        let a = MessageId::ordered(&mut rng, t);
        let b = MessageId::ordered(&mut rng, t);
        assert_eq!(a.as_bytes()[..6], [0x01, 0x23, 0x45, 0x67, 0x89, 0xab]);
        assert_ne!(a, b, "two ids of the same millisecond differ in their random part");
        assert_ne!(a.as_bytes()[6..], b.as_bytes()[6..]);
        // Later ids sort after earlier ones, whatever their random part.
        for step in [1, 1000, 86_400_000] {
            assert!(MessageId::ordered(&mut rng, t + step) > a);
        }
        // Only the low 48 bits of the time are kept.
        let wrapped = MessageId::ordered(&mut rng, (1 << 48) + 5);
        assert_eq!(wrapped.as_bytes()[..6], [0, 0, 0, 0, 0, 5]);
    }

    #[test]
    fn ids_travel_as_hex_and_anything_else_is_refused() {
        let id = MessageId::from_bytes([0xab; 16]);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", "ab".repeat(16)));
        assert_eq!(serde_json::from_str::<MessageId>(&json).unwrap(), id);
        for bad in
            ["\"ab\"", "\"\"", "12", "null", &format!("\"{}\"", "zz".repeat(16)), &format!("\"{}\"", "ab".repeat(17))]
        {
            assert!(serde_json::from_str::<MessageId>(bad).is_err(), "{bad}");
        }
    }
}
