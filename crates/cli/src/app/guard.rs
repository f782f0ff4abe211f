//! Who may use the local app server, and how it answers: the `Host` it
//! serves under (DNS rebinding), the `Origin` of a WebSocket, the UI's
//! session (a per-launch secret, then an `HttpOnly; SameSite=Strict`
//! cookie, with a CSRF token on writes), bearer tokens with scopes (stored
//! hashed, compared in constant time), and the headers every answer carries.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// Scopes a bearer token may hold.
pub const SCOPES: [&str; 2] = ["read", "send"];

/// The session cookie's name, per port: browsers keep cookies per host, not
/// per port, so two apps (two profiles) on 127.0.0.1 must not share one.
pub fn cookie_name(port: u16) -> String {
    format!("sr_app_{port}")
}

pub fn random_hex(n: usize) -> String {
    let mut b = vec![0u8; n];
    OsRng.fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn sha256_hex(s: &str) -> String {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes());
    d.as_ref().iter().map(|x| format!("{x:02x}")).collect()
}

fn ct_eq(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The `Host` header names this server (127.0.0.1 or localhost, our port).
pub fn host_ok(headers: &HeaderMap, port: u16) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
    host == format!("127.0.0.1:{port}") || host == format!("localhost:{port}")
}

/// A WebSocket's `Origin`, when a browser sends one, is this server's.
pub fn origin_ok(headers: &HeaderMap, port: u16) -> bool {
    match headers.get(header::ORIGIN).and_then(|h| h.to_str().ok()) {
        None => true,
        Some(o) => o == format!("http://127.0.0.1:{port}") || o == format!("http://localhost:{port}"),
    }
}

/// The headers every answer carries: nothing cached, nothing framed, no
/// script but our own.
pub fn harden(headers: &mut HeaderMap) {
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(headers, header::CACHE_CONTROL, "no-store");
    set(
        headers,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    );
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
}

/// A signed-in UI session.
#[derive(Clone)]
pub struct Session {
    pub csrf: String,
}

/// What the caller may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// The UI (all scopes); writes need its CSRF token.
    Ui { csrf: String },
    /// A bearer token and its scopes.
    Token { scopes: Vec<String> },
}

impl Caller {
    pub fn may(&self, scope: &str) -> bool {
        match self {
            Caller::Ui { .. } => true,
            Caller::Token { scopes } => scopes.iter().any(|s| s == scope),
        }
    }
}

/// One stored bearer token: its name, scopes and SHA-256.
#[derive(Serialize, Deserialize, Clone)]
pub struct StoredToken {
    pub name: String,
    pub scopes: Vec<String>,
    pub sha256: String,
    pub created_at: u64,
}

/// `app-tokens.json` in the profile: hashes only.
pub fn tokens_path(profile: &Path) -> PathBuf {
    profile.join("app-tokens.json")
}

