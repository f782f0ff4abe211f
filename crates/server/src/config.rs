//! Server configuration: defaults that just work, overridable by a TOML file,
//! environment variables and flags (merged by the `strongroom` binary).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Everything the server needs to start.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where the SQLite database, blobs and bootstrap secret live.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; default: SQLite in `data_dir`.
    pub database_url: Option<String>,
    /// Blob storage URL (`s3://bucket/prefix`, `file:///path`); default: `data_dir/blobs`.
    pub blob_store: Option<String>,
    /// The URL clients use to reach this server, carried in invites.
    pub public_url: Option<String>,
    /// `nats://[user:password@]host:port` or `tls://…`: cross-node delivery
    /// and cache invalidation when several server processes share one
    /// database (cluster mode).
    pub nats_url: Option<NatsUrl>,
    /// A NATS `.creds` file (JWT and NKey seed) to authenticate with.
    pub nats_credentials: Option<PathBuf>,
    /// PEM file of the CA that signed the NATS server's certificate (turns TLS on).
    pub nats_tls_ca: Option<PathBuf>,
    /// PEM client certificate for NATS servers that verify clients (with `nats_tls_key`).
    pub nats_tls_cert: Option<PathBuf>,
    /// PEM private key of `nats_tls_cert`.
    pub nats_tls_key: Option<PathBuf>,
    /// Undelivered messages are dropped after this many days (never for retention devices).
    pub undelivered_horizon_days: u64,
    /// Files (blobs) are removed this many days after upload (sooner if the
    /// uploader asked), but never while a retention device may still need them.
    pub blob_days: u64,
    /// How often expiry runs, in seconds.
    pub expiry_interval_secs: u64,
    /// Session lifetime in days.
    pub session_days: u64,
    /// Alert (log line and `strongroom_retention_backlog_alert 1`) when more
    /// deliveries than this wait for retention devices.
    pub retention_backlog_alert: u64,
    /// Token a scraper sends (`Authorization: Bearer …`) to read `/metrics`
    /// from another host; without one, `/metrics` answers loopback clients only.
    pub metrics_token: Option<MetricsToken>,
    /// Reverse proxies (addresses or CIDR ranges) whose `X-Forwarded-For`
    /// names the client; from anyone else the header is ignored. Their
    /// connections are not capped per source (they carry many clients).
    pub trusted_proxies: TrustedProxies,
    /// Request limits.
    pub limits: Limits,
}

/// The `/metrics` token: never printed (`Debug` shows `***`).
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct MetricsToken(pub String);

impl std::fmt::Debug for MetricsToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Size and rate limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest envelope accepted, bytes.
    pub max_envelope_bytes: usize,
    /// Largest blob accepted, bytes.
    pub max_blob_bytes: u64,
    /// Bytes of files one account may have stored at once (0: no limit).
    pub max_blob_bytes_per_user: u64,
    /// Bytes of files one network may have stored at once (0: no limit).
    pub max_blob_bytes_per_network: u64,
    /// Largest JSON request body, bytes.
    pub max_json_bytes: usize,
    /// Login and registration attempts per client address (IPv6: per /64)
    /// per minute: bounds the password-hashing work one source can cause.
    pub auth_per_minute: u32,
    /// Envelopes per device per second (sustained; bursts of 10× allowed).
    pub sends_per_second: u32,
    /// Failed logins for one account from one source before that source
    /// must wait (a security group may set its own).
    pub lockout_threshold: u32,
    /// The longest wait a source's failed logins for one account earn,
    /// seconds: the wait doubles with each further failure up to this.
    pub lockout_secs: u64,
    /// Current-password checks (password change) per account per minute:
    /// a stolen session is not a password-guessing oracle.
    pub password_checks_per_minute: u32,
    /// One-time pre-keys one account may take of one device per hour; past
    /// that it gets the device's medium-term pre-key, so nobody empties
    /// another's pool.
    pub one_time_claims_per_hour: u32,
    /// Most envelope bytes one fetch (or one WebSocket read of the queue)
    /// loads and returns; at least one message is always returned.
    pub max_fetch_bytes: usize,
    /// Most messages a WebSocket is pushed and has not yet acknowledged
    /// (committed); more follow as acknowledgements commit (at least 1).
    pub push_window: usize,
    /// Request headers, and the next request on a kept-alive connection,
    /// must arrive within this many seconds.
    pub header_timeout_secs: u64,
    /// A request body may take this many seconds, plus one second per
    /// `body_min_bytes_per_sec` bytes it has delivered.
    pub body_timeout_secs: u64,
    /// The slowest pace a long request body may keep, bytes per second.
    pub body_min_bytes_per_sec: u64,
    /// A write to a client (a download, a push) that makes no progress for
    /// this many seconds ends the connection.
    pub write_timeout_secs: u64,
    /// Open connections per source address (IPv6: per /64).
    pub max_connections_per_ip: u32,
    /// Open connections in all; 0 means the open-file limit less 128.
    pub max_connections: u64,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("strongroom-data"),
            database_url: None,
            blob_store: None,
            public_url: None,
            nats_url: None,
            nats_credentials: None,
            nats_tls_ca: None,
            nats_tls_cert: None,
            nats_tls_key: None,
            undelivered_horizon_days: 30,
            blob_days: 30,
            expiry_interval_secs: 60,
            session_days: 30,
            retention_backlog_alert: 10_000,
            metrics_token: None,
            trusted_proxies: TrustedProxies::default(),
            limits: Limits::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_envelope_bytes: 2 * 1024 * 1024,
            max_blob_bytes: 4 * 1024 * 1024 * 1024,
            max_blob_bytes_per_user: 20 * 1024 * 1024 * 1024,
            max_blob_bytes_per_network: 1024 * 1024 * 1024 * 1024,
            max_json_bytes: 1024 * 1024,
            auth_per_minute: 30,
            sends_per_second: 200,
            lockout_threshold: 5,
            lockout_secs: 900,
            password_checks_per_minute: 5,
            one_time_claims_per_hour: 30,
            max_fetch_bytes: 4 * 1024 * 1024,
            push_window: 4096,
            header_timeout_secs: 20,
            body_timeout_secs: 30,
            body_min_bytes_per_sec: 1024,
            write_timeout_secs: 60,
            max_connections_per_ip: 128,
            max_connections: 0,
        }
    }
}

