// The Strongroom app's page. Everything it shows comes from this process's
// local API; message text is always set as text, never as markup.
"use strict";

const state = { current: null, me: null, refreshing: false, again: false };
const $ = (id) => document.getElementById(id);

// The session secret arrives once in the fragment; it is kept for this tab
// (sessionStorage is per port, unlike the cookie) and sent on every call.
if (location.hash.startsWith("#t=")) {
  sessionStorage.setItem("sr_t", location.hash.slice(3));
  history.replaceState(null, "", "/");
}
const secret = () => sessionStorage.getItem("sr_t");

async function api(method, path, body) {
  const headers = { "Content-Type": "application/json" };
  if (secret()) headers["X-CSRF-Token"] = secret();
  const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: "same-origin" });
  let data = null;
  try { data = await r.json(); } catch (_) { data = null; }
  if (!r.ok) { const e = new Error((data && data.message) || r.statusText); e.status = r.status; throw e; }
  return data;
}

// The code itself, or the code inside an invite link someone pasted.
function inviteCode() {
  const v = $("invite").value.trim();
  const m = v.match(/sr1-[A-Za-z0-9_-]+/);
  return m ? m[0] : v;
}

function show(id) {
  for (const s of ["signed-out", "enrol", "locked", "chat"]) $(s).hidden = s !== id;
}

function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function day(ms) { return new Date(ms).toLocaleDateString(undefined, { weekday: "long", year: "numeric", month: "long", day: "numeric" }); }
function time(ms) { return new Date(ms).toLocaleTimeString(undefined, { hour: "2-digit", minute: "2-digit" }); }

async function start() {
  let s;
  if (!secret()) { show("signed-out"); return; }
  try { s = await api("GET", "/api/v1/session"); } catch (e) { show("signed-out"); return; }
  if (s.link_error) { $("enrol-error").textContent = s.link_error; }
  if (s.link_code) {
    show("enrol"); $("link-box").open = true; $("link-code").textContent = s.link_code; $("link-wait").hidden = false;
    setTimeout(start, 1000);
    return;
  }
  if (!s.enrolled && !s.unlocked) { show("enrol"); $("invite").focus(); return; }
  if (!s.unlocked) { show("locked"); $("passphrase").focus(); return; }
  state.me = s.username;
  $("me").textContent = s.username ? "— " + s.username : "";
  $("retention").hidden = s.retention !== true;
  show("chat");
  await refresh();
  listen();
  // Timers run out without an event: look again every few seconds.
  setInterval(refresh, 3000);
}

$("unlock-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("unlock-error").textContent = "";
  $("unlock").disabled = true;
  try {
    await api("POST", "/api/v1/unlock", { passphrase: $("passphrase").value });
    $("passphrase").value = "";
    await start();
  } catch (e) {
    $("unlock-error").textContent = e.message;
  } finally {
    $("unlock").disabled = false;
  }
});

$("invite-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("enrol-error").textContent = "";
  try {
    const n = await api("POST", "/api/v1/invite", { invite: inviteCode() });
    $("network-name").textContent = n.network;
    $("network-fingerprint").textContent = n.fingerprint;
    $("network").hidden = false;
    $("enrol-username").focus();
  } catch (e) { $("network").hidden = true; $("enrol-error").textContent = e.message; }
});

$("enrol-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("enrol-error").textContent = "";
  $("enrol-submit").disabled = true;
  try {
    await api("POST", "/api/v1/enrol", {
      invite: inviteCode(), username: $("enrol-username").value,
      passphrase: $("enrol-passphrase").value, password: $("enrol-password").value,
    });
    $("enrol-passphrase").value = ""; $("enrol-password").value = "";
    await start();
  } catch (e) { $("enrol-error").textContent = e.message; }
  finally { $("enrol-submit").disabled = false; }
});

$("link-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  $("enrol-error").textContent = "";
  $("link-submit").disabled = true;
  try {
    await api("POST", "/api/v1/link", {
      server: $("link-server").value, network: $("link-network").value, username: $("link-username").value,
      password: $("link-password").value, passphrase: $("link-passphrase").value,
    });
    $("link-password").value = ""; $("link-passphrase").value = "";
    await start();
  } catch (e) { $("enrol-error").textContent = e.message; }
  finally { $("link-submit").disabled = false; }
});

