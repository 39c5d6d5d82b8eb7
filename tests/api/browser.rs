//! A minimal W3C WebDriver client for the console tests: Debian's `chromedriver` driving
//! headless Chromium with a fresh profile. Only what the tests use; JSON over HTTP.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// WebDriver key codes.
pub const TAB: &str = "\u{E004}";
pub const ENTER: &str = "\u{E007}";
pub const ESCAPE: &str = "\u{E00C}";
pub const ARROW_RIGHT: &str = "\u{E014}";

/// Why the browser tests cannot run here, if they cannot.
pub fn unavailable() -> Option<String> {
    for bin in [CHROMEDRIVER, CHROMIUM] {
        if !Path::new(bin).exists() {
            return Some(format!(
                "{bin} is not installed (apt-get install chromium chromium-driver)"
            ));
        }
    }
    None
}

/// Where screenshots go: `target/console-screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

#[derive(Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver on a free port and a headless Chromium session at `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Browser {
        let port = crate::helpers::free_port();
        // Its own process group, so Drop can stop Chromium with it even after a panic.
        let driver = Command::new(CHROMEDRIVER)
            .process_group(0)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = http.get(format!("{base}/status")).send().await
                && r.status() == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={width},{height}"),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let resp: Value = http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = resp["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {resp}"))
            .to_owned();
        Browser {
            driver,
            base,
            session,
            http,
            _profile: profile,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp: Value = req.send().await.unwrap().json().await.unwrap();
        resp["value"].clone()
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.post("/window/rect", json!({"width": width, "height": height}))
            .await;
    }

    /// The first element matching `css`, if any (no waiting).
    pub async fn find_now(&self, css: &str) -> Option<Element> {
        let v = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        v[ELEMENT].as_str().map(|id| Element(id.to_owned()))
    }

    /// Waits up to 15 s for an element matching `css`.
    pub async fn find(&self, css: &str) -> Element {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(e) = self.find_now(css).await {
                return e;
            }
            if Instant::now() > deadline {
                let text = self.text_of("body").await;
                panic!("no element {css:?} on the page; it shows:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until no element matches `css`.
    pub async fn gone(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.find_now(css).await.is_some() {
            assert!(Instant::now() < deadline, "{css:?} is still on the page");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn click(&self, css: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{}/click", e.0), json!({}))
            .await;
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        self.post(&format!("/element/{}/value", e.0), json!({"text": text}))
            .await;
    }

    pub async fn text(&self, e: &Element) -> String {
        self.get(&format!("/element/{}/text", e.0))
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The visible text of the first element matching `css` (empty when there is none; no waiting).
    pub async fn text_of(&self, css: &str) -> String {
        let Some(e) = self.find_now(css).await else {
            return String::new();
        };
        self.text(&e).await
    }

    pub async fn property(&self, css: &str, name: &str) -> Value {
        let e = self.find(css).await;
        self.get(&format!("/element/{}/property/{name}", e.0)).await
    }

    /// Waits up to 15 s until the text of `css` satisfies `ok`; returns it.
    pub async fn wait_text(&self, css: &str, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let t = self.text_of(css).await;
            if ok(&t) {
                return t;
            }
            assert!(
                Instant::now() < deadline,
                "{css:?} never showed what we waited for; last: {t:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Runs `script` (an async function body: `arguments[0]` is the callback) in the page.
    pub async fn run_async(&self, script: &str, args: Value) -> Value {
        self.post("/execute/async", json!({"script": script, "args": args}))
            .await
    }

    pub async fn run(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({"script": script, "args": args}))
            .await
    }

    /// Presses and releases `key` (a WebDriver key code such as `\u{E004}` for Tab) on
    /// whatever has the focus, as a keyboard would.
    pub async fn press(&self, key: &str) {
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
                {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]}),
        )
        .await;
    }

    /// Presses Tab until the focused element matches `css` (at most `max` times); whether
    /// it got there.
    pub async fn tab_to(&self, css: &str, max: usize) -> bool {
        for _ in 0..max {
            self.press(TAB).await;
            let there = self
                .run(
                    "return document.activeElement.matches(arguments[0])",
                    json!([css]),
                )
                .await;
            if there == Value::Bool(true) {
                return true;
            }
        }
        false
    }

    /// Whether the focused element shows a focus ring (an outline that is not `none`).
    pub async fn focus_visible(&self) -> bool {
        self.run(
            "const s = getComputedStyle(document.activeElement); return s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) > 0",
            json!([]),
        )
        .await
            == Value::Bool(true)
    }

    /// The browser log's errors since the last call (JavaScript errors, CSP violations,
    /// failed loads), as `source: message` lines.
    pub async fn console_errors(&self) -> Vec<String> {
        let entries = self.post("/se/log", json!({"type": "browser"})).await;
        let entries = entries
            .as_array()
            .unwrap_or_else(|| panic!("chromedriver gave no browser log: {entries}"));
        entries
            .iter()
            .filter(|e| e["level"] == "SEVERE")
            .map(|e| {
                format!(
                    "{}: {}",
                    e["source"].as_str().unwrap_or("?"),
                    e["message"].as_str().unwrap_or("?")
                )
            })
            .collect()
    }

    /// Fails on any error in the browser log except a failed load in `expected` (each a
    /// `path status` pair, e.g. `/api/v1/session 401` for the signed-out probe).
    pub async fn assert_clean_console(&self, at: &str, expected: &[(&str, u16)]) {
        let errors: Vec<String> = self
            .console_errors()
            .await
            .into_iter()
            .filter(|e| {
                !expected.iter().any(|(path, status)| {
                    e.starts_with("network: ")
                        && e.contains(&format!("{path} "))
                        && e.contains(&format!("status of {status} "))
                })
            })
            .collect();
        assert!(
            errors.is_empty(),
            "{at}: the browser logged errors:\n{}",
            errors.join("\n")
        );
    }

    /// Runs axe-core (`source`, the text of `axe.min.js`) on the page against WCAG 2.1 A
    /// and AA; returns each violation as `rule (impact): help — targets`.
    pub async fn accessibility_violations(&self, source: &str) -> Vec<String> {
        self.run(&format!("{source}\n;return true;"), json!([]))
            .await;
        let result = self
            .run_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
                   .then(r => done(r.violations.map(v => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 5).map(n => n.target.join(' ')).join(', ')}`)),
                         e => done(['axe failed: ' + e]));",
                json!([]),
            )
            .await;
        result
            .as_array()
            .unwrap_or_else(|| panic!("axe gave no result: {result}"))
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Saves a PNG of the viewport to `target/console-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().unwrap())
            .unwrap();
        let path = screenshot_dir().join(format!("{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }

    pub async fn quit(self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.driver.id())])
            .status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
