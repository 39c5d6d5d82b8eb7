//! `TestApp`: spawns InstaGen in-process on 127.0.0.1:0 in front of a `mock-upstream`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use instagen::admin::Actor;
use instagen::config::Config;
use instagen::keys::KeyHasher;
use instagen::store::KeySpec;
use instagen::store::Store;
use instagen::usage::UsageRecord;
use mock_upstream::MockUpstream;
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const TEST_SECRET: &str = "test-secret-test-secret-test-secret-0123456789";
pub const ADMIN_TOKEN: &str = "admin-token-admin-token-admin-token-0123456789";
pub const MODEL: &str = "test-model";
pub const UPSTREAM_MODEL: &str = "mock-model";

pub struct TestApp {
    pub addr: SocketAddr,
    pub mock: MockUpstream,
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub hasher: KeyHasher,
    pub account_id: String,
    pub key: String,
    pub key_id: String,
    pub client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

/// A config pointing at `mock` with `dir` as data dir, as the tests use it.
pub fn test_config(dir: &Path, mock_base: &str) -> Config {
    Config::from_parts(&config_toml(dir, mock_base, None, "info"), "test", &[]).unwrap()
}

/// The one config template of the tests: data in `dir`, the test model served by `mock_base`,
/// and (for server processes) a listen port and a log level.
fn config_toml(dir: &Path, mock_base: &str, port: Option<u16>, log_level: &str) -> String {
    let listen = port.map_or(String::new(), |p| format!("listen = \"127.0.0.1:{p}\"\n"));
    format!(
        r#"
[server]
{listen}data_dir = "{dir}"
secret = "{TEST_SECRET}"
[store]
url = "sqlite://{dir}/instagen.db"
[log]
level = "{log_level}"
[accounts]
admin_token = "{ADMIN_TOKEN}"
[[providers]]
name = "mock"
kind = "openai"
base_url = "{mock_base}"
[[models]]
id = "{MODEL}"
provider = "mock"
upstream_model = "{UPSTREAM_MODEL}"
input_usd_per_mtok = "0.20"
output_usd_per_mtok = "0.30"
cached_input_usd_per_mtok = "0.10"
"#,
        dir = dir.display()
    )
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> TestApp {
        let mock = MockUpstream::start().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path(), &mock.base_url());
        configure(&mut config);
        let (store, hasher) = instagen::open_store(&config).await.unwrap();
        let account = instagen::admin::create_account(&store, &Actor::cli(), "acme")
            .await
            .unwrap();
        let key = instagen::admin::create_key(
            &store,
            &hasher,
            &Actor::cli(),
            &account.id,
            key_spec("default"),
        )
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(instagen::run(config, listener, async move {
            let _ = rx.await;
        }));
        let app = TestApp {
            addr,
            mock,
            dir,
            store,
            hasher,
            account_id: account.id,
            key: key.secret.expose().to_owned(),
            key_id: key.id,
            client: reqwest::Client::new(),
            shutdown: Some(tx),
            handle: Some(handle),
        };
        app.wait_ready().await;
        app
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(r) = self.client.get(self.url("/healthz")).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("server did not become healthy");
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }

    /// POSTs JSON to `path` with the test key.
    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(&self.key)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn chat(&self, body: &Value) -> reqwest::Response {
        self.post("/v1/chat/completions", body).await
    }

    /// Waits until at least `n` usage records are stored, then returns them all.
    pub async fn records(&self, n: usize) -> Vec<UsageRecord> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let rows = self
                .store
                .usage_records(&self.account_id, 0, i64::MAX)
                .await
                .unwrap();
            if rows.len() >= n || Instant::now() > deadline {
                assert!(
                    rows.len() >= n,
                    "expected {n} usage records, found {}",
                    rows.len()
                );
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Graceful shutdown; returns when `run` has drained and returned.
    pub async fn shutdown(mut self) -> (tempfile::TempDir, Store) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
        (self.dir, self.store)
    }
}

/// A chat request body for the test model.
pub fn chat_body(content: &str) -> Value {
    serde_json::json!({"model": MODEL, "messages": [{"role": "user", "content": content}]})
}

