//! The web console in a real headless Chromium (Debian's `chromium` and
//! `chromium-driver`, driven over WebDriver), against the real server: log
//! in, invite someone and enrol them with the CLI, turn files off in their
//! security group and see the CLI's file send refused, suspend them and see
//! their next request refused, and find all of it in the audit log.
//! Screenshots of each page go to `$CARGO_TARGET_TMPDIR/console-screenshots/`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::process::Command;

use common::browser::Browser;
use common::*;
use serde_json::Value;

fn person(profile: &Path, pass: &str, args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .arg("--profile")
        .arg(profile)
        .env("STRONGROOM_PASSPHRASE", pass)
        .env("STRONGROOM_PASSWORD", PASSWORD)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let Some(mut b) = Browser::start("console-screenshots", None).await else { return };
    let dir = temp_dir("console");
    let server = ServerProc::start(&dir.join("data"), &[]);
    let (network, admin_invite) = create_network(&server, &dir, "acme");
    let alice = dir.join("alice");
    let out =
        person(&alice, "alice passphrase", &["enrol", "--json", "--invite", &admin_invite, "--username", "alice"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let url = &server.url;

    // Not logged in: sent to the login page, which has a strict CSP and no scripts.
    b.go(&format!("{url}/admin/users")).await;
    assert_eq!(b.heading().await, "Strongroom console");
    let page = reqwest::get(format!("{url}/admin/login")).await.unwrap();
    let csp = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'") && !csp.contains("script-src"), "{csp}");
    assert!(!page.text().await.unwrap().contains("<script"));
    b.shot("login").await;

    // Wrong password, then right.
    b.typ("#network", &network.to_string()).await;
    b.typ("#username", "alice").await;
    b.typ("#password", "not the password").await;
    b.click("button[type=submit]").await;
    b.wait_for("Wrong network, username or password").await;
    b.typ("#network", &network.to_string()).await;
    b.typ("#username", "alice").await;
    b.typ("#password", PASSWORD).await;
    b.click("button[type=submit]").await;
    b.wait_for("<h1>Dashboard</h1>").await;
    let cookie = b.cookie("sr_console").await;
    assert_eq!(cookie["httpOnly"], true);
    assert_eq!(cookie["secure"], true);
    assert_eq!(cookie["sameSite"], "Strict");
    b.shot("dashboard").await;

    // Invite Bob: the page shows the code and link; Bob enrols with the CLI.
    b.go(&format!("{url}/admin/users")).await;
    b.typ("#labels", "bob").await;
    b.click("form[action='/admin/users/invite'] button").await;
    b.wait_for("Invites created").await;
    let code_el = b.find(".invite-code").await;
    let code = b.text(&code_el).await;
    assert!(code.starts_with("sr1-"), "{code}");
    assert!(b.source().await.contains("/join#sr1-"));
    b.shot("invite").await;
    let bob = dir.join("bob");
    let out = person(&bob, "bob passphrase", &["enrol", "--json", "--invite", &code, "--username", "bob"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bob_id = serde_json::from_slice::<Value>(&out.stdout).unwrap()["user_id"].as_str().unwrap().to_owned();

    // A security group without files, with a validation error first.
    b.go(&format!("{url}/admin/groups")).await;
    b.typ("#name", "nofiles").await;
    b.typ("#password_min_length", "3").await;
    b.click("form[action='/admin/groups'] button.primary").await;
    b.wait_for("password_min_length is 8 to 1024").await; // validation errors are shown
    b.typ("#name", "nofiles").await;
    b.click("#files_enabled").await; // on by default: now off
    b.click("form[action='/admin/groups'] button.primary").await;
    b.wait_for("Security group created.").await;
    b.shot("groups").await;

    // Put Bob in it; his CLI file send is refused.
    b.go(&format!("{url}/admin/users")).await;
    for opt in b.find_all(&format!("#g-{bob_id} option")).await {
        if b.text(&opt).await == "nofiles" {
            b.click_el(&opt).await;
        }
    }
    b.click(&format!("form[action='/admin/users/{bob_id}/group'] button")).await;
    let src = b.wait_for("Security group set.").await;
    assert!(src.contains("<strong>alice</strong>") && src.contains("<td>admin</td>"), "roles are shown");
    b.shot("users").await;
    let doc = dir.join("memo.txt");
    std::fs::write(&doc, b"memo").unwrap();
    let out = person(&bob, "bob passphrase", &["file", "send", "--to", "alice", doc.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not allow sending files"));

    // Suspend Bob: his next request is refused.
    b.click(&format!("form[action='/admin/users/{bob_id}/suspend'] button")).await;
    b.wait_for("User suspended").await;
    let out = person(&bob, "bob passphrase", &["read"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("suspended"), "{}", String::from_utf8_lossy(&out.stderr));

    // The audit log shows all of it, chained and intact.
    b.go(&format!("{url}/admin/audit")).await;
    let src = b.source().await;
    for action in ["console.login", "invite.create", "group.create", "user.group", "user.suspend"] {
        assert!(src.contains(action), "{action} missing from the audit page");
    }
    assert!(src.contains("Hash chain verified"));
    b.shot("audit").await;
    b.typ("#action", "user.").await;
    b.click("form[action='/admin/audit'] button").await;
    let src = b.wait_for("value=\"user.\"").await;
    assert!(src.contains("user.suspend") && !src.contains("group.create"), "filters apply");
    b.go(&format!("{url}/admin/settings")).await;
    b.shot("settings").await;

    // CSRF: the session cookie alone cannot drive a form.
    let value = cookie["value"].as_str().unwrap();
    let forged = reqwest::Client::new()
        .post(format!("{url}/admin/users/{bob_id}/unsuspend"))
        .header("cookie", format!("sr_console={value}"))
        .form(&[("csrf", "guess")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    // Escaping: a hostile group name is shown as text, never as markup.
    b.go(&format!("{url}/admin/groups")).await;
    b.typ("#name", "<img src=x onerror=alert(1)>").await;
    b.click("form[action='/admin/groups'] button.primary").await;
    b.wait_for("&lt;img src=x onerror=alert(1)&gt;").await;

    // Log out ends the session.
    b.click("header form button").await;
    b.wait_for("<h1>Strongroom console</h1>").await;
    let after = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = after
        .get(format!("{url}/admin/dashboard"))
        .header("cookie", format!("sr_console={value}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "the old cookie no longer works");
    b.quit().await;
}