impl Config {
    /// The cluster link's settings, if a NATS URL is configured.
    pub fn nats(&self) -> Option<NatsConfig> {
        Some(NatsConfig {
            url: self.nats_url.clone()?,
            credentials: self.nats_credentials.clone(),
            tls_ca: self.nats_tls_ca.clone(),
            tls_cert: self.nats_tls_cert.clone(),
            tls_key: self.nats_tls_key.clone(),
        })
    }

    /// The database URL, defaulting to SQLite in the data directory.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.data_dir.join("strongroom.db").display()))
    }
}

/// The cluster link's settings.
#[derive(Debug, Clone)]
pub struct NatsConfig {
    /// The server.
    pub url: NatsUrl,
    /// A `.creds` file.
    pub credentials: Option<PathBuf>,
    /// CA certificate (PEM).
    pub tls_ca: Option<PathBuf>,
    /// Client certificate (PEM).
    pub tls_cert: Option<PathBuf>,
    /// Client key (PEM).
    pub tls_key: Option<PathBuf>,
}

/// A NATS URL, which may carry a password or token: `Debug` and
/// [`NatsUrl::host`] show only the scheme, host and port.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NatsUrl(String);

impl NatsUrl {
    /// Checks the scheme (`nats://` or `tls://`) and that a host is given.
    pub fn parse(url: &str) -> Result<Self, String> {
        let url = url.trim();
        let rest = url
            .strip_prefix("nats://")
            .or_else(|| url.strip_prefix("tls://"))
            .ok_or_else(|| "a NATS URL starts with nats:// or tls://".to_owned())?;
        let host = rest.rsplit('@').next().unwrap_or_default().trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err("give nats://[USER:PASSWORD@]HOST[:PORT] or tls://…".into());
        }
        Ok(Self(url.to_owned()))
    }

    /// The full URL, credentials included: for the NATS client only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The credentials in the URL: `user:password@` or a token (`token@`).
    pub fn credentials(&self) -> Option<(String, Option<String>)> {
        let rest = self.0.split_once("://")?.1;
        let (userinfo, _) = rest.rsplit_once('@')?;
        Some(match userinfo.split_once(':') {
            Some((user, password)) => (user.to_owned(), Some(password.to_owned())),
            None => (userinfo.to_owned(), None),
        })
    }

    /// `scheme://host:port`, without credentials (for logs and errors).
    pub fn host(&self) -> String {
        let (scheme, rest) = self.0.split_once("://").unwrap_or(("nats", &self.0));
        format!("{scheme}://{}", rest.rsplit('@').next().unwrap_or_default())
    }
}

impl std::fmt::Debug for NatsUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.host())
    }
}

impl TryFrom<String> for NatsUrl {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Self::parse(&s)
    }
}

impl From<NatsUrl> for String {
    fn from(u: NatsUrl) -> Self {
        u.0
    }
}

/// Address ranges of trusted reverse proxies (`"10.0.0.0/8"`, `"::1"`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct TrustedProxies(Vec<(IpAddr, u8)>);

