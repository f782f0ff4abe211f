//! The console's pages and forms.

use std::collections::HashMap;

use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use strongroom_wire::{GroupRequest, GroupSettings};

use super::{api_error, clear_cookie, esc, html_response, page_error, session_cookie, Addr, Console};
use crate::error::{hex, parse_id, ApiError};
use crate::service::admin;
use crate::service::sessions::{self, Binding};
use crate::state::AppState;
use crate::store::AuditQuery;

type Fields = HashMap<String, String>;

fn when(ms: u64) -> String {
    strongroom_wire::time::display(ms)
}

/// The login form's CSRF cookie: a random value the form carries back too
/// (double submit), so another site cannot log a browser into the console.
const LOGIN_COOKIE: &str = "sr_console_login";

fn login_page(message: Option<&str>) -> Response {
    let flash =
        message.map(|m| format!("<div class=\"flash bad\" role=\"alert\">{}</div>", esc(m))).unwrap_or_default();
    let mut raw = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut raw);
    let csrf = hex(&raw);
    let cookie = format!("{LOGIN_COOKIE}={csrf}; HttpOnly; Secure; SameSite=Strict; Path=/admin/login; Max-Age=900");
    let mut page = html_response(
        if message.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::OK },
        format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>Log in · Strongroom console</title><link rel=\"stylesheet\" href=\"/admin/static/console.css\"></head><body>\
             <main class=\"login\"><h1>Strongroom console</h1>{flash}\
             <form method=\"post\" action=\"/admin/login\"><input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <label for=\"network\">Network id</label><input id=\"network\" name=\"network\" type=\"text\" required autocomplete=\"off\" spellcheck=\"false\">\
             <label for=\"username\">Username</label><input id=\"username\" name=\"username\" type=\"text\" required autocomplete=\"username\">\
             <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" required autocomplete=\"current-password\">\
             <p><button class=\"primary\" type=\"submit\">Log in</button></p></form>\
             <p class=\"muted\">For network administrators and auditors. Sessions end after 15 minutes without activity.</p></main></body></html>"
        ),
    );
    if let Ok(v) = header::HeaderValue::from_str(&cookie) {
        page.headers_mut().append(header::SET_COOKIE, v);
    }
    page
}

pub(super) async fn login_form() -> Response {
    login_page(None)
}

pub(super) async fn login(
    State(state): State<AppState>,
    ConnectInfo(addr): Addr,
    headers: header::HeaderMap,
    Form(f): Form<Fields>,
) -> Response {
    let sent = f.get("csrf").map(String::as_bytes).unwrap_or_default();
    let kept = super::cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if sent.len() != 32 || !bool::from(subtle::ConstantTimeEq::ct_eq(sent, kept.as_bytes())) {
        return login_page(Some("This login form expired or did not come from this console; try again."));
    }
    if super::super::accounts::limit(&state, addr).is_err() {
        return login_page(Some("Too many login attempts from this address; wait a minute."));
    }
    let field = |k: &str| f.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    let wrong = || login_page(Some("Wrong network, username or password."));
    let Ok(network) = parse_id(&field("network"), "network id") else { return wrong() };
    let password = f.get("password").cloned().unwrap_or_default();
    match sessions::password_login(&state, &network, &field("username"), password, Binding::Console, addr.ip()).await {
        Ok(made) => {
            ([(header::SET_COOKIE, session_cookie(&made.token))], Redirect::to("/admin/dashboard")).into_response()
        }
        Err(e) if e.status() == StatusCode::UNAUTHORIZED => wrong(),
        Err(e) if e.status() == StatusCode::SERVICE_UNAVAILABLE => {
            page_error(StatusCode::SERVICE_UNAVAILABLE, "The server could not start a session; try again.")
        }
        Err(e) => login_page(Some(e.message())),
    }
}

pub(super) async fn logout(State(state): State<AppState>, c: Console, Form(f): Form<Fields>) -> Response {
    if let Some(r) = c.refuse_form(&f, false) {
        return r;
    }
    let _ = state.store.logout(&c.caller.token_hash).await;
    ([(header::SET_COOKIE, clear_cookie())], Redirect::to("/admin/login")).into_response()
}

