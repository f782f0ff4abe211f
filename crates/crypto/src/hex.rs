//! Lower-case hex, for `Debug` output of public values and for fingerprints.

/// Every id in every JSON frame goes through here: a digit at a time,
/// not a formatter call per byte (which cost the relay 2 % of a delivery).
pub(crate) fn encode(bytes: &[u8]) -> String {
    let digit = |n: u8| char::from(if n < 10 { b'0' + n } else { b'a' - 10 + n });
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(digit(b >> 4));
        s.push(digit(b & 0x0f));
    }
    s
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Parses exactly `N` bytes of hex; `None` on any other length or a non-hex digit.
pub(crate) fn decode_array<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let [hi, lo] = pair else { return None };
        *o = (nibble(*hi)? << 4) | nibble(*lo)?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip_and_rejects() {
        assert_eq!(super::encode(&[0, 0xff, 0x1a]), "00ff1a");
        let all: Vec<u8> = (0..=255).collect();
        let want: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(super::encode(&all), want);
        assert_eq!(super::decode_array::<256>(&want).map(Vec::from), Some(all));
        assert_eq!(super::decode_array::<3>("00FF1a"), Some([0, 0xff, 0x1a]));
        assert_eq!(super::decode_array::<3>("00ff1"), None);
        assert_eq!(super::decode_array::<1>("zz"), None);
    }
}
