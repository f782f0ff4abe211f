//! A minimal W3C WebDriver client for Debian's headless Chromium
//! (`chromium` and `chromium-driver`): the console and app browser tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};

pub const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A minimal W3C WebDriver client.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    driver: Child,
    shots: PathBuf,
    n: u32,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    /// Headless Chromium under chromedriver; screenshots go to
    /// `$CARGO_TARGET_TMPDIR/<shots>/`; `profile` is Chromium's user data
    /// directory when given (to look into it afterwards).
    pub async fn start(shots: &str, profile: Option<&Path>) -> Option<Self> {
        let driver_bin =
            ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"].into_iter().find(|p| Path::new(p).exists());
        let Some(driver_bin) = driver_bin else {
            assert!(
                std::env::var_os("STRONGROOM_REQUIRE_BROWSER").is_none(),
                "chromium-driver is required here (apt-get install chromium chromium-driver)"
            );
            eprintln!("SKIPPED: browser tests need Debian's chromium and chromium-driver (.ci/run installs them)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let driver = Command::new(driver_bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let http = reqwest::Client::new();
        let base = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if http.get(format!("{base}/status")).send().await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut args = vec![
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1280,1000".to_owned(),
        ];
        if let Some(p) = profile {
            args.push(format!("--user-data-dir={}", p.display()));
        }
        let caps = json!({"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": args
        }}}});
        let r: Value = http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap();
        let id = r["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {r}")).to_owned();
        let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(shots);
        std::fs::create_dir_all(&shots).unwrap();
        Some(Self { http, base: format!("{base}/session/{id}"), driver, shots, n: 0 })
    }

    pub async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        if v["value"].get("error").is_some() {
            panic!("WebDriver {path}: {}", v["value"]);
        }
        v["value"].clone()
    }

    /// Ends the WebDriver session, which closes Chromium (killing only the
    /// driver would leave the browser running).
    pub async fn quit(&self) {
        let _ = self.http.delete(&self.base).send().await;
    }

    pub async fn go(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url}))).await;
    }

    pub async fn find(&self, css: &str) -> String {
        let v = self.cmd(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css}))).await;
        v[ELEMENT].as_str().unwrap().to_owned()
    }

    pub async fn find_all(&self, css: &str) -> Vec<String> {
        let v =
            self.cmd(reqwest::Method::POST, "/elements", Some(json!({"using": "css selector", "value": css}))).await;
        v.as_array().unwrap().iter().map(|e| e[ELEMENT].as_str().unwrap().to_owned()).collect()
    }

    pub async fn typ(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{e}/clear"), Some(json!({}))).await;
        self.cmd(reqwest::Method::POST, &format!("/element/{e}/value"), Some(json!({"text": text}))).await;
    }

    /// Clicks the element `css` finds; again if the page re-rendered it
    /// between finding and clicking (a live page does).
    pub async fn click(&self, css: &str) {
        for _ in 0..20 {
            let e = self.find(css).await;
            let v: Value = self
                .http
                .post(format!("{}/element/{e}/click", self.base))
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            match v["value"].get("error").and_then(|e| e.as_str()) {
                None => return,
                Some("stale element reference") => tokio::time::sleep(Duration::from_millis(100)).await,
                Some(_) => panic!("WebDriver click {css}: {}", v["value"]),
            }
        }
        panic!("{css} kept going stale");
    }

    pub async fn click_el(&self, e: &str) {
        self.cmd(reqwest::Method::POST, &format!("/element/{e}/click"), Some(json!({}))).await;
    }

    pub async fn text(&self, e: &str) -> String {
        self.cmd(reqwest::Method::GET, &format!("/element/{e}/text"), None).await.as_str().unwrap().to_owned()
    }

    pub async fn source(&self) -> String {
        self.cmd(reqwest::Method::GET, "/source", None).await.as_str().unwrap().to_owned()
    }

    /// Waits (up to 10 s) for the page to contain `text`: form posts navigate asynchronously.
    pub async fn wait_for(&self, text: &str) -> String {
        for _ in 0..100 {
            let src = self.source().await;
            if src.contains(text) {
                return src;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the page never showed {text:?}: {}", self.source().await);
    }

    pub async fn heading(&self) -> String {
        let h = self.find("h1").await;
        self.text(&h).await
    }

    pub async fn shot(&mut self, name: &str) {
        let png = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let bytes = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        assert!(bytes.starts_with(b"\x89PNG"));
        self.n += 1;
        std::fs::write(self.shots.join(format!("{:02}-{name}.png", self.n)), bytes).unwrap();
    }

    /// Opens a new tab and switches to it; its handle.
    pub async fn new_tab(&self) -> String {
        let v = self.cmd(reqwest::Method::POST, "/window/new", Some(json!({"type": "tab"}))).await;
        let handle = v["handle"].as_str().unwrap().to_owned();
        self.switch_to(&handle).await;
        handle
    }

    /// The current tab's handle.
    pub async fn tab(&self) -> String {
        self.cmd(reqwest::Method::GET, "/window", None).await.as_str().unwrap().to_owned()
    }

    /// Switches to a tab.
    pub async fn switch_to(&self, handle: &str) {
        self.cmd(reqwest::Method::POST, "/window", Some(json!({"handle": handle}))).await;
    }

    pub async fn cookie(&self, name: &str) -> Value {
        self.cmd(reqwest::Method::GET, &format!("/cookie/{name}"), None).await
    }
}