impl TrustedProxies {
    /// Parses addresses and CIDR ranges; says which entry is wrong.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut out = Vec::with_capacity(entries.len());
        for entry in entries {
            let bad = || format!("trusted_proxies: {entry:?} is not an address or a CIDR range like 10.0.0.0/8");
            let (addr, len) = match entry.trim().split_once('/') {
                Some((a, l)) => (a.parse::<IpAddr>().map_err(|_| bad())?, Some(l.parse::<u8>().map_err(|_| bad())?)),
                None => (entry.trim().parse::<IpAddr>().map_err(|_| bad())?, None),
            };
            let max = if addr.is_ipv4() { 32 } else { 128 };
            let len = len.unwrap_or(max);
            if len > max {
                return Err(bad());
            }
            out.push((addr, len));
        }
        Ok(Self(out))
    }

    /// Whether `ip` is in one of the ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|(net, len)| match (canonical(*net), ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                prefix_eq(u128::from(u32::from(n)) << 96, u128::from(u32::from(a)) << 96, *len)
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(u128::from(n), u128::from(a), *len),
            _ => false,
        })
    }

    /// The client a request comes from: `peer`, unless `peer` is a trusted
    /// proxy; then the rightmost `X-Forwarded-For` entry that is not itself a
    /// trusted proxy (entries to its left are the client's own claims).
    pub fn client<'a>(&self, peer: IpAddr, forwarded_for: impl DoubleEndedIterator<Item = &'a str>) -> IpAddr {
        if !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        for value in forwarded_for.rev() {
            for hop in value.rsplit(',') {
                match parse_hop(hop.trim()) {
                    Some(ip) if self.contains(ip) => client = ip,
                    Some(ip) => return canonical(ip),
                    None => return client,
                }
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, `1.2.3.4:port` or `[v6]:port`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sock) = hop.parse::<std::net::SocketAddr>() {
        return Some(sock.ip());
    }
    hop.strip_prefix('[').and_then(|h| h.strip_suffix(']')).and_then(|h| h.parse().ok())
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix_eq(a: u128, b: u128, len: u8) -> bool {
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
    a & mask == b & mask
}

impl TryFrom<Vec<String>> for TrustedProxies {
    type Error = String;
    fn try_from(v: Vec<String>) -> Result<Self, String> {
        Self::parse(&v)
    }
}

impl From<TrustedProxies> for Vec<String> {
    fn from(t: TrustedProxies) -> Self {
        t.0.iter().map(|(a, l)| format!("{a}/{l}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::V4([0, 0, 0, 0].into()))
    }

    #[test]
    fn forwarded_for_counts_only_from_trusted_proxies() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "2001:db8::/32".into()]).unwrap_or_default();
        // Not a proxy: the header is the client's own claim.
        assert_eq!(t.client(ip("192.0.2.9"), ["198.51.100.1"].into_iter()), ip("192.0.2.9"));
        // A proxy: the rightmost untrusted hop, not a spoofed one to its left.
        assert_eq!(t.client(ip("10.1.1.1"), ["1.1.1.1, 203.0.113.5"].into_iter()), ip("203.0.113.5"));
        assert_eq!(t.client(ip("10.1.1.1"), ["203.0.113.5, 10.2.2.2"].into_iter()), ip("203.0.113.5"));
        assert_eq!(t.client(ip("10.1.1.1"), ["1.1.1.1", "203.0.113.5"].into_iter()), ip("203.0.113.5"));
        // No header, or garbage after trusted hops: the last trusted hop.
        assert_eq!(t.client(ip("10.1.1.1"), std::iter::empty()), ip("10.1.1.1"));
        assert_eq!(t.client(ip("10.1.1.1"), ["bogus, 10.2.2.2"].into_iter()), ip("10.2.2.2"));
        assert!(t.contains(ip("2001:db8:5::1")) && !t.contains(ip("2001:db9::1")));
        // Ports and brackets some proxies add.
        assert_eq!(t.client(ip("10.1.1.1"), ["203.0.113.5:4711"].into_iter()), ip("203.0.113.5"));
        assert_eq!(t.client(ip("10.1.1.1"), ["[2001:db9::7]:443"].into_iter()), ip("2001:db9::7"));
        assert_eq!(t.client(ip("10.1.1.1"), ["[2001:db9::8]"].into_iter()), ip("2001:db9::8"));
        assert!(t.contains(ip("::ffff:10.9.9.9")));
    }

    #[test]
    fn nats_urls_keep_their_secrets_out_of_debug() {
        let u =
            NatsUrl::parse("nats://strongroom:s3cret@nats.internal:4222").unwrap_or_else(|_| NatsUrl(String::new()));
        assert_eq!(u.host(), "nats://nats.internal:4222");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(u.expose(), "nats://strongroom:s3cret@nats.internal:4222");
        assert_eq!(u.credentials(), Some(("strongroom".into(), Some("s3cret".into()))));
        let t = NatsUrl::parse("tls://tok3n@nats.internal").unwrap_or_else(|_| NatsUrl(String::new()));
        assert_eq!(t.credentials(), Some(("tok3n".into(), None)));
        assert_eq!(t.host(), "tls://nats.internal");
        assert!(NatsUrl::parse("tls://nats.internal").is_ok_and(|u| u.credentials().is_none()));
        for bad in ["http://x", "nats://", "nats://user@", "x"] {
            assert!(NatsUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bad_ranges_are_refused_with_the_entry() {
        for bad in ["10.0.0.0/33", "nonsense", "::/129", "10.0.0.0/x"] {
            let e = TrustedProxies::parse(&[bad.to_owned()]).err().unwrap_or_default();
            assert!(e.contains(bad), "{e}");
        }
        let round: Vec<String> = TrustedProxies::parse(&["10.0.0.0/8".into()]).unwrap_or_default().into();
        assert_eq!(round, vec!["10.0.0.0/8".to_owned()]);
    }
}