/// Reads an SSE response to its end, returning each `data:` payload.
pub async fn sse_events(resp: reqwest::Response) -> Vec<String> {
    let text = resp.text().await.unwrap_or_default();
    text.split("\n\n")
        .filter_map(|e| e.strip_prefix("data: "))
        .map(str::to_owned)
        .collect()
}

/// Asserts an OpenAI-shaped error body and returns it.
pub async fn openai_error(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    let body: Value = resp.json().await.unwrap();
    let err = &body["error"];
    assert!(err["message"].is_string(), "{body}");
    assert!(err["type"].is_string(), "{body}");
    assert!(
        err.get("param").is_some() && err.get("code").is_some(),
        "{body}"
    );
    body
}

/// A free local port (bound then released) for subprocess servers.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Exact cost at the test prices (0.20 in, 0.30 out, 0.10 cached per Mtok), rounded up.
pub fn test_cost(input: u64, cached: u64, output: u64) -> i64 {
    let n = (input - cached) as i128 * 200_000_000
        + cached as i128 * 100_000_000
        + output as i128 * 300_000_000;
    ((n + 999_999) / 1_000_000) as i64
}

/// `instagen serve` as a child process (for kill -9, SIGTERM and log-capture tests).
pub struct ServerProcess {
    pub child: std::process::Child,
    pub base: String,
}

impl ServerProcess {
    /// Starts `instagen --config <config> serve` with stdout and stderr appended to `log`.
    pub async fn start(config: &Path, log: &Path) -> ServerProcess {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let err = out.try_clone().unwrap();
        let text = std::fs::read_to_string(config).unwrap();
        let listen = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("listen = "))
            .map(|v| v.trim_matches('"').to_owned())
            .expect("config names server.listen");
        // Temporary files, if anything wrote one, land beside the log where tests search.
        let tmp = log.parent().unwrap().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_instagen"))
            .env("TMPDIR", &tmp)
            .arg("--config")
            .arg(config)
            .arg("serve")
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        let server = ServerProcess {
            child,
            base: format!("http://{listen}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", server.base)).send().await
                && r.status() == 200
            {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "server process did not start; see {}",
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(mut self) {
        let pid = self.child.id().to_string();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(ok.success());
        let status = self.child.wait().unwrap();
        assert!(status.success(), "graceful shutdown exits 0, got {status}");
    }
}

/// Writes a config file for a server process on a free port in front of `mock_base`.
pub fn write_process_config(dir: &Path, mock_base: &str, log_level: &str) -> PathBuf {
    let path = dir.join("instagen.toml");
    std::fs::write(
        &path,
        config_toml(dir, mock_base, Some(free_port()), log_level),
    )
    .unwrap();
    path
}

/// Creates account `acme` and a key in the store named by `config_path`; returns (account id, key).
pub async fn provision(config_path: &Path) -> (String, String, Store) {
    let config = Config::load(Some(config_path)).unwrap();
    let (store, hasher) = instagen::open_store(&config).await.unwrap();
    let account = instagen::admin::create_account(&store, &Actor::cli(), "acme")
        .await
        .unwrap();
    let key =
        instagen::admin::create_key(&store, &hasher, &Actor::cli(), &account.id, key_spec("k"))
            .await
            .unwrap();
    (account.id, key.secret.expose().to_owned(), store)
}

/// A key spec with just a name (and a description for tests that list keys).
pub fn key_spec(name: &str) -> KeySpec {
    KeySpec {
        name: name.to_owned(),
        description: "test key".to_owned(),
        ..KeySpec::default()
    }
}

/// A management API call: `method path` with an optional bearer credential and JSON body.
pub async fn api(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    bearer: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = app.client.request(method, app.url(path));
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    if let Some(body) = body {
        req = req.json(body);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Sends a chat request with `key`, retrying for up to a second until `want` comes back
/// (the key table refreshes every 250 ms). Returns the last status and body.
pub async fn chat_status(app: &TestApp, key: &str, want: u16) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_millis(1500);
    loop {
        let resp = app
            .client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&chat_body("a b"))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status == want || Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
