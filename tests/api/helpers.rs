//! `TestApp`: spawns InstaGen in-process on 127.0.0.1:0 in front of a `mock-upstream`.
//!
//! The store is a SQLite file in the test's data dir, or, when `INSTAGEN_TEST_POSTGRES`
//! names a PostgreSQL server (`postgres://postgres@127.0.0.1:5432`), a fresh database on
//! it per data dir ([`store_url_for`]); the whole suite then runs on PostgreSQL.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use instagen::admin::Actor;
use instagen::config::{Config, ProviderConfig, ProviderKind, ResponsesApi};
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

/// The same provider speaking Anthropic's Messages API at its URL.
pub fn anthropic_kind(p: &ProviderConfig) -> ProviderKind {
    ProviderKind::Anthropic {
        base_url: p.base_url().unwrap_or_default().to_owned(),
    }
}

/// Makes the test model's provider an Anthropic one: a third party, its key `key` in a
/// file in the app's data directory.
pub fn anthropic_provider(c: &mut Config, key: &str) {
    let key_file = c.server.data_dir.join("anthropic.key");
    std::fs::write(&key_file, format!("{key}\n")).unwrap();
    let p = &mut c.providers[0];
    p.kind = anthropic_kind(p);
    p.third_party = true;
    p.api_key_file = Some(key_file);
}

/// Points an HTTP provider at another URL.
pub fn set_base_url(p: &mut ProviderConfig, url: String) {
    if let ProviderKind::Openai { base_url, .. } | ProviderKind::Anthropic { base_url } =
        &mut p.kind
    {
        *base_url = url;
    }
}

/// How an OpenAI-compatible provider takes `/v1/responses`.
pub fn set_responses(p: &mut ProviderConfig, api: ResponsesApi) {
    if let ProviderKind::Openai { responses, .. } = &mut p.kind {
        *responses = api;
    }
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
url = "{store_url}"
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
        dir = dir.display(),
        store_url = store_url_for(dir),
    )
}

/// The PostgreSQL server the suite runs on instead of SQLite, from `INSTAGEN_TEST_POSTGRES`
/// (e.g. `postgres://postgres@127.0.0.1:5432`); `None` keeps SQLite.
pub fn test_postgres() -> Option<String> {
    std::env::var("INSTAGEN_TEST_POSTGRES")
        .ok()
        .map(|s| s.trim().trim_end_matches('/').to_owned())
        .filter(|s| !s.is_empty())
}

/// The store URL of the test whose data lives in `dir`: a SQLite file in it, or on
/// PostgreSQL a database created for `dir` on first use (the same one on every call).
pub fn store_url_for(dir: &Path) -> String {
    let Some(server) = test_postgres() else {
        return format!("sqlite://{}/instagen.db", dir.display());
    };
    static DATABASES: Mutex<BTreeMap<PathBuf, String>> = Mutex::new(BTreeMap::new());
    let mut databases = DATABASES.lock().unwrap_or_else(|p| p.into_inner());
    databases
        .entry(dir.to_owned())
        .or_insert_with(|| {
            let dir = dir.to_owned();
            blocking(async move { create_database(&server, Some(&dir)).await })
        })
        .clone()
}

/// Runs `fut` to completion on a runtime of its own (callers may be sync or async).
fn blocking<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(fut)
    })
    .join()
    .unwrap()
}

/// Creates a database `instagen_test_<pid>_<random>` on `server` and returns its URL.
/// `dir`, when given, is written as the database's comment: once that directory is gone
/// (the test ended and its temporary dir was removed) or the process that made it has
/// exited, the next call drops the database.
pub async fn create_database(server: &str, dir: Option<&Path>) -> String {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    let old: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT datname::TEXT, shobj_description(oid, 'pg_database') FROM pg_database
         WHERE datname LIKE 'instagen\\_test\\_%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    for (name, comment) in old {
        let pid = name
            .strip_prefix("instagen_test_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        let owner_exited = pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists());
        let dir_removed = comment.is_some_and(|d| !Path::new(&d).exists());
        if owner_exited || dir_removed {
            // Another test may be dropping it too: errors are fine.
            let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await;
        }
    }
    let name = format!(
        "instagen_test_{}_{}",
        std::process::id(),
        instagen::keys::random_id(12).unwrap()
    );
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap();
    if let Some(dir) = dir {
        let dir = dir.display().to_string().replace('\'', "''");
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "COMMENT ON DATABASE \"{name}\" IS '{dir}'"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
    }
    admin.close().await.unwrap();
    format!("{server}/{name}")
}

