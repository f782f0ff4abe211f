//! The web administration console at `/admin`: server-rendered HTML forms,
//! no JavaScript at all (so it works with scripting off and under a strict
//! Content-Security-Policy), on the same operations as the admin API.
//!
//! Security: an administrator's (or auditor's) password login with its own
//! 15-minute idle session in an `HttpOnly; Secure; SameSite=Strict` cookie;
//! every form carries a CSRF token derived from the session; every value is
//! HTML-escaped; logins are rate limited by address. The console never sees
//! message content or keys: the server has none.

mod pages;

use std::net::SocketAddr;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use subtle::ConstantTimeEq;

use crate::auth::{secret_hash, Caller};
use crate::error::{hex, ApiError};
use crate::service::admin::require_admin;
use crate::service::sessions::CONSOLE_IDLE_MS as IDLE_MS;
use crate::service::Actor;
use crate::state::AppState;
use crate::store::{now_ms, CONSOLE_DEVICE};

const COOKIE: &str = "sr_console";
const CSS: &str = include_str!("console.css");
const CSP: &str =
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes (HTML; not part of the JSON API's OpenAPI document).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin", get(|| async { Redirect::to("/admin/dashboard") }))
        .route("/admin/static/console.css", get(css))
        .route("/admin/login", get(pages::login_form).post(pages::login))
        .route("/admin/logout", post(pages::logout))
        .route("/admin/dashboard", get(pages::dashboard))
        .route("/admin/users", get(pages::users))
        .route("/admin/users/invite", post(pages::invite))
        .route("/admin/users/{id}/{action}", post(pages::user_action))
        .route("/admin/users/{id}/devices/{device}/wipe", post(pages::wipe))
        .route("/admin/groups", get(pages::groups).post(pages::create_group))
        .route("/admin/groups/{id}", get(pages::group_form).post(pages::update_group))
        .route("/admin/groups/{id}/delete", post(pages::delete_group))
        .route("/admin/settings", get(pages::settings).post(pages::save_settings))
        .route("/admin/audit", get(pages::audit))
        .route("/admin/audit/export", get(pages::audit_export))
        .route("/join", get(pages::join))
        .layer(axum::middleware::map_response(harden))
}

async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS)
}

/// Security headers on every console response.
async fn harden(mut res: Response) -> Response {
    let h = res.headers_mut();
    for (name, value) in [
        ("content-security-policy", CSP),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
    res
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A signed-in administrator (or auditor).
pub struct Console {
    caller: Caller,
    username: String,
    csrf: String,
}

fn csrf_for(token_hash: &[u8; 32]) -> String {
    hex(&secret_hash(&[b"strongroom-console-csrf".as_slice(), token_hash.as_slice()].concat()))
}

fn cookie_token(parts: &Parts) -> Option<String> {
    cookie(&parts.headers, COOKIE)
}

/// The value of cookie `name` in a request's headers.
fn cookie(headers: &axum::http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

impl FromRequestParts<AppState> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let to_login = || Redirect::to("/admin/login").into_response();
        let token = cookie_token(parts).ok_or_else(to_login)?;
        let token_hash = secret_hash(token.as_bytes());
        let now = now_ms();
        let session = match state.store.session(&token_hash, now).await {
            Ok(Some(s)) if s.device_id == CONSOLE_DEVICE && !s.suspended && (s.admin || s.auditor) => s,
            _ => return Err(to_login()),
        };
        // Idle timeout: each request extends the session by IDLE_MS.
        let _ = state.store.touch_session(&token_hash, now + IDLE_MS).await;
        let username = state.store.live_user(&session.user_id).await.ok().flatten().map(|(_, n)| n).unwrap_or_default();
        Ok(Console { csrf: csrf_for(&token_hash), caller: Caller { session, token_hash }, username })
    }
}

impl Console {
    /// The response refusing a form, if it must be refused: a CSRF token
    /// that is not this session's, or (for changes) a non-administrator.
    fn refuse_form(&self, form: &std::collections::HashMap<String, String>, change: bool) -> Option<Response> {
        let token_ok = form.get("csrf").is_some_and(|t| bool::from(t.as_bytes().ct_eq(self.csrf.as_bytes())));
        if !token_ok {
            return Some(page_error(
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from this console. Reload the page and try again.",
            ));
        }
        if change {
            if let Err(e) = require_admin(&self.caller) {
                return Some(api_error(e));
            }
        }
        None
    }

    /// A hidden CSRF field for forms.
    fn csrf_field(&self) -> String {
        format!("<input type=\"hidden\" name=\"csrf\" value=\"{}\">", esc(&self.csrf))
    }

    /// A whole page.
    fn page(&self, active: &str, title: &str, flash: Option<(bool, &str)>, body: &str) -> Response {
        let nav: String = [
            ("dashboard", "Dashboard"),
            ("users", "Users"),
            ("groups", "Security groups"),
            ("settings", "Network settings"),
            ("audit", "Audit log"),
        ]
        .iter()
        .map(|(slug, name)| {
            let current = if *slug == active { " aria-current=\"page\"" } else { "" };
            format!("<a href=\"/admin/{slug}\"{current}>{name}</a>")
        })
        .collect();
        let role = if self.caller.session.admin { "administrator" } else { "auditor (read-only)" };
        let flash = flash
            .map(|(ok, m)| {
                format!("<div class=\"flash {}\" role=\"status\">{}</div>", if ok { "ok" } else { "bad" }, esc(m))
            })
            .unwrap_or_default();
        let html = format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{title} · Strongroom console</title><link rel=\"stylesheet\" href=\"/admin/static/console.css\"></head><body>\
             <header><div class=\"brand\">Strongroom</div><nav aria-label=\"Console\">{nav}</nav>\
             <span class=\"who\">{user} · {role}</span>\
             <form method=\"post\" action=\"/admin/logout\">{csrf}<button type=\"submit\">Log out</button></form></header>\
             <main><h1>{title}</h1>{flash}{body}</main></body></html>",
            title = esc(title),
            user = esc(&self.username),
            csrf = self.csrf_field(),
        );
        html_response(StatusCode::OK, html)
    }
}

fn html_response(status: StatusCode, html: String) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
}

/// A bare error page (no session needed).
fn page_error(status: StatusCode, message: &str) -> Response {
    html_response(
        status,
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Error · Strongroom console</title>\
             <link rel=\"stylesheet\" href=\"/admin/static/console.css\"></head><body><main class=\"login\">\
             <h1>Something went wrong</h1><div class=\"flash bad\" role=\"alert\">{}</div><p><a href=\"/admin/dashboard\">Back to the console</a></p></main></body></html>",
            esc(message)
        ),
    )
}

fn api_error(e: ApiError) -> Response {
    page_error(e.status(), e.message())
}

/// The session cookie for a new console login.
fn session_cookie(token: &str) -> String {
    format!("{COOKIE}={token}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={}", IDLE_MS / 1000)
}

fn clear_cookie() -> String {
    format!("{COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0")
}

/// Where a form came from, for the audit log.
type Addr = axum::extract::ConnectInfo<SocketAddr>;

impl Console {
    /// The console user acting from `addr` (for the audit log).
    fn actor(&self, addr: SocketAddr) -> Actor {
        Actor { caller: self.caller, source: addr.ip() }
    }
}