pub fn load_tokens(profile: &Path) -> Vec<StoredToken> {
    std::fs::read(tokens_path(profile)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
}

/// Makes a token with `scopes`; returns it (shown once) after storing its hash.
pub fn create_token(profile: &Path, name: &str, scopes: &[String]) -> anyhow::Result<String> {
    for s in scopes {
        anyhow::ensure!(SCOPES.contains(&s.as_str()), "unknown scope {s:?}: use read, send");
    }
    anyhow::ensure!(!scopes.is_empty(), "give at least one --scope (read, send)");
    anyhow::ensure!(!name.trim().is_empty() && name.len() <= 64, "a token's --name is 1 to 64 bytes");
    let token = format!("srt_{}", random_hex(32));
    let mut all = load_tokens(profile);
    all.retain(|t| t.name != name);
    all.push(StoredToken {
        name: name.into(),
        scopes: scopes.to_vec(),
        sha256: sha256_hex(&token),
        created_at: strongroom_retention::now_ms(),
    });
    save_tokens(profile, &all)?;
    Ok(token)
}

/// Writes the token list whole (a temporary file renamed into place, 0600).
pub fn save_tokens(profile: &Path, all: &[StoredToken]) -> anyhow::Result<()> {
    let path = tokens_path(profile);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(all)?)?;
    #[cfg(unix)]
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

/// The launch secret, the sessions it opened, and the profile's tokens.
pub struct Gate {
    cookie: String,
    launch: std::sync::Mutex<Option<String>>,
    sessions: std::sync::Mutex<HashMap<String, Session>>,
    /// One-time WebSocket tickets (by hash) and when each stops working (ms).
    tickets: std::sync::Mutex<HashMap<String, u64>>,
    profile: PathBuf,
}

impl Gate {
    pub fn new(profile: &Path, port: u16) -> (Self, String) {
        let secret = random_hex(32);
        let gate = Self {
            cookie: cookie_name(port),
            launch: std::sync::Mutex::new(Some(sha256_hex(&secret))),
            sessions: std::sync::Mutex::new(HashMap::new()),
            tickets: std::sync::Mutex::new(HashMap::new()),
            profile: profile.to_owned(),
        };
        (gate, secret)
    }

    /// Trades the launch secret (once) for a session: its cookie id, and the
    /// session secret the page keeps in `sessionStorage` (per origin, so per
    /// port, unlike cookies) and sends as `X-CSRF-Token` on every call.
    pub fn open_session(&self, presented: &str) -> Option<(String, String)> {
        let mut launch = self.launch.lock().ok()?;
        let ok = launch.as_deref().is_some_and(|h| ct_eq(h, &sha256_hex(presented)));
        if !ok {
            return None;
        }
        *launch = None;
        let id = random_hex(32);
        let session = Session { csrf: random_hex(32) };
        let secret = session.csrf.clone();
        self.sessions.lock().ok()?.insert(sha256_hex(&id), session);
        Some((id, secret))
    }

    /// A one-time ticket for the event WebSocket (a browser cannot send
    /// headers there), good for 60 seconds.
    pub fn issue_ticket(&self) -> Option<String> {
        let ticket = random_hex(32);
        let now = strongroom_retention::now_ms();
        let mut all = self.tickets.lock().ok()?;
        all.retain(|_, until| *until > now);
        if all.len() >= 64 {
            return None;
        }
        all.insert(sha256_hex(&ticket), now + 60_000);
        Some(ticket)
    }

    /// Uses a ticket up.
    pub fn redeem_ticket(&self, ticket: &str) -> bool {
        let now = strongroom_retention::now_ms();
        self.tickets.lock().ok().and_then(|mut all| all.remove(&sha256_hex(ticket))).is_some_and(|until| until > now)
    }

    /// Who is calling, from the cookie or a bearer token; `None`: nobody we know.
    pub fn caller(&self, headers: &HeaderMap) -> Option<Caller> {
        if let Some(auth) = headers.get(header::AUTHORIZATION).and_then(|h| h.to_str().ok()) {
            let token = auth.strip_prefix("Bearer ")?.trim();
            let hash = sha256_hex(token);
            let mut found = None;
            // Every stored hash is compared, in constant time.
            for t in load_tokens(&self.profile) {
                if ct_eq(&t.sha256, &hash) {
                    found = Some(Caller::Token { scopes: t.scopes });
                }
            }
            return found;
        }
        let cookies = headers.get_all(header::COOKIE);
        for c in cookies.iter().filter_map(|c| c.to_str().ok()) {
            for part in c.split(';') {
                if let Some(id) = part.trim().strip_prefix(&format!("{}=", self.cookie)) {
                    let sessions = self.sessions.lock().ok()?;
                    if let Some(s) = sessions.get(&sha256_hex(id)) {
                        return Some(Caller::Ui { csrf: s.csrf.clone() });
                    }
                }
            }
        }
        None
    }
}

/// A refusal as JSON `{"error", "message"}`.
pub fn refuse(status: StatusCode, code: &str, message: &str) -> axum::response::Response {
    use axum::response::IntoResponse;
    (status, axum::Json(serde_json::json!({"error": code, "message": message}))).into_response()
}

/// Whether a call from `caller` carries its session secret (the UI: every
/// call, reads included — the cookie alone reaches any port of 127.0.0.1).
pub fn csrf_ok(caller: &Caller, headers: &HeaderMap) -> bool {
    match caller {
        Caller::Token { .. } => true,
        Caller::Ui { csrf } => {
            headers.get("x-csrf-token").and_then(|h| h.to_str().ok()).is_some_and(|t| ct_eq(t, csrf))
        }
    }
}
