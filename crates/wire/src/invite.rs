//! Invite codes: `sr1-` followed by unpadded base64url of
//! `u8 version = 1 | 16 network id | 32 network key fingerprint | 32 secret | server URL (UTF-8)`.
//! The fingerprint lets the new client pin the network key even though it
//! fetches the key from the server; the server stores only a hash of the secret.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// A parsed invite.
#[derive(Clone, PartialEq, Eq)]
pub struct Invite {
    /// The server's URL.
    pub server_url: String,
    /// The network.
    pub network_id: [u8; 16],
    /// SHA-256 fingerprint of the network key (see PROTOCOL.md section 2).
    pub network_fingerprint: [u8; 32],
    /// The one-time secret.
    pub secret: [u8; 32],
}

impl std::fmt::Debug for Invite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invite").field("server_url", &self.server_url).finish_non_exhaustive()
    }
}

const PREFIX: &str = "sr1-";
const MAX_URL: usize = 2048;

impl Invite {
    /// The code to hand out.
    pub fn encode(&self) -> String {
        let mut raw = Vec::with_capacity(81 + self.server_url.len());
        raw.push(1);
        raw.extend_from_slice(&self.network_id);
        raw.extend_from_slice(&self.network_fingerprint);
        raw.extend_from_slice(&self.secret);
        raw.extend_from_slice(self.server_url.as_bytes());
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(raw))
    }

    /// Parses a code; the error says what is wrong with it.
    pub fn parse(code: &str) -> Result<Self, &'static str> {
        let body = code.trim().strip_prefix(PREFIX).ok_or("an invite code starts with \"sr1-\"")?;
        if body.len() > 4 * (81 + MAX_URL) / 3 + 4 {
            return Err("the invite code is too long");
        }
        let raw = URL_SAFE_NO_PAD.decode(body).map_err(|_| "the invite code is damaged (not base64url)")?;
        let (fixed, url) = raw.split_at_checked(81).ok_or("the invite code is truncated")?;
        let [version, rest @ ..] = fixed else { return Err("the invite code is truncated") };
        if *version != 1 {
            return Err("unknown invite version; upgrade Strongroom");
        }
        let (network_id, rest) = rest.split_at(16);
        let (fingerprint, secret) = rest.split_at(32);
        let server_url = std::str::from_utf8(url).map_err(|_| "the invite's server URL is not UTF-8")?.to_owned();
        if server_url.is_empty() || url.len() > MAX_URL {
            return Err("the invite's server URL is missing or too long");
        }
        Ok(Self {
            server_url,
            network_id: network_id.try_into().map_err(|_| "the invite code is truncated")?,
            network_fingerprint: fingerprint.try_into().map_err(|_| "the invite code is truncated")?,
            secret: secret.try_into().map_err(|_| "the invite code is truncated")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejects() {
        let i = Invite {
            server_url: "http://127.0.0.1:8080".into(),
            network_id: [1; 16],
            network_fingerprint: [2; 32],
            secret: [3; 32],
        };
        assert_eq!(Invite::parse(&i.encode()), Ok(i.clone()));
        assert!(Invite::parse("nope").is_err());
        assert!(Invite::parse("sr1-!!!").is_err());
        assert!(Invite::parse("sr1-AQID").is_err());
        let code = i.encode();
        assert!(
            Invite::parse(&code[..code.len() - 30]).is_err()
                || Invite::parse(&code[..code.len() - 30]).is_ok_and(|p| p != i)
        );
        assert!(!format!("{i:?}").contains("3, 3"));
    }
}
