//! The local API (`/api/v1/…`) and the UI's files. Every API call names
//! its caller (the UI's cookie, or a bearer token with scopes); writes from
//! the UI carry its CSRF token; answers are JSON; message text is data,
//! never markup (the UI sets it as text).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use strongroom_client::Client;
use strongroom_crypto::content::Content;
use strongroom_crypto::ids::ConversationId;

use super::guard::{self, Caller};
use super::{client_error, internal, App};

const INDEX: &str = include_str!("ui/index.html");
const SCRIPT: &str = include_str!("ui/app.js");
const STYLE: &str = include_str!("ui/app.css");
const OPENAPI: &str = include_str!("ui/openapi.json");

pub fn router(_app: Arc<App>) -> Router<Arc<App>> {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], SCRIPT) }))
        .route("/app.css", get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], STYLE) }))
        .route("/api/v1/openapi.json", get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }))
        .route("/api/v1/session", get(session))
        .route("/api/v1/unlock", post(unlock))
        .route("/api/v1/invite", post(preview_invite))
        .route("/api/v1/enrol", post(enrol))
        .route("/api/v1/link", post(link))
        .route("/api/v1/conversations", get(conversations))
        .route("/api/v1/conversations/{id}/messages", get(messages).post(send))
        .route("/api/v1/conversations/{id}/read", post(mark_read))
        .route("/api/v1/direct", post(direct))
        .route("/api/v1/events", get(events))
        .route("/api/v1/events/ws", get(events_ws))
        .route("/api/v1/events/ticket", post(ticket))
        .route("/api/v1/conversations/{id}/displayed", post(displayed))
        .fallback(|| async { guard::refuse(StatusCode::NOT_FOUND, "not_found", "no such page or API route") })
}

#[derive(Deserialize)]
struct Launch {
    k: Option<String>,
}

/// `/?k=SECRET` once: the cookie is set and the secret forgotten.
async fn index(State(app): State<Arc<App>>, Query(q): Query<Launch>) -> Response {
    if let Some(k) = q.k {
        return match app.gate.open_session(&k) {
            Some((id, secret)) => {
                let cookie = format!("{}={id}; HttpOnly; SameSite=Strict; Path=/", guard::cookie_name(app.port));
                // The session secret rides in the fragment: never sent to a
                // server, kept by the page in sessionStorage (this port only).
                ([(header::SET_COOKIE, cookie)], Redirect::to(&format!("/#t={secret}"))).into_response()
            }
            None => guard::refuse(
                StatusCode::UNAUTHORIZED,
                "bad_launch_link",
                "this sign-in link was used already or is wrong: open the one `strongroom app` printed, or restart it",
            ),
        };
    }
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response()
}

/// The caller, or the refusal to send: 401 for nobody, 403 for a missing
/// scope or session secret (the UI sends its secret on every call, reads too).
fn authorise(app: &App, headers: &HeaderMap, scope: &str) -> Result<Caller, Box<Response>> {
    let caller = app.gate.caller(headers).ok_or_else(|| {
        Box::new(guard::refuse(
            StatusCode::UNAUTHORIZED,
            "unauthorised",
            "sign in with the link `strongroom app` printed, or send a bearer token",
        ))
    })?;
    if !caller.may(scope) {
        return Err(Box::new(guard::refuse(
            StatusCode::FORBIDDEN,
            "scope",
            &format!("this token lacks the {scope:?} scope"),
        )));
    }
    if !guard::csrf_ok(&caller, headers) {
        return Err(Box::new(guard::refuse(StatusCode::FORBIDDEN, "csrf", "missing or wrong X-CSRF-Token")));
    }
    Ok(caller)
}

/// Account flows (unlock, enrol, link, invite check): the UI only, never a token.
fn ui_only(app: &App, headers: &HeaderMap) -> Result<(), Box<Response>> {
    match authorise(app, headers, "send")? {
        Caller::Ui { .. } => Ok(()),
        Caller::Token { .. } => Err(Box::new(guard::refuse(
            StatusCode::FORBIDDEN,
            "ui_only",
            "unlocking, enrolling and linking are done in the app's own page, not with a token",
        ))),
    }
}