/// Drops a database made by [`create_database`] (connections to it are ended).
pub async fn drop_database(url: &str) {
    use sqlx::Connection;
    let (server, name) = url.rsplit_once('/').unwrap();
    let mut admin = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    admin.close().await.unwrap();
}

/// Everything the PostgreSQL store of `dir` holds, to search for what must not be there:
/// every value of every column of every table (bytea as raw bytes, the rest as text).
/// `None` on SQLite, whose database files lie in `dir` and are searched with the others.
pub async fn store_contents(dir: &Path) -> Option<Vec<u8>> {
    use sqlx::Connection;
    test_postgres()?;
    let mut c = sqlx::PgConnection::connect(&store_url_for(dir))
        .await
        .unwrap();
    let columns: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT table_name::TEXT, column_name::TEXT, data_type::TEXT FROM information_schema.columns
         WHERE table_schema = 'public' ORDER BY 1, 2",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert!(columns.len() > 20, "the store's schema is there");
    let mut out = Vec::new();
    for (table, column, data_type) in columns {
        if data_type == "bytea" {
            let sql = format!("SELECT \"{column}\" FROM \"{table}\"");
            let values: Vec<Option<Vec<u8>>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut c)
                .await
                .unwrap();
            for v in values.into_iter().flatten() {
                out.extend_from_slice(&v);
                out.push(0);
            }
        } else {
            let sql = format!("SELECT \"{column}\"::TEXT FROM \"{table}\"");
            let values: Vec<Option<String>> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut c)
                .await
                .unwrap();
            for v in values.into_iter().flatten() {
                out.extend_from_slice(v.as_bytes());
                out.push(0);
            }
        }
    }
    c.close().await.unwrap();
    Some(out)
}

/// Runs one SQL statement directly against the store at `url` (SQLite or PostgreSQL).
pub async fn exec_sql(url: &str, sql: &str) {
    use sqlx::Connection;
    let sql = || sqlx::AssertSqlSafe(sql.to_owned());
    if url.starts_with("sqlite:") {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query(sql()).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
    } else {
        let mut c = sqlx::PgConnection::connect(url).await.unwrap();
        sqlx::query(sql()).execute(&mut c).await.unwrap();
        c.close().await.unwrap();
    }
}

/// A transaction that keeps the store from committing usage records until released:
/// SQLite's write lock, or on PostgreSQL an exclusive lock on `usage_records` (reads go on).
pub enum UsageWriteBlocker {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl UsageWriteBlocker {
    pub async fn hold(url: &str) -> UsageWriteBlocker {
        use sqlx::Connection;
        if url.starts_with("sqlite:") {
            let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query("BEGIN IMMEDIATE")
                .execute(&mut c)
                .await
                .unwrap();
            UsageWriteBlocker::Sqlite(c)
        } else {
            let mut c = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query("BEGIN").execute(&mut c).await.unwrap();
            sqlx::query("LOCK TABLE usage_records IN EXCLUSIVE MODE")
                .execute(&mut c)
                .await
                .unwrap();
            UsageWriteBlocker::Postgres(c)
        }
    }