pub(super) async fn dashboard(State(state): State<AppState>, c: Console) -> Response {
    let network = c.caller.session.network_id;
    let users = state.store.admin_users(&network, None, false).await.unwrap_or_default();
    let devices: usize = users.iter().map(|u| u.devices.iter().filter(|d| !d.revoked).count()).sum();
    let suspended = users.iter().filter(|u| u.suspended).count();
    let (device_q, retention_q) = state.store.queue_depth().await.unwrap_or((0, 0));
    let groups = state.store.groups(&network).await.map(|g| g.len()).unwrap_or(0);
    let retention: Vec<String> = match state.store.current_policy(&network).await {
        Ok(Some((_, body))) => strongroom_crypto::certs::NetworkPolicy::decode(&body)
            .map(|p| p.active_retention().map(|d| d.name.clone()).collect())
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let last_ack = state.metrics.retention_last_ack.load(std::sync::atomic::Ordering::Relaxed);
    let checkpoint = state
        .store
        .retention_checkpoints(&network)
        .await
        .unwrap_or_default()
        .into_iter()
        .max_by_key(|c| c.3)
        .map(|(_, size, root, at)| {
            format!("{size} records, signed {} (root {}…)", when(at), hex(&root).get(..12).unwrap_or(""))
        })
        .unwrap_or_else(|| "none reported".into());
    let card = |n: String, l: &str| {
        format!("<div class=\"card\"><div class=\"n\">{}</div><div class=\"l\">{}</div></div>", esc(&n), esc(l))
    };
    let retention_status =
        if retention.is_empty() { "off".to_owned() } else { format!("on: {}", retention.join(", ")) };
    let alert = state.metrics.retention_alert.load(std::sync::atomic::Ordering::Relaxed);
    let body = format!(
        "<div class=\"cards\">{}{}{}{}{}{}</div><h2>Data retention</h2><div class=\"cards\">{}{}{}</div><p>Last archive checkpoint: <span class=\"mono\">{}</span></p>{}",
        card(users.len().to_string(), "users"),
        card(suspended.to_string(), "suspended"),
        card(devices.to_string(), "active devices"),
        card(state.hub.connections().to_string(), "connected clients (this server)"),
        card(device_q.to_string(), "messages queued for devices"),
        card(groups.to_string(), "security groups"),
        card(retention_status, "data retention"),
        card(retention_q.to_string(), "retention backlog (messages waiting for the archive)"),
        card(if last_ack == 0 { "never".into() } else { when(last_ack) }, "last archived batch acknowledged"),
        esc(&checkpoint),
        if alert {
            "<div class=\"flash bad\" role=\"alert\">The retention backlog is over its alert threshold: check that the retention service is running.</div>"
        } else {
            ""
        },
    );
    c.page("dashboard", "Dashboard", None, &body)
}

fn users_page(
    state_users: &[strongroom_wire::AdminUser],
    groups: &[strongroom_wire::SecurityGroup],
    c: &Console,
    search: &str,
    extra: &str,
) -> String {
    let csrf = c.csrf_field();
    let group_name = |id: &Option<String>| {
        id.as_ref()
            .and_then(|id| groups.iter().find(|g| &g.id == id))
            .map(|g| g.name.clone())
            .unwrap_or_else(|| "network defaults".into())
    };
    let mut rows = String::new();
    for u in state_users {
        let id = u.user_id.to_string();
        let name = esc(&u.username);
        let status = match (u.expired_at, u.suspended) {
            (Some(_), _) => "<span class=\"badge bad\">expired (inactive)</span>",
            (None, true) => "<span class=\"badge bad\">suspended</span>",
            (None, false) => "active",
        };
        // Guests carry a badge and who invited them.
        let role = match (u.role.as_str(), &u.invited_by) {
            ("guest", Some(by)) => format!(
                "<span class=\"badge guest\">guest</span><br><span class=\"muted\">invited by {}</span>",
                esc(by)
            ),
            ("guest", None) => "<span class=\"badge guest\">guest</span>".to_owned(),
            (r, _) => esc(r),
        };
        let mut devices = String::new();
        for d in &u.devices {
            let state = if d.wipe != "none" {
                format!("wipe {}", esc(&d.wipe))
            } else if d.revoked {
                "revoked".into()
            } else {
                "active".into()
            };
            let wipe = if d.revoked || d.wipe != "none" {
                String::new()
            } else {
                format!(
                    "<form method=\"post\" action=\"/admin/users/{id}/devices/{dev}/wipe\">{csrf}<button class=\"danger\" type=\"submit\" aria-label=\"Wipe device {short} of {name}\">Wipe</button></form>",
                    dev = d.device_id,
                    short = short_id(&d.device_id.to_string())
                )
            };
            devices.push_str(&format!("<div><code>{}</code> {state} {wipe}</div>", short_id(&d.device_id.to_string())));
        }
        let options: String = std::iter::once(("".to_owned(), "network defaults".to_owned()))
            .chain(groups.iter().map(|g| (g.id.clone(), g.name.clone())))
            .map(|(gid, gname)| {
                let sel = if u.group_id.as_deref().unwrap_or("") == gid { " selected" } else { "" };
                format!("<option value=\"{}\"{sel}>{}</option>", esc(&gid), esc(&gname))
            })
            .collect();
        let suspend =
            if u.suspended { ("unsuspend", "Unsuspend", "") } else { ("suspend", "Suspend", " class=\"danger\"") };
        let button = |action: &str, label: &str, class: &str| {
            format!("<form method=\"post\" action=\"/admin/users/{id}/{action}\">{csrf}<button type=\"submit\"{class} aria-label=\"{label} {name}\">{label}</button></form> ")
        };
        rows.push_str(&format!(
            "<tr><td><strong>{name}</strong><br><code>{idshort}</code></td><td>{role}</td><td>{status}</td><td>{group}\
             <form method=\"post\" action=\"/admin/users/{id}/group\">{csrf}<label for=\"g-{id}\" class=\"muted\">Security group of {name}</label>\
             <select id=\"g-{id}\" name=\"group\">{options}</select> <button type=\"submit\">Set</button></form></td><td>{devices}</td><td class=\"actions\">{s}{r}{d}{x}</td></tr>",
            idshort = short_id(&u.user_id.to_string()),
            group = esc(&group_name(&u.group_id)),
            s = button(suspend.0, suspend.1, suspend.2),
            r = button("reset-password", "Reset password", ""),
            d = button("reset-devices", "Reset devices", ""),
            x = button("delete", "Delete", " class=\"danger\""),
        ));
    }
    format!(
        "{extra}<form method=\"get\" action=\"/admin/users\" class=\"row\" role=\"search\"><div><label for=\"search\">Search users</label>\
         <input id=\"search\" name=\"search\" type=\"text\" value=\"{search}\"></div><div><button type=\"submit\">Search</button></div></form>\
         <h2>Invite people</h2><form method=\"post\" action=\"/admin/users/invite\">{csrf}<div class=\"row\"><div><label for=\"labels\">Names (one per line or comma-separated; one invite each)</label>\
         <input id=\"labels\" name=\"labels\" type=\"text\" placeholder=\"frank, grace\"></div>\
         <div class=\"check\"><input id=\"admin\" name=\"admin\" type=\"checkbox\" value=\"on\"><label for=\"admin\">as administrators</label></div>\
         <div><button class=\"primary\" type=\"submit\">Create invites</button></div></div></form>\
         <h2>Users</h2><table><thead><tr><th scope=\"col\">User</th><th scope=\"col\">Role</th><th scope=\"col\">Status</th><th scope=\"col\">Security group</th><th scope=\"col\">Devices</th><th scope=\"col\">Actions</th></tr></thead><tbody>{rows}</tbody></table>",
        search = esc(search),
    )
}

async fn render_users(
    state: &AppState,
    c: &Console,
    search: &str,
    flash: Option<(bool, &str)>,
    extra: &str,
) -> Response {
    let network = c.caller.session.network_id;
    let users = match admin::list_users(state, &c.caller, Some(search)).await {
        Ok(u) => u,
        Err(e) => return api_error(e),
    };
    let groups = state.store.groups(&network).await.unwrap_or_default();
    c.page("users", "Users", flash, &users_page(&users, &groups, c, search, extra))
}

#[derive(serde::Deserialize)]
pub(super) struct SearchQuery {
    search: Option<String>,
}

pub(super) async fn users(State(state): State<AppState>, c: Console, Query(q): Query<SearchQuery>) -> Response {
    render_users(&state, &c, q.search.as_deref().unwrap_or(""), None, "").await
}

pub(super) async fn invite(
    State(state): State<AppState>,
    c: Console,
    ConnectInfo(addr): Addr,
    Form(f): Form<Fields>,
) -> Response {
    if let Some(r) = c.refuse_form(&f, true) {
        return r;
    }
    let labels: Vec<String> = f
        .get("labels")
        .map(|l| l.split([',', '\n']).map(|s| s.trim().to_owned()).filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    let labels = if labels.is_empty() { vec!["invite".to_owned()] } else { labels };
    match admin::bulk_invite(&state, &c.actor(addr), labels, f.contains_key("admin"), None).await {
        Ok(list) => {
            let base = state.public_url.trim_end_matches('/').to_owned();
            let items: String = list
                .iter()
                .map(|(label, invite)| {
                    format!(
                        "<div class=\"invite\"><strong>{label}</strong> <span class=\"muted\">(one use, until {until})</span>\
                         <p>Invite code: <code class=\"invite-code\">{code}</code></p>\
                         <p>Invite link: <code>{base}/join#{code}</code></p>\
                         <p class=\"muted\">They run: <code>strongroom enrol --invite {code} --username NAME</code></p></div>",
                        label = esc(label),
                        code = esc(&invite.invite),
                        until = when(invite.expires_at),
                        base = esc(&base),
                    )
                })
                .collect();
            render_users(&state, &c, "", Some((true, "Invites created: give each person their code or link.")), &items)
                .await
        }
        Err(e) => render_users(&state, &c, "", Some((false, e.message())), "").await,
    }
}

pub(super) async fn user_action(
    State(state): State<AppState>,
    c: Console,
    ConnectInfo(addr): Addr,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<Fields>,
) -> Response {
    if let Some(r) = c.refuse_form(&f, true) {
        return r;
    }
    let actor = c.actor(addr);
    let user = match parse_id(&id, "user id") {
        Ok(u) => u,
        Err(e) => return render_users(&state, &c, "", Some((false, e.message())), "").await,
    };
    let outcome: Result<(String, String), ApiError> = match action.as_str() {
        "suspend" => admin::set_suspended(&state, &actor, &user, true).await.map(|_| ("User suspended: their sessions have ended.".into(), String::new())),
        "unsuspend" => admin::set_suspended(&state, &actor, &user, false).await.map(|_| ("User unsuspended.".into(), String::new())),
        "delete" => admin::delete_user(&state, &actor, &user).await.map(|_| ("User deleted; their queued messages are purged.".into(), String::new())),
        "reset-password" => admin::reset_password(&state, &actor, &user).await.map(|r| {
            (
                "Password reset: the user is logged out everywhere.".into(),
                format!("<div class=\"invite\"><p>One-time code (valid until {}): <code class=\"reset-code\">{}</code></p><p class=\"muted\">They run: <code>strongroom password --reset-code CODE</code></p></div>", when(r.expires_at), esc(&r.code)),
            )
        }),
        "reset-devices" => admin::reset_devices(&state, &actor, &user).await.map(|i| {
            (
                "All devices revoked.".into(),
                format!("<div class=\"invite\"><p>Re-enrolment invite (same username): <code class=\"invite-code\">{}</code></p></div>", esc(&i.invite)),
            )
        }),
        "group" => match f.get("group").filter(|g| !g.is_empty()).map(|g| parse_id(g, "group id")).transpose() {
            Ok(group) => admin::set_group(&state, &actor, &user, group.as_ref()).await.map(|_| ("Security group set.".into(), String::new())),
            Err(e) => Err(e),
        },
        "role" => {
            let role = f.get("role").cloned().unwrap_or_default();
            admin::set_role(&state, &actor, &user, &role).await.map(|_| ("Role set.".into(), String::new()))
        }
        _ => return page_error(StatusCode::NOT_FOUND, "No such action."),
    };
    match outcome {
        Ok((msg, extra)) => render_users(&state, &c, "", Some((true, &msg)), &extra).await,
        Err(e) => render_users(&state, &c, "", Some((false, e.message())), "").await,
    }
}

pub(super) async fn wipe(
    State(state): State<AppState>,
    c: Console,
    ConnectInfo(addr): Addr,
    Path((id, device)): Path<(String, String)>,
    Form(f): Form<Fields>,
) -> Response {
    if let Some(r) = c.refuse_form(&f, true) {
        return r;
    }
    let ids = parse_id(&id, "user id").and_then(|u| Ok((u, parse_id(&device, "device id")?)));
    let ordered = match ids {
        Ok((user, device)) => admin::wipe_device(&state, &c.actor(addr), &user, &device).await,
        Err(e) => Err(e),
    };
    match ordered {
        Ok(_) => {
            render_users(
                &state,
                &c,
                "",
                Some((true, "Wipe ordered: the device is revoked and erases itself when it next connects.")),
                "",
            )
            .await
        }
        Err(e) => render_users(&state, &c, "", Some((false, e.message())), "").await,
    }
}

const BOOLS: &[(&str, &str)] = &[
    ("files_enabled", "Send files"),
    ("file_download", "Download files"),
    ("location_enabled", "Share locations"),
    ("message_forwarding", "Forward messages"),
    ("link_previews", "Link previews"),
    ("calling_enabled", "Calls"),
    ("video_enabled", "Video in calls"),
    ("screen_share_enabled", "Screen sharing"),
    ("guests_enabled", "Members may invite guests and add them to conversations"),
];

const NUMBERS: &[(&str, &str)] = &[
    ("max_ttl_secs", "Longest disappearing-message timer (seconds; 0 = no limit)"),
    ("max_bor_secs", "Longest burn-on-read timer (seconds; 0 = no limit)"),
    ("max_file_size", "Largest file (bytes)"),
    ("password_min_length", "Shortest password (characters)"),
    ("lockout_threshold", "Failed logins before the account locks (0 = never)"),
    ("device_lockout", "Failed unlocks before a device erases itself (0 = never)"),
    ("retention_days", "Archive retention period (days; 0 = the network's)"),
    ("guest_expiry_secs", "A guest inactive this long expires (seconds; 0 = never)"),
];

fn settings_fields(s: &GroupSettings) -> String {
    let v = serde_json::to_value(s).unwrap_or_default();
    let mut out = String::from("<fieldset><legend>Features</legend>");
    for (k, label) in BOOLS {
        let checked = if v.get(*k).and_then(|x| x.as_bool()) == Some(true) { " checked" } else { "" };
        out.push_str(&format!("<div class=\"check\"><input id=\"{k}\" name=\"{k}\" type=\"checkbox\" value=\"on\"{checked}><label for=\"{k}\">{label}</label></div>"));
    }
    out.push_str("</fieldset><fieldset><legend>Limits and authentication</legend>");
    for (k, label) in NUMBERS {
        let n = v.get(*k).and_then(|x| x.as_u64()).unwrap_or(0);
        out.push_str(&format!(
            "<label for=\"{k}\">{label}</label><input id=\"{k}\" name=\"{k}\" type=\"number\" min=\"0\" value=\"{n}\">"
        ));
    }
    let select = |k: &str, label: &str, options: &[&str], current: &str| {
        let opts: String = options
            .iter()
            .map(|o| format!("<option value=\"{o}\"{}>{o}</option>", if *o == current { " selected" } else { "" }))
            .collect();
        format!("<label for=\"{k}\">{label}</label><select id=\"{k}\" name=\"{k}\">{opts}</select>")
    };
    out.push_str("</fieldset><fieldset><legend>Messaging and federation</legend>");
    out.push_str(&select("read_receipts", "Read receipts", &["off", "on", "forced"], s.read_receipts.name()));
    out.push_str(&select("federation", "Federation", &["none", "allow_list", "open"], s.federation.name()));
    out.push_str(&format!(
        "<label for=\"federation_allow\">Allowed networks (domains, comma-separated)</label><input id=\"federation_allow\" name=\"federation_allow\" type=\"text\" value=\"{}\"></fieldset>",
        esc(&s.federation_allow.join(", "))
    ));
    out
}

/// Reads the settings form: unchecked boxes are off; numbers must be whole numbers.
fn settings_from_form(f: &Fields) -> Result<GroupSettings, String> {
    let mut v = serde_json::to_value(GroupSettings::default()).map_err(|e| e.to_string())?;
    let obj = v.as_object_mut().ok_or("settings")?;
    for (k, _) in BOOLS {
        obj.insert((*k).into(), f.contains_key(*k).into());
    }
    for (k, label) in NUMBERS {
        let raw = f.get(*k).map(|s| s.trim()).unwrap_or("0");
        let n: u64 = raw.parse().map_err(|_| format!("{label}: {raw:?} is not a whole number of 0 or more"))?;
        obj.insert((*k).into(), n.into());
    }
    for k in ["read_receipts", "federation"] {
        obj.insert(k.into(), f.get(k).cloned().unwrap_or_default().into());
    }
    let allow: Vec<String> = f
        .get("federation_allow")
        .map(|s| s.split(',').map(|d| d.trim().to_owned()).filter(|d| !d.is_empty()).collect())
        .unwrap_or_default();
    obj.insert("federation_allow".into(), allow.into());
    let s: GroupSettings = serde_json::from_value(v).map_err(|e| format!("a setting is out of range: {e}"))?;
    s.validate()?;
    Ok(s)
}

async fn render_groups(state: &AppState, c: &Console, flash: Option<(bool, &str)>) -> Response {
    let groups = match admin::list_groups(state, &c.caller).await {
        Ok(g) => g,
        Err(e) => return api_error(e),
    };
    let rows: String = groups
        .iter()
        .map(|g| {
            format!(
                "<tr><td><a href=\"/admin/groups/{id}\">{name}</a></td><td>{members}</td><td>{files}</td><td>{ttl}</td><td>{receipts}</td></tr>",
                id = esc(&g.id),
                name = esc(&g.name),
                members = g.members,
                files = if g.settings.files_enabled { "on" } else { "off" },
                ttl = if g.settings.max_ttl_secs == 0 { "no limit".into() } else { format!("{} s", g.settings.max_ttl_secs) },
                receipts = g.settings.read_receipts.name(),
            )
        })
        .collect();
    let body = format!(
        "<table><thead><tr><th scope=\"col\">Group</th><th scope=\"col\">Members</th><th scope=\"col\">Files</th><th scope=\"col\">Timer limit</th><th scope=\"col\">Read receipts</th></tr></thead><tbody>{rows}</tbody></table>\
         <h2>New security group</h2><form method=\"post\" action=\"/admin/groups\">{csrf}<label for=\"name\">Name</label><input id=\"name\" name=\"name\" type=\"text\" required>{fields}\
         <p><button class=\"primary\" type=\"submit\">Create group</button></p></form>",
        csrf = c.csrf_field(),
        fields = settings_fields(&GroupSettings::default()),
    );
    c.page("groups", "Security groups", flash, &body)
}

pub(super) async fn groups(State(state): State<AppState>, c: Console) -> Response {
    render_groups(&state, &c, None).await
}

pub(super) async fn create_group(
    State(state): State<AppState>,
    c: Console,
    ConnectInfo(addr): Addr,
    Form(f): Form<Fields>,
) -> Response {
    if let Some(r) = c.refuse_form(&f, true) {
        return r;
    }
    let settings = match settings_from_form(&f) {
        Ok(s) => s,
        Err(e) => return render_groups(&state, &c, Some((false, &e))).await,
    };
    let req = GroupRequest { name: f.get("name").cloned().unwrap_or_default(), settings };
    match admin::create_group(&state, &c.actor(addr), req).await {
        Ok(_) => render_groups(&state, &c, Some((true, "Security group created."))).await,
        Err(e) => render_groups(&state, &c, Some((false, e.message()))).await,
    }
}

async fn render_group(state: &AppState, c: &Console, id: &str, flash: Option<(bool, &str)>) -> Response {
    let groups = state.store.groups(&c.caller.session.network_id).await.unwrap_or_default();
    let Some(g) = groups.into_iter().find(|g| g.id == id) else {
        return page_error(StatusCode::NOT_FOUND, "No such security group in your network.");
    };
    let body = format!(
        "<form method=\"post\" action=\"/admin/groups/{id}\">{csrf}<label for=\"name\">Name</label><input id=\"name\" name=\"name\" type=\"text\" value=\"{name}\" required>{fields}\
         <p><button class=\"primary\" type=\"submit\">Save</button></p></form>\
         <form method=\"post\" action=\"/admin/groups/{id}/delete\">{csrf}<button class=\"danger\" type=\"submit\">Delete this group</button></form>",
        id = esc(&g.id),
        csrf = c.csrf_field(),
        name = esc(&g.name),
        fields = settings_fields(&g.settings),
    );
    c.page("groups", &format!("Security group: {}", g.name), flash, &body)
}

pub(super) async fn group_form(State(state): State<AppState>, c: Console, Path(id): Path<String>) -> Response {
    render_group(&state, &c, &id, None).await
}

pub(super) async fn update_group(
    State(state): State<AppState>,
    c: Console,
    ConnectInfo(addr): Addr,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    if let Some(r) = c.refuse_form(&f, true) {
        return r;
    }
    let settings = match settings_from_form(&f) {
        Ok(s) => s,
        Err(e) => return render_group(&state, &c, &id, Some((false, &e))).await,
    };
    let req = GroupRequest { name: f.get("name").cloned().unwrap_or_default(), settings };
    let updated = match parse_id(&id, "group id") {
        Ok(group) => admin::update_group(&state, &c.actor(addr), &group, req).await,
        Err(e) => Err(e),
    };
    match updated {
        Ok(_) => {
            render_group(&state, &c, &id, Some((true, "Saved: members' clients apply it at their next request."))).await
        }
        Err(e) => render_group(&state, &c, &id, Some((false, e.message()))).await,
    }
}

pub(super) async fn delete_group(
    State(state): State<AppState>,
    c: Console,
    ConnectInfo(addr): Addr,
    Path(id): Path<String>,
    Form(f): Form<Fields>,
) -> Response {
    if let Some(r) = c.refuse_form(&f, true) {
        return r;
    }
    let deleted = match parse_id(&id, "group id") {
        Ok(group) => admin::delete_group(&state, &c.actor(addr), &group).await,
        Err(e) => Err(e),
    };
    match deleted {
        Ok(_) => {
            render_groups(&state, &c, Some((true, "Security group deleted; its members use the network defaults.")))
                .await
        }
        Err(e) => render_groups(&state, &c, Some((false, e.message()))).await,
    }
}

async fn render_settings(state: &AppState, c: &Console, flash: Option<(bool, &str)>) -> Response {
    let s = match admin::settings(state, &c.caller).await {
        Ok(s) => s,
        Err(e) => return api_error(e),
    };
    let body = format!(
        "<p class=\"muted\">These apply to users in no security group.</p><form method=\"post\" action=\"/admin/settings\">{}{}<p><button class=\"primary\" type=\"submit\">Save</button></p></form>",
        c.csrf_field(),
        settings_fields(&s)
    );
    c.page("settings", "Network settings", flash, &body)
}

pub(super) async fn settings(State(state): State<AppState>, c: Console) -> Response {
    render_settings(&state, &c, None).await
}

pub(super) async fn save_settings(
    State(state): State<AppState>,
    c: Console,
    ConnectInfo(addr): Addr,
    Form(f): Form<Fields>,
) -> Response {
    if let Some(r) = c.refuse_form(&f, true) {
        return r;
    }
    let s = match settings_from_form(&f) {
        Ok(s) => s,
        Err(e) => return render_settings(&state, &c, Some((false, &e))).await,
    };
    match admin::put_settings(&state, &c.actor(addr), s).await {
        Ok(_) => render_settings(&state, &c, Some((true, "Network settings saved."))).await,
        Err(e) => render_settings(&state, &c, Some((false, e.message()))).await,
    }
}

#[derive(serde::Deserialize)]
pub(super) struct AuditFilter {
    actor: Option<String>,
    action: Option<String>,
    from: Option<String>,
    until: Option<String>,
}

fn parse_day(s: &Option<String>) -> Option<i64> {
    strongroom_wire::time::parse_date(s.as_deref()?)
}

impl AuditFilter {
    fn query(&self) -> AuditQuery {
        let nonempty = |s: &Option<String>| s.clone().filter(|v| !v.trim().is_empty());
        AuditQuery {
            from: parse_day(&self.from),
            until: parse_day(&self.until).map(|t| t + 86_400_000),
            actor: nonempty(&self.actor),
            action: nonempty(&self.action),
        }
    }
    fn link(&self) -> String {
        let pairs = [("actor", &self.actor), ("action", &self.action), ("from", &self.from), ("until", &self.until)];
        pairs
            .iter()
            .filter_map(|(k, v)| {
                v.as_ref().filter(|v| !v.is_empty()).map(|v| format!("{k}={}", strongroom_wire::time::urlencode(v)))
            })
            .collect::<Vec<_>>()
            .join("&")
    }
}

pub(super) async fn audit(State(state): State<AppState>, c: Console, Query(q): Query<AuditFilter>) -> Response {
    let entries = match admin::audit_log(&state, &c.caller, &q.query()).await {
        Ok(e) => e,
        Err(e) => return api_error(e),
    };
    let status = match admin::audit_log(&state, &c.caller, &AuditQuery::default()).await {
        Ok(all) => match strongroom_wire::verify_audit_chain(&all) {
            Ok(()) => {
                "<div class=\"flash ok\" role=\"status\">Hash chain verified: the log is intact.</div>".to_owned()
            }
            Err(p) => {
                format!("<div class=\"flash bad\" role=\"alert\">The audit log was tampered with: {}</div>", esc(&p))
            }
        },
        Err(_) => String::new(),
    };
    let rows: String = entries
        .iter()
        .rev()
        .map(|e| {
            format!(
                "<tr><td>{}</td><td class=\"when\">{}</td><td>{}</td><td><strong>{}</strong></td><td>{}</td><td>{}</td><td class=\"mono\">{}</td></tr>",
                e.seq,
                when(e.at),
                esc(&e.actor),
                esc(&e.action),
                esc(&e.target),
                esc(&e.source),
                esc(&e.details)
            )
        })
        .collect();
    let v = |o: &Option<String>| esc(o.as_deref().unwrap_or(""));
    let body = format!(
        "{status}<form method=\"get\" action=\"/admin/audit\" class=\"row\" role=\"search\">\
         <div><label for=\"actor\">Actor</label><input id=\"actor\" name=\"actor\" type=\"text\" value=\"{actor}\"></div>\
         <div><label for=\"action\">Action (prefix)</label><input id=\"action\" name=\"action\" type=\"text\" value=\"{action}\" placeholder=\"user.\"></div>\
         <div><label for=\"from\">From (YYYY-MM-DD)</label><input id=\"from\" name=\"from\" type=\"text\" value=\"{from}\"></div>\
         <div><label for=\"until\">Until (YYYY-MM-DD)</label><input id=\"until\" name=\"until\" type=\"text\" value=\"{until}\"></div>\
         <div><button type=\"submit\">Filter</button> <a class=\"button\" href=\"/admin/audit/export?{link}\">Export JSON Lines</a></div></form>\
         <h2>{n} entries</h2><table><thead><tr><th scope=\"col\">#</th><th scope=\"col\">When</th><th scope=\"col\">Actor</th><th scope=\"col\">Action</th><th scope=\"col\">Target</th><th scope=\"col\">From</th><th scope=\"col\">Details</th></tr></thead><tbody>{rows}</tbody></table>",
        actor = v(&q.actor),
        action = v(&q.action),
        from = v(&q.from),
        until = v(&q.until),
        link = esc(&q.link()),
        n = entries.len(),
    );
    c.page("audit", "Audit log", None, &body)
}

pub(super) async fn audit_export(State(state): State<AppState>, c: Console, Query(q): Query<AuditFilter>) -> Response {
    match admin::audit_log(&state, &c.caller, &q.query()).await {
        Ok(entries) => {
            let mut body = String::new();
            for e in &entries {
                body.push_str(&serde_json::to_string(e).unwrap_or_default());
                body.push('\n');
            }
            (
                [
                    (header::CONTENT_TYPE, "application/x-ndjson"),
                    (header::CONTENT_DISPOSITION, "attachment; filename=\"strongroom-audit.jsonl\""),
                ],
                body,
            )
                .into_response()
        }
        Err(e) => api_error(e),
    }
}

/// Where invite links point: the code stays in the fragment (never sent to any server).
pub(super) async fn join() -> Response {
    html_response(
        StatusCode::OK,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Join · Strongroom</title>\
         <link rel=\"stylesheet\" href=\"/admin/static/console.css\"></head><body><main class=\"login\"><h1>You are invited to Strongroom</h1>\
         <p>Your invite code is the part of this page's address after <code>#</code> (it starts with <code>sr1-</code>).</p>\
         <p>Install Strongroom, then run:</p><p><code>strongroom enrol --invite CODE --username YOUR-NAME</code></p></main></body></html>"
            .into(),
    )
}

/// The first 8 hex digits of an id, as the console shows it.
fn short_id(hex: &str) -> &str {
    hex.get(..8).unwrap_or(hex)
}
