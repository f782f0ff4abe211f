//! Serde for the wire's named enums (conversation kind, role, receipt
//! policy, federation): each travels by its name, and a name this release
//! does not know reads as `Unknown` (a newer relay's value must not make a
//! whole answer unreadable). The type needs `name()` and `parse()`.

macro_rules! by_name {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                Ok(<$t>::parse(&s).unwrap_or(<$t>::Unknown))
            }
        }
    };
}