fn locked() -> Response {
    guard::refuse(StatusCode::LOCKED, "locked", "the profile is locked: unlock it with its passphrase first")
}

async fn session(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    let caller = match authorise(&app, &headers, "read") {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let mut guard = app.client.lock().await;
    let (unlocked, username, retention) = match guard.as_mut() {
        Some(c) => (true, Some(c.username().to_owned()), c.retention_enabled().await.ok()),
        None => (false, None, None),
    };
    let ui = matches!(caller, Caller::Ui { .. });
    let enrolled = app.profile.join("profile.json").exists();
    // The link code shows on this device's own page only.
    let linking = if ui { app.linking.lock().ok().and_then(|l| l.clone()) } else { None };
    let (link_code, link_error) = match linking {
        Some(Ok(code)) if !unlocked => (Some(code), None),
        Some(Err(why)) => (None, Some(why)),
        _ => (None, None),
    };
    Json(json!({
        "enrolled": enrolled, "unlocked": unlocked, "username": username, "retention": retention,
        "link_code": link_code, "link_error": link_error,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct Unlock {
    passphrase: String,
}

async fn unlock(State(app): State<Arc<App>>, headers: HeaderMap, Json(body): Json<Unlock>) -> Response {
    if let Err(r) = ui_only(&app, &headers) {
        return *r;
    }
    let mut guard = app.client.lock().await;
    if guard.is_some() {
        return Json(json!({"unlocked": true})).into_response();
    }
    let Some(lock) = app.lock.lock().ok().and_then(|mut l| l.take()) else {
        return internal("the profile lock is gone");
    };
    let passphrase = zeroize::Zeroizing::new(body.passphrase);
    match Client::open_holding(&app.profile, &passphrase, lock).await {
        Ok(mut client) => {
            // The policy as it is now (whether retention is on), not as last seen.
            let _ = client.policy().await;
            *guard = Some(client);
            Json(json!({"unlocked": true})).into_response()
        }
        // Too many failed unlocks: the device erased its data, as its
        // security group requires. Nothing to lock any more.
        Err(strongroom_client::ClientError::Wiped(why)) => guard::refuse(StatusCode::GONE, "wiped", &why),
        Err(e) => {
            // Take the lock again (a failed unlock counted toward the
            // security group's lockout and let it go).
            match strongroom_client::profile_lock::ProfileLock::acquire(&app.profile) {
                Ok(l) => {
                    if let Ok(mut slot) = app.lock.lock() {
                        *slot = Some(l);
                    }
                }
                Err(busy) => return internal(format!("the profile was taken by another process: {busy}")),
            }
            let status = match &e {
                strongroom_client::ClientError::WrongPassphrase => StatusCode::UNAUTHORIZED,
                _ => StatusCode::UNPROCESSABLE_ENTITY,
            };
            guard::refuse(status, "unlock_failed", &e.to_string())
        }
    }
}

#[derive(Deserialize)]
struct InviteBody {
    invite: String,
}

/// What an invite leads to: the network's name and key fingerprint, as the
/// server states them and checked against the invite.
async fn preview_invite(State(app): State<Arc<App>>, headers: HeaderMap, Json(body): Json<InviteBody>) -> Response {
    if let Err(r) = ui_only(&app, &headers) {
        return *r;
    }
    let invite = match strongroom_wire::Invite::parse(&body.invite) {
        Ok(i) => i,
        Err(why) => return guard::refuse(StatusCode::BAD_REQUEST, "bad_invite", why),
    };
    let network = strongroom_crypto::ids::NetworkId::from_bytes(invite.network_id);
    let url = format!("{}/v1/networks/{network}", invite.server_url.trim_end_matches('/'));
    // The server an invite names is not trusted yet: bounded in time and size.
    let http = match reqwest::Client::builder().timeout(std::time::Duration::from_secs(15)).build() {
        Ok(h) => h,
        Err(e) => return internal(e),
    };
    let info: strongroom_wire::NetworkInfo = match http.get(&url).send().await {
        Ok(r) if r.content_length().is_some_and(|n| n > 64 * 1024) => {
            return guard::refuse(StatusCode::BAD_GATEWAY, "bad_server", "the server's answer is too large")
        }
        Ok(r) if r.status().is_success() => match r.json().await {
            Ok(i) => i,
            Err(e) => return guard::refuse(StatusCode::BAD_GATEWAY, "bad_server", &e.to_string()),
        },
        Ok(r) => {
            return guard::refuse(
                StatusCode::BAD_GATEWAY,
                "unknown_network",
                &format!("the server answered {}", r.status()),
            )
        }
        Err(e) => {
            return guard::refuse(
                StatusCode::BAD_GATEWAY,
                "unreachable",
                &format!("cannot reach {}: {e}", invite.server_url),
            )
        }
    };
    let key = <[u8; 32]>::try_from(info.network_public.0.as_slice())
        .ok()
        .and_then(|k| strongroom_crypto::keys::VerifyingKey::from_bytes(k).ok());
    let Some(key) = key else {
        return guard::refuse(StatusCode::BAD_GATEWAY, "bad_key", "the server sent an unusable network key");
    };
    let fingerprint = strongroom_crypto::certs::NetworkFingerprint::of(&key);
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&fingerprint.as_bytes()[..], &invite.network_fingerprint[..])) {
        return guard::refuse(
            StatusCode::CONFLICT,
            "fingerprint_mismatch",
            "the server's network key does not match the invite: do not use this server",
        );
    }
    Json(json!({"network": info.name, "fingerprint": fingerprint.to_string(), "server": invite.server_url}))
        .into_response()
}

#[derive(Deserialize)]
struct EnrolBody {
    invite: String,
    username: String,
    passphrase: String,
    password: String,
}

async fn enrol(State(app): State<Arc<App>>, headers: HeaderMap, Json(body): Json<EnrolBody>) -> Response {
    if let Err(r) = ui_only(&app, &headers) {
        return *r;
    }
    let mut guard = app.client.lock().await;
    if guard.is_some() {
        return guard::refuse(StatusCode::CONFLICT, "enrolled", "this profile is enrolled already");
    }
    // Enrolment takes the profile's lock itself: handed over, then taken back on failure.
    if let Ok(mut slot) = app.lock.lock() {
        slot.take();
    }
    let (passphrase, password) = (zeroize::Zeroizing::new(body.passphrase), zeroize::Zeroizing::new(body.password));
    let result = Client::enrol(&app.profile, &passphrase, body.invite.trim(), body.username.trim(), &password).await;
    match result {
        Ok(client) => {
            *guard = Some(client);
            Json(json!({"unlocked": true})).into_response()
        }
        Err(e) => {
            if let Ok(l) = strongroom_client::profile_lock::ProfileLock::acquire(&app.profile) {
                if let Ok(mut slot) = app.lock.lock() {
                    *slot = Some(l);
                }
            }
            client_error(e)
        }
    }
}

#[derive(Deserialize)]
struct LinkBody {
    server: String,
    network: String,
    username: String,
    password: String,
    passphrase: String,
}

/// Links this new device to an existing account: shows a code for the
/// account's primary device to approve (`strongroom link approve`), then
/// waits for it in the background (ten minutes).
async fn link(State(app): State<Arc<App>>, headers: HeaderMap, Json(body): Json<LinkBody>) -> Response {
    if let Err(r) = ui_only(&app, &headers) {
        return *r;
    }
    let Some(network) = strongroom_crypto::ids::NetworkId::parse_hex(body.network.trim()) else {
        return guard::refuse(StatusCode::BAD_REQUEST, "bad_network", "a network id is 32 hex digits");
    };
    if app.client.lock().await.is_some() || app.profile.join("profile.json").exists() {
        return guard::refuse(StatusCode::CONFLICT, "enrolled", "this profile already belongs to a device");
    }
    // Linking takes the profile's lock itself.
    if let Ok(mut slot) = app.lock.lock() {
        slot.take();
    }
    let passphrase = zeroize::Zeroizing::new(body.passphrase);
    let password = zeroize::Zeroizing::new(body.password);
    let pending =
        Client::link_begin(&app.profile, &passphrase, body.server.trim(), network, body.username.trim(), &password)
            .await;
    let pending = match pending {
        Ok(p) => p,
        Err(e) => {
            if let Ok(l) = strongroom_client::profile_lock::ProfileLock::acquire(&app.profile) {
                if let Ok(mut slot) = app.lock.lock() {
                    *slot = Some(l);
                }
            }
            return client_error(e);
        }
    };
    let code = pending.code().to_string();
    if let Ok(mut l) = app.linking.lock() {
        *l = Some(Ok(code.clone()));
    }
    let waiting = app.clone();
    tokio::spawn(async move {
        match pending.wait(std::time::Duration::from_secs(600)).await {
            Ok(client) => {
                *waiting.client.lock().await = Some(client);
                waiting.changed.send_modify(|n| *n += 1);
            }
            Err(e) => {
                if let Ok(mut l) = waiting.linking.lock() {
                    *l = Some(Err(e.to_string()));
                }
            }
        }
    });
    Json(json!({"code": code})).into_response()
}

/// Usernames with the guest badge ("dave (guest)"; usernames hold no
/// spaces, so the badge cannot be forged by a name), looked up once each
/// and then remembered.
async fn names(app: &App, client: &Client, ids: Vec<strongroom_crypto::ids::UserId>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for id in ids {
        if out.contains_key(&id.to_string()) {
            continue;
        }
        let known = app.names.lock().ok().and_then(|n| n.get(&id).cloned());
        let name = match known {
            Some(n) => n,
            None => match client.user_info(id).await.map(|u| strongroom_client::display_name(&u)) {
                Ok(n) => {
                    if let Ok(mut all) = app.names.lock() {
                        all.insert(id, n.clone());
                    }
                    n
                }
                Err(_) => id.to_string(),
            },
        };
        out.insert(id.to_string(), name);
    }
    out
}

async fn conversations(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = authorise(&app, &headers, "read") {
        return *r;
    }
    let guard = app.client.lock().await;
    let Some(client) = guard.as_ref() else { return locked() };
    let list = match client.conversations().await {
        Ok(l) => l,
        Err(e) => return client_error(e),
    };
    let states: HashMap<String, (u64, u64)> = client
        .read_states()
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|s| (s.conversation.to_string(), (s.read_to, s.unread)))
        .collect();
    let view = client.view(None).await.unwrap_or_default();
    let mut last: HashMap<String, &strongroom_client::ViewItem> = HashMap::new();
    for item in &view {
        last.insert(item.message.conversation.to_string(), item);
    }
    let ids: Vec<_> = list.iter().flat_map(|c| c.members.iter().map(|m| m.user_id)).collect();
    let people = names(&app, client, ids).await;
    let me = client.user_id().to_string();
    let mut out: Vec<Value> = list
        .iter()
        .map(|c| {
            let id = c.id.to_string();
            let others: Vec<&String> = c
                .members
                .iter()
                .map(|m| m.user_id.to_string())
                .filter(|u| *u != me)
                .filter_map(|u| people.get(&u))
                .collect();
            let title = if others.is_empty() {
                "Note to self".to_owned()
            } else {
                others.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            };
            let l = last.get(&id);
            json!({
                "id": id,
                "kind": c.kind,
                "title": title,
                "guests": c.members.iter().filter(|m| m.guest && m.user_id.to_string() != me).count(),
                "last_text": l.map(|i| crate::user::describe(&i.message.content)),
                "last_at": l.map(|i| i.message.timestamp),
                "unread": states.get(&id).map(|s| s.1).unwrap_or(0),
            })
        })
        .collect();
    out.sort_by_key(|c| std::cmp::Reverse(c.get("last_at").and_then(|v| v.as_u64()).unwrap_or(0)));
    Json(json!({"conversations": out})).into_response()
}

/// [`authorise`] for a route that names a conversation, and its id.
fn authorise_in(app: &App, headers: &HeaderMap, scope: &str, id: &str) -> Result<ConversationId, Box<Response>> {
    authorise(app, headers, scope)?;
    conversation_id(id)
}

fn conversation_id(id: &str) -> Result<ConversationId, Box<Response>> {
    ConversationId::parse_hex(id)
        .ok_or_else(|| Box::new(guard::refuse(StatusCode::BAD_REQUEST, "bad_id", "a conversation id is 32 hex digits")))
}

async fn messages(State(app): State<Arc<App>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    let conversation = match authorise_in(&app, &headers, "read", &id) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let guard = app.client.lock().await;
    let Some(client) = guard.as_ref() else { return locked() };
    let view = match client.view(Some(conversation)).await {
        Ok(v) => v,
        Err(e) => return client_error(e),
    };
    let ids: Vec<_> = view.iter().map(|i| i.message.sender).collect();
    let people = names(&app, client, ids).await;
    let me = client.user_id();
    let list: Vec<Value> = view
        .iter()
        .map(|i| {
            let m = &i.message;
            json!({
                "id": m.message_id.to_string(),
                "seq": m.seq,
                "sender": m.sender.to_string(),
                "sender_name": people.get(&m.sender.to_string()),
                "sender_guest": people.get(&m.sender.to_string()).is_some_and(|n| n.contains(" (guest")),
                "mine": m.sender == me,
                "at": m.timestamp,
                "text": crate::user::describe(&m.content),
                "edited": i.edited,
                "delivered": m.seq > 0,
                "read_by": i.read_by.iter().filter(|u| **u != me).count(),
            })
        })
        .collect();
    Json(json!({"messages": list})).into_response()
}

#[derive(Deserialize)]
struct Displayed {
    ids: Vec<strongroom_crypto::ids::MessageId>,
}

/// The page showed these messages to a person (it was visible): their
/// burn-on-read clocks start, and their senders get read receipts.
async fn displayed(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Displayed>,
) -> Response {
    if let Err(r) = ui_only(&app, &headers) {
        return *r;
    }
    let conversation = match conversation_id(&id) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let mut guard = app.client.lock().await;
    let Some(client) = guard.as_mut() else { return locked() };
    let view = match client.view(Some(conversation)).await {
        Ok(v) => v,
        Err(e) => return client_error(e),
    };
    let shown: Vec<_> = view.iter().map(|i| i.message.clone()).filter(|m| body.ids.contains(&m.message_id)).collect();
    let ids: Vec<_> = shown.iter().map(|m| m.message_id).collect();
    if let Err(e) = client.mark_displayed(&ids).await {
        return client_error(e);
    }
    let receipts = client.send_read_receipts(&shown, strongroom_retention::now_ms(), true).await.unwrap_or(0);
    Json(json!({"displayed": ids.len(), "receipts": receipts})).into_response()
}

/// A one-time ticket for the event WebSocket (the UI; tokens use their header).
async fn ticket(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    if let Err(r) = ui_only(&app, &headers) {
        return *r;
    }
    match app.gate.issue_ticket() {
        Some(t) => Json(json!({"ticket": t})).into_response(),
        None => guard::refuse(StatusCode::TOO_MANY_REQUESTS, "tickets", "too many WebSocket tickets outstanding"),
    }
}

#[derive(Deserialize)]
struct SendBody {
    text: String,
    #[serde(default)]
    burn_on_read_secs: u32,
    #[serde(default)]
    ttl_secs: u32,
}

async fn send(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<SendBody>,
) -> Response {
    let conversation = match authorise_in(&app, &headers, "send", &id) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    if body.text.trim().is_empty() {
        return guard::refuse(StatusCode::BAD_REQUEST, "empty", "there is nothing to send");
    }
    let mut guard = app.client.lock().await;
    let Some(client) = guard.as_mut() else { return locked() };
    match client.send_timed(conversation, &Content::Text(body.text), body.ttl_secs, body.burn_on_read_secs).await {
        Ok(a) => {
            app.changed.send_modify(|n| *n += 1);
            Json(json!({"message_id": a.message_id.to_string(), "seq": a.seq, "queued": a.seq == 0})).into_response()
        }
        Err(e) => client_error(e),
    }
}

#[derive(Deserialize)]
struct ReadBody {
    up_to: u64,
}

async fn mark_read(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<ReadBody>,
) -> Response {
    let conversation = match authorise_in(&app, &headers, "read", &id) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let guard = app.client.lock().await;
    let Some(client) = guard.as_ref() else { return locked() };
    match client.mark_read(conversation, body.up_to).await {
        Ok(at) => Json(json!({"read_to": at})).into_response(),
        Err(e) => client_error(e),
    }
}

#[derive(Deserialize)]
struct DirectBody {
    username: String,
}

async fn direct(State(app): State<Arc<App>>, headers: HeaderMap, Json(body): Json<DirectBody>) -> Response {
    if let Err(r) = authorise(&app, &headers, "send") {
        return *r;
    }
    let mut guard = app.client.lock().await;
    let Some(client) = guard.as_mut() else { return locked() };
    match client.direct_with(body.username.trim()).await {
        Ok(id) => Json(json!({"conversation": id.to_string()})).into_response(),
        Err(e) => client_error(e),
    }
}

#[derive(Deserialize)]
struct After {
    #[serde(default)]
    after: u64,
    /// The UI's one-time ticket (`POST /api/v1/events/ticket`).
    ticket: Option<String>,
}

async fn events(State(app): State<Arc<App>>, headers: HeaderMap, Query(q): Query<After>) -> Response {
    if let Err(r) = authorise(&app, &headers, "read") {
        return *r;
    }
    let guard = app.client.lock().await;
    let Some(client) = guard.as_ref() else { return locked() };
    match client.events(q.after, 500).await {
        Ok(list) => Json(
            json!({"events": list.iter().map(|e| json!({"id": e.id, "at": e.at, "kind": e.kind})).collect::<Vec<_>>()}),
        )
        .into_response(),
        Err(e) => client_error(e),
    }
}

/// The event log from a cursor, then each new event as it is logged.
async fn events_ws(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    Query(q): Query<After>,
    ws: WebSocketUpgrade,
) -> Response {
    if !guard::origin_ok(&headers, app.port) {
        return guard::refuse(StatusCode::FORBIDDEN, "bad_origin", "this WebSocket is for pages this app serves");
    }
    // The UI with a one-time ticket; a script with its bearer token (checked
    // again as events go, so a revoked token stops streaming).
    let token = match q.ticket.as_deref() {
        Some(t) if app.gate.redeem_ticket(t) => None,
        Some(_) => {
            return guard::refuse(StatusCode::UNAUTHORIZED, "bad_ticket", "this ticket is used, expired or wrong")
        }
        None => match app.gate.caller(&headers) {
            Some(c @ Caller::Token { .. }) if c.may("read") => Some(headers.clone()),
            Some(Caller::Token { .. }) => {
                return guard::refuse(StatusCode::FORBIDDEN, "scope", "this token lacks the \"read\" scope")
            }
            _ => {
                return guard::refuse(
                    StatusCode::UNAUTHORIZED,
                    "unauthorised",
                    "the event WebSocket needs a ticket (POST /api/v1/events/ticket) or a bearer token",
                )
            }
        },
    };
    ws.on_upgrade(move |socket| stream_events(app, socket, q.after, token))
}

async fn stream_events(app: Arc<App>, mut socket: WebSocket, mut after: u64, token: Option<HeaderMap>) {
    let mut changed = app.changed.subscribe();
    loop {
        if let Some(h) = &token {
            if !app.gate.caller(h).is_some_and(|c| c.may("read")) {
                let _ = socket.send(WsMessage::Close(None)).await;
                return;
            }
        }
        let batch = {
            let guard = app.client.lock().await;
            match guard.as_ref() {
                Some(c) => c.events(after, 500).await.unwrap_or_default(),
                None => Vec::new(),
            }
        };
        for e in &batch {
            after = e.id;
            let text = json!({"id": e.id, "at": e.at, "kind": e.kind}).to_string();
            if socket.send(WsMessage::Text(text.into())).await.is_err() {
                return;
            }
        }
        tokio::select! {
            r = changed.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(std::time::Duration::from_secs(30)) => {
                if socket.send(WsMessage::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
            m = socket.recv() => match m {
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => return,
                _ => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    /// The page's script: each account flow awaits `start()` (so its errors
    /// reach the form), and the tab's visibility is watched once, not once
    /// more per unlock (a text replacement once left `await // …` before a
    /// listener in every flow).
    #[test]
    fn the_script_starts_once_per_flow_and_watches_visibility_once() {
        assert_eq!(super::SCRIPT.matches("addEventListener(\"visibilitychange\"").count(), 1);
        assert_eq!(super::SCRIPT.matches("await start();").count(), 3, "unlock, enrol, link");
        assert!(!super::SCRIPT.lines().any(|l| l.trim_end().ends_with("await") || l.contains("await //")));
    }
}
