//! A device's address on the wire: `user:device`, each 32 hex digits.

use std::fmt;

use strongroom_crypto::ids::{DeviceId, UserId};

/// One device of one user (or of the retention service, under
/// [`UserId::RETENTION`]), as pre-key claims and recipient refusals name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DeviceAddress {
    /// The user.
    pub user: UserId,
    /// The device.
    pub device: DeviceId,
}

impl DeviceAddress {
    /// Parses `user:device`.
    pub fn parse(s: &str) -> Option<Self> {
        let (user, device) = s.split_once(':')?;
        Some(Self { user: UserId::parse_hex(user)?, device: DeviceId::parse_hex(device)? })
    }
}

impl fmt::Display for DeviceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.user, self.device)
    }
}

impl serde::Serialize for DeviceAddress {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for DeviceAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::parse(&text)
            .ok_or_else(|| serde::de::Error::custom("a device address is user:device, each 32 hex digits"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn addresses_travel_as_user_colon_device_and_nothing_else_reads() {
        let a = DeviceAddress { user: UserId::from_bytes([1; 16]), device: DeviceId::from_bytes([2; 16]) };
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, format!("\"{}:{}\"", "01".repeat(16), "02".repeat(16)));
        assert_eq!(serde_json::from_str::<DeviceAddress>(&json).unwrap(), a);
        let good = "01".repeat(16);
        for bad in [
            String::new(),
            good.clone(),
            format!("{good}:"),
            format!(":{good}"),
            format!("{good}:{good}:{good}"),
            format!("{good}:{}", "zz".repeat(16)),
            format!("{good};{good}"),
            format!("{}:{good}", "01".repeat(17)),
        ] {
            assert!(serde_json::from_str::<DeviceAddress>(&format!("\"{bad}\"")).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<DeviceAddress>("42").is_err());
    }
}