$("new-chat").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  try {
    const r = await api("POST", "/api/v1/direct", { username: $("new-chat-user").value });
    $("new-chat-user").value = "";
    state.current = r.conversation;
    await refresh();
  } catch (e) { $("send-error").textContent = e.message; }
});

$("composer").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("text").value;
  if (!text.trim() || !state.current) return;
  $("send-error").textContent = "";
  try {
    await api("POST", "/api/v1/conversations/" + state.current + "/messages", { text, burn_on_read_secs: Number($("burn").value) });
    $("text").value = "";
    await refresh();
  } catch (e) { $("send-error").textContent = e.message; }
});

async function refresh() {
  // One refresh at a time; events during one ask for another.
  if (state.refreshing) { state.again = true; return; }
  state.refreshing = true;
  try {
    do {
      state.again = false;
      let list = await api("GET", "/api/v1/conversations");
      if (state.current) {
        await renderConversation(list.conversations.find((c) => c.id === state.current));
        // Read now: the list shows it so.
        list = await api("GET", "/api/v1/conversations");
      }
      renderList(list.conversations);
    } while (state.again);
  } catch (e) {
    $("relay-state").textContent = e.message;
  } finally {
    state.refreshing = false;
  }
}

function renderList(conversations) {
  const ul = $("conversations");
  ul.replaceChildren();
  for (const c of conversations) {
    const li = el("li", c.id === state.current ? "active" : "");
    li.dataset.id = c.id;
    li.append(el("strong", "", c.title));
    if (c.guests > 0) li.append(" ", el("span", "badge guest", c.guests === 1 ? "guest" : c.guests + " guests"));
    if (c.unread > 0) li.append(el("span", "unread", String(c.unread)));
    li.append(el("div", "last", c.last_text || ""));
    if (c.last_at) li.title = day(c.last_at) + " " + time(c.last_at);
    li.addEventListener("click", () => { state.current = c.id; refresh(); });
    ul.append(li);
  }
}

async function renderConversation(c) {
  $("title").textContent = c ? c.title : "";
  $("composer").hidden = !c;
  if (!c) return;
  const r = await api("GET", "/api/v1/conversations/" + c.id + "/messages");
  const ol = $("timeline");
  ol.replaceChildren();
  let lastDay = null;
  let top = 0;
  for (const m of r.messages) {
    const d = day(m.at);
    if (d !== lastDay) { ol.append(el("li", "day", d)); lastDay = d; }
    const li = el("li", m.mine ? "mine" : "");
    li.dataset.id = m.id;
    const meta = el("div", "meta", (m.mine ? "You" : (m.sender_name || m.sender).replace(/ \(guest(, expired)?\)$/, "")));
    if (!m.mine && m.sender_guest) meta.append(" ", el("span", "badge guest", "guest"));
    meta.append(" · " + time(m.at));
    li.append(meta);
    li.append(el("div", "bubble", m.text));
    let status = "";
    if (m.mine) status = m.read_by > 0 ? "Read" : m.delivered ? "Delivered" : "Queued: sends when the relay is back";
    if (m.edited) status = (status ? status + " · " : "") + "edited";
    if (status) li.append(el("div", "meta status", status));
    ol.append(li);
    top = Math.max(top, m.seq);
  }
  ol.scrollTop = ol.scrollHeight;
  // Only what a person can see counts as shown: burn clocks and read
  // receipts wait while the tab is hidden.
  if (document.visibilityState === "visible" && r.messages.length > 0) {
    try {
      await api("POST", "/api/v1/conversations/" + c.id + "/displayed", { ids: r.messages.map((m) => m.id) });
      if (top > 0) await api("POST", "/api/v1/conversations/" + c.id + "/read", { up_to: top });
    } catch (_) { /* shown next refresh */ }
  }
}

async function listen() {
  let ticket;
  try { ticket = (await api("POST", "/api/v1/events/ticket")).ticket; } catch (_) { setTimeout(listen, 2000); return; }
  const ws = new WebSocket("ws://" + location.host + "/api/v1/events/ws?ticket=" + encodeURIComponent(ticket));
  ws.onmessage = () => refresh();
  ws.onopen = () => { $("relay-state").textContent = ""; };
  ws.onclose = () => { $("relay-state").textContent = "reconnecting…"; setTimeout(listen, 2000); };
}

// Coming back to the tab shows (and so marks shown) what arrived meanwhile.
document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible" && state.me) refresh(); });

start();
