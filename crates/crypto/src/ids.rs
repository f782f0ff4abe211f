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