    pub async fn release(self) {
        use sqlx::Connection;
        match self {
            UsageWriteBlocker::Sqlite(mut c) => {
                sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
            UsageWriteBlocker::Postgres(mut c) => {
                sqlx::query("ROLLBACK").execute(&mut c).await.unwrap();
                c.close().await.unwrap();
            }
        }
    }
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

    /// Waits until the record of request `id` (an answer's `x-request-id`) is stored.
    pub async fn record(&self, id: &str) -> UsageRecord {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let rows = self
                .store
                .usage_records(&self.account_id, 0, i64::MAX)
                .await
                .unwrap();
            if let Some(r) = rows.into_iter().find(|r| *r.request_id == *id) {
                return r;
            }
            assert!(Instant::now() < deadline, "no usage record {id}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Restarts the server on the same data dir and store (on a new port) with the test
    /// config changed by `configure`, as an operator restarts with a new config.
    pub async fn restart_with(mut self, configure: impl FnOnce(&mut Config)) -> TestApp {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.unwrap().unwrap();
        }
        let mut config = test_config(self.dir.path(), &self.mock.base_url());
        configure(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        self.addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        self.handle = Some(tokio::spawn(instagen::run(config, listener, async move {
            let _ = rx.await;
        })));
        self.shutdown = Some(tx);
        self.wait_ready().await;
        self
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

/// The `(event name, data as JSON)` pairs of an SSE body (Responses and Messages events).
pub fn named_sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .filter_map(|block| {
            let name = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("")
                .to_owned();
            let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
            Some((name, serde_json::from_str(data).unwrap_or(Value::Null)))
        })
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

/// A local address nothing answers on, held for as long as the value lives: its port is
/// bound but never listened on, so connecting is refused at once and no other test's
/// listener can take the port meanwhile (as it could a port merely found free).
pub struct DeadAddr {
    _held: tokio::net::TcpSocket,
    pub port: u16,
}

pub fn dead_addr() -> DeadAddr {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    DeadAddr {
        _held: socket,
        port,
    }
}

/// A local port, free when returned, for a server that binds it later: a subprocess, or
/// one killed and started again on the same port. It comes from just below the kernel's
/// ephemeral range (`ip_local_port_range`), where neither another test's `bind(0)` nor an
/// outgoing connection's automatic port can take it in the meantime (a port merely found
/// free by `bind(0)` could be, by any of the suite's thousands of connections); each is
/// handed out once per test process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const SPAN: u32 = 8_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    if ephemeral_low >= 10_000 + SPAN {
        let base = ephemeral_low - SPAN;
        // Another test process (the suite's second pass) starts elsewhere in the span.
        let offset = std::process::id() % SPAN;
        for _ in 0..SPAN {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let port = base + (offset + n) % SPAN;
            if std::net::TcpListener::bind(("127.0.0.1", port as u16)).is_ok() {
                return port as u16;
            }
        }
    }
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

/// The last lines of a server process's log, for failure messages: the log itself goes
/// with the test's temporary directory.
pub fn log_tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// `instagen serve` as a child process (for kill -9, SIGTERM and log-capture tests).
pub struct ServerProcess {
    pub child: std::process::Child,
    pub base: String,
    log: PathBuf,
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
        let mut server = ServerProcess {
            child,
            base: format!("http://{listen}"),
            log: log.to_owned(),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client.get(format!("{}/healthz", server.base)).send().await
                && r.status() == 200
            {
                return server;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("server process exited ({status}):\n{}", server.log_tail());
            }
            assert!(
                Instant::now() < deadline,
                "server process did not start in 20 s:\n{}",
                server.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The last lines of this process's log (`log_tail`), for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
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
        assert!(
            status.success(),
            "graceful shutdown exits 0, got {status}:\n{}",
            self.log_tail()
        );
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

/// Sets `server.worker_threads = n` in a config written by `write_process_config`.
pub fn set_worker_threads(config: &Path, n: usize) {
    let text = std::fs::read_to_string(config).unwrap();
    assert!(text.contains("[server]\n"), "{text}");
    let with = text.replacen(
        "[server]\n",
        &format!("[server]\nworker_threads = {n}\n"),
        1,
    );
    std::fs::write(config, with).unwrap();
}

/// Threads of process `pid` named as tokio names its runtime's (workers and blocking
/// pool alike), as the kernel lists them.
#[cfg(target_os = "linux")]
pub fn runtime_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).ok())
        .filter(|name| name.trim() == "tokio-rt-worker")
        .count()
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

/// InstaGen's Prometheus metrics, as an operator scrapes them.
pub async fn scrape_metrics(app: &TestApp) -> String {
    app.client
        .get(app.url("/metrics"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Waits until the gateway's key table (or its budget tracker, which `GET /v1/key`'s
/// balance comes from) shows `key` as `shows` wants, given `GET /v1/key`'s status and body,
/// which use none of the key's limits: first asked after 300 ms (the table refreshes every
/// 250 ms, the balances every second), then every 300 ms for up to five seconds, so a busy
/// machine's late refresh makes a slower test, not a failed one. Returns the body.
pub async fn until_key_table_shows(
    app: &TestApp,
    key: &str,
    shows: impl Fn(u16, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let resp = app
            .client
            .get(app.url("/v1/key"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if shows(status, &body) {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "the key table never showed the change: {status} {body}"
        );
    }
}

/// Sends a chat request with `key`, retrying for up to five seconds until `want` comes
/// back (the key table refreshes every 250 ms; a busy machine may take longer). Returns
/// the last status and body.
pub async fn chat_status(app: &TestApp, key: &str, want: u16) -> (u16, Value) {
    let deadline = Instant::now() + Duration::from_secs(5);
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

/// Runs an official-SDK script against `app` (base URL, key and model in its environment)
/// and asserts it printed `ALL OK` and exited 0.
pub async fn run_sdk_script(app: &TestApp, mut command: std::process::Command) {
    command
        .env("INSTAGEN_BASE_URL", app.url("/v1"))
        .env("INSTAGEN_KEY", &app.key)
        .env("INSTAGEN_MODEL", MODEL);
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("ALL OK"), "{stdout}");
}

/// A logged-in browser-like session: cookie + CSRF token.
pub struct Session {
    pub cookie: String,
    pub csrf: String,
}

pub async fn login(app: &TestApp, email: &str, password: &str) -> Session {
    let resp = app
        .client
        .post(app.url("/api/v1/session"))
        .json(&serde_json::json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let set_cookie = resp.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"),
        "{set_cookie}"
    );
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    Session {
        cookie,
        csrf: body["csrf_token"].as_str().unwrap().to_owned(),
    }
}

pub async fn as_user(
    app: &TestApp,
    s: &Session,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
    csrf: bool,
) -> (u16, Value) {
    let mut req = app
        .client
        .request(method, app.url(path))
        .header("cookie", &s.cookie);
    if csrf {
        req = req.header("x-csrf-token", &s.csrf);
    }
    if let Some(b) = body {
        req = req.json(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// An operator (the admin token) creates account `name` owned by a new user
/// `owner@<name>.example` with password `correct horse battery`; returns (account id, email).
pub async fn create_account_with_owner(app: &TestApp, name: &str) -> (String, String) {
    let email = format!("owner@{name}.example");
    let (status, account) = api(
        app,
        reqwest::Method::POST,
        "/api/v1/accounts",
        Some(ADMIN_TOKEN),
        Some(
            &serde_json::json!({"name": name, "owner_email": email, "owner_password": "correct horse battery"}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{account}");
    (account["id"].as_str().unwrap().to_owned(), email)
}

/// An owner invites `email` with `role`; the invitee (no login yet) accepts with the token
/// and `password`. Returns the new member's user id.
pub async fn invite_and_accept(
    app: &TestApp,
    owner: &Session,
    account: &str,
    email: &str,
    role: &str,
    password: &str,
) -> String {
    let (status, created) = as_user(
        app,
        owner,
        reqwest::Method::POST,
        &format!("/api/v1/accounts/{account}/members"),
        Some(&serde_json::json!({"email": email, "role": role})),
        true,
    )
    .await;
    assert_eq!(status, 202, "{created}");
    let resp = app
        .client
        .post(app.url("/api/v1/invitations/accept"))
        .json(&serde_json::json!({"token": created["token"], "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let body: Value = resp.json().await.unwrap();
    body["user"]["id"].as_str().unwrap().to_owned()
}
