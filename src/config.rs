//! The one typed configuration: built-in defaults < `instagen.toml` < `INSTAGEN__SECTION__FIELD` env.
//!
//! Parsing and validation only: nothing here opens sockets or files other than the
//! config file itself and the privacy policy's `privacy.text_file`. Unknown keys are errors that name the key, so a typo never
//! silently falls back to a default.

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use crate::billing::Price;

/// Environment variable prefix for overrides: `INSTAGEN__SERVER__LISTEN=…`.
pub const ENV_PREFIX: &str = "INSTAGEN__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: String, message: String },
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// A key with a value of the wrong type or range; `key` is its dotted path
    /// (`usage.retention_days`, `providers[0].kind`).
    #[error("invalid configuration: `{key}`: {message}")]
    Key { key: String, message: String },
}

/// A secret from config or env; never printed.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub usage: UsageConfig,
    pub limits: LimitsConfig,
    pub accounts: AccountsConfig,
    pub billing: BillingConfig,
    pub log: LogConfig,
    pub privacy: PrivacyConfig,
    pub email: EmailConfig,
    pub alerts: AlertsConfig,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address the HTTP server binds.
    pub listen: SocketAddr,
    /// Where the key-hash secret and the usage journal live.
    pub data_dir: PathBuf,
    /// Key-hash secret (hex or any string ≥ 32 chars); when absent one is generated in `data_dir`.
    pub secret: Option<Secret>,
    /// Largest request body accepted on `/v1/*`; larger gets 413.
    pub max_body_bytes: usize,
    /// How long graceful shutdown waits for in-flight requests before closing them.
    pub shutdown_grace_ms: u64,
    /// Runtime worker threads; 0 means one per CPU core.
    pub worker_threads: usize,
    /// Tasks a runtime worker runs between two looks for new I/O and timers while it has
    /// work queued (tokio's `event_interval`). A gateway's tasks poll for microseconds;
    /// at tokio's default of 61 the latency tail at c=256 on one core was twice as wide
    /// as at 500 (docs/performance.md). An idle worker still looks at once.
    pub event_interval: u32,
    /// A client must send a request's headers within this long (slowloris protection);
    /// also how long an idle keep-alive connection waits for its next request.
    pub header_read_timeout_ms: u64,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// A request body must arrive within this long, plus one second for every
    /// `body_min_bytes_per_sec` received (a stalled or trickling body gets 408).
    pub body_timeout_ms: u64,
    /// The slowest rate a large body may arrive at (see `body_timeout_ms`).
    pub body_min_bytes_per_sec: u64,
    /// Largest request head (request line and headers); larger gets 431.
    pub max_header_bytes: usize,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1 by ALPN); SIGHUP reloads the files.
    pub tls: Option<TlsConfig>,
    /// Mark session cookies `Secure` (on by itself with `tls`; set it behind a TLS proxy).
    pub secure_cookies: bool,
    /// Serve `/metrics` unauthenticated on this (internal) address instead of to operators
    /// on the main listener.
    pub metrics_listen: Option<SocketAddr>,
    /// File holding the master key (64 hex characters) that seals provider credentials
    /// stored through the operator API; `INSTAGEN_MASTER_KEY` may give the key itself.
    pub master_key_file: Option<PathBuf>,
    /// The master key from `INSTAGEN_MASTER_KEY` (never read from a config file).
    #[serde(skip)]
    pub master_key: Option<Secret>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl ServerConfig {
    /// The runtime's worker threads: `worker_threads`, or with 0 one per core the process
    /// may run on.
    pub fn workers(&self) -> usize {
        match self.worker_threads {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => n,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("./instagen-data"),
            secret: None,
            max_body_bytes: 16 * 1024 * 1024,
            shutdown_grace_ms: 30_000,
            worker_threads: 0,
            event_interval: DEFAULT_EVENT_INTERVAL,
            header_read_timeout_ms: 10_000,
            max_connections: 20_000,
            body_timeout_ms: 30_000,
            body_min_bytes_per_sec: 64 * 1024,
            max_header_bytes: 64 * 1024,
            tls: None,
            secure_cookies: false,
            metrics_listen: None,
            master_key_file: None,
            master_key: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://path` (created when missing) or `postgres://user@host/db` (the database must exist).
    pub url: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://./instagen-data/instagen.db".to_owned(),
        }
    }
}

/// What happens to limited requests when Redis cannot be reached.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RedisFailure {
    /// Fall back to this instance's own counters (limits become per-instance) and warn.
    FailOpen,
    /// Refuse limited requests with 503 until Redis is back.
    FailClosed,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Requests one client IP may have in flight at once (across instances with Redis).
    pub max_in_flight_per_ip: u32,
    /// Header carrying the client IP set by a trusted proxy (its last address is used);
    /// none by default, so a client cannot spoof its address.
    pub client_ip_header: Option<String>,
    /// Failed authentications per IP per minute before that IP is blocked.
    pub auth_failures_per_minute: u32,
    /// How long an IP that failed too often is refused, seconds.
    pub auth_block_secs: u64,
    /// Deepest JSON nesting accepted in a `/v1` request body.
    pub max_json_depth: usize,
    /// `redis://…` (or `redis+cluster://host1,host2`) makes every limit global across instances.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key (lets several deployments or tests share one Redis).
    pub redis_prefix: String,
    pub on_redis_failure: RedisFailure,
    /// Concurrency leases expire after this long if their instance dies, seconds.
    pub lease_ttl_secs: u64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_in_flight_per_ip: 1000,
            client_ip_header: None,
            auth_failures_per_minute: 20,
            auth_block_secs: 60,
            max_json_depth: 64,
            redis_url: None,
            redis_prefix: "instagen:".to_owned(),
            on_redis_failure: RedisFailure::FailOpen,
            lease_ttl_secs: 900,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UsageConfig {
    /// Records that may wait for the batch writer; in-flight requests hold a slot each,
    /// and a request that finds none free gets 503 instead of a record being dropped.
    pub queue_capacity: usize,
    /// Most records written in one transaction.
    pub batch_size: usize,
    /// Longest a record waits for others to share its write transaction.
    pub flush_interval_ms: u64,
    /// Per-request records older than this are purged (rollups and the ledger are kept); 0 keeps them.
    pub retention_days: u64,
    /// Load the tokenizer (used only when an upstream reports no usage) at start rather
    /// than on first need; costs ~4 MiB of heap (and the vocabulary's pages) up front.
    pub warm_tokenizer: bool,
    /// Append each record to a local journal before the response's last byte, so a
    /// `kill -9` loses nothing; replayed idempotently at the next start.
    pub journal: bool,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 65_536,
            batch_size: 1_000,
            flush_interval_ms: 100,
            retention_days: 30,
            warm_tokenizer: false,
            journal: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingConfig {
    /// Accounts pay in advance: a request whose reservation the balance cannot cover gets 402.
    pub prepaid: bool,
    /// How often recorded usage is posted to the ledger.
    pub post_interval_secs: u64,
    /// Output tokens reserved for a request that sets no `max_tokens`.
    pub default_reserve_output_tokens: u64,
}

impl Default for BillingConfig {
    fn default() -> Self {
        Self {
            prepaid: false,
            post_interval_secs: 60,
            default_reserve_output_tokens: 1024,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccountsConfig {
    /// Anyone may `POST /api/v1/signup`, creating an account with themselves as owner.
    pub open_signup: bool,
    /// How long a console/API login session lasts.
    pub session_ttl_hours: u64,
    /// A bearer token that acts as an operator (bootstrap); also read from `INSTAGEN_ADMIN_TOKEN`.
    pub admin_token: Option<Secret>,
    /// Access keys one account may hold (deleted keys do not count); more is 409 `key_limit`.
    pub max_keys_per_account: usize,
}

impl Default for AccountsConfig {
    fn default() -> Self {
        Self {
            open_signup: false,
            session_ttl_hours: 12,
            admin_token: None,
            max_keys_per_account: crate::admin::DEFAULT_MAX_KEYS_PER_ACCOUNT,
        }
    }
}

/// InstaGen's own privacy policy, served when the operator configures no text.
pub const DEFAULT_PRIVACY_POLICY: &str = include_str!("privacy_policy.md");

/// `[email]`: outgoing mail over SMTP (alerts, privacy-policy notices). Off until
/// `smtp_host` is set; emails queued meanwhile wait for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmailConfig {
    pub smtp_host: Option<String>,
    /// 587 (STARTTLS) unless set.
    pub smtp_port: Option<u16>,
    /// `starttls` (the default), `tls` (implicit TLS, usually port 465) or `none` (plain
    /// SMTP: a relay on this machine or a test sink only).
    pub security: SmtpSecurity,
    pub username: Option<String>,
    /// A file holding the SMTP password (never the password itself in the config).
    pub password_file: Option<PathBuf>,
    /// The sender, e.g. `InstaGen <alerts@example.com>`.
    pub from: String,
    pub timeout_ms: u64,
}

impl Default for EmailConfig {
    fn default() -> Self {
        Self {
            smtp_host: None,
            smtp_port: None,
            security: SmtpSecurity::Starttls,
            username: None,
            password_file: None,
            from: "InstaGen <noreply@localhost>".to_owned(),
            timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    #[default]
    Starttls,
    Tls,
    None,
}

/// `[alerts]`: how often thresholds are checked and how deliveries are retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// How often every rule is checked against the store's figures.
    pub check_interval_ms: u64,
    /// How often due deliveries are sent.
    pub deliver_interval_ms: u64,
    /// Attempts before a delivery is given up (marked failed).
    pub max_attempts: u32,
    /// The wait before the first retry; it doubles with each attempt, up to an hour.
    pub retry_base_ms: u64,
    /// How long a webhook receiver has to answer.
    pub webhook_timeout_ms: u64,
    /// Let webhooks reach private, loopback and link-local addresses (tests, a private
    /// network); off, such a URL fails its delivery rather than probe the inside.
    pub allow_private_webhooks: bool,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            check_interval_ms: 30_000,
            deliver_interval_ms: 2_000,
            max_attempts: 8,
            retry_base_ms: 10_000,
            webhook_timeout_ms: 10_000,
            allow_private_webhooks: false,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// The policy's version. Users acknowledge a version; changing it (with the text) makes
    /// the console ask every user again.
    pub version: String,
    /// Where users write about their data (an email address), shown with the policy.
    pub contact: Option<String>,
    /// The policy text (Markdown-ish plain text: `#` headings, `-` lists, paragraphs);
    /// InstaGen's own policy when neither this nor `text_file` is given.
    pub text: Option<String>,
    /// A file holding the policy text, read once when the config is loaded (instead of `text`).
    pub text_file: Option<PathBuf>,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self {
            version: "1".to_owned(),
            contact: None,
            text: None,
            text_file: None,
        }
    }
}

impl PrivacyConfig {
    /// The policy text in force: the configured one, or InstaGen's default.
    pub fn text(&self) -> &str {
        self.text.as_deref().unwrap_or(DEFAULT_PRIVACY_POLICY)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let v = self.version.trim();
        if v.is_empty() || v.len() > 64 || v != self.version || v.chars().any(char::is_control) {
            return Err(ConfigError::Invalid(
                "privacy.version must be 1 to 64 printable characters without surrounding spaces"
                    .to_owned(),
            ));
        }
        if let Some(c) = &self.contact
            && (c.len() > 254
                || !c
                    .split_once('@')
                    .is_some_and(|(l, d)| !l.is_empty() && !d.is_empty())
                || c.chars().any(|ch| ch.is_whitespace() || ch.is_control()))
        {
            return Err(ConfigError::Invalid(
                "privacy.contact must be an email address".to_owned(),
            ));
        }
        if self.text.is_some() && self.text_file.is_some() {
            return Err(ConfigError::Invalid(
                "give privacy.text or privacy.text_file, not both".to_owned(),
            ));
        }
        if self.text.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(ConfigError::Invalid(
                "privacy.text must not be empty".to_owned(),
            ));
        }
        Ok(())
    }

    /// Reads `text_file` into `text` (once); an unreadable or empty file is a config error.
    fn read_text_file(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.text_file else {
            return Ok(());
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::Invalid(format!(
                "privacy.text_file {}: cannot read it: {e}",
                path.display()
            ))
        })?;
        if text.trim().is_empty() {
            return Err(ConfigError::Invalid(format!(
                "privacy.text_file {} is empty",
                path.display()
            )));
        }
        self.text = Some(text);
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `error|warn|info|debug|trace` or a tracing filter directive.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// How the built-in engine holds a model's weights.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LocalWeights {
    /// As quantized in the file; matrix products quantize activations to 8 bits.
    #[default]
    Quantized,
    /// Dequantized to f32 at load: about 4 bytes a parameter, exact activations.
    F32,
}

/// What kind of provider, with the settings only that kind has: an OpenAI-compatible or
/// Anthropic API at a URL, or a model file on the built-in engine. In a config file it is
/// one flat table tagged by `kind` (see `ProviderFile`).
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderKind {
    /// Any OpenAI-compatible engine or API (vLLM, SGLang, llama.cpp, Ollama, OpenAI …).
    Openai {
        /// Base URL including the version segment, e.g. `http://127.0.0.1:8000/v1`.
        base_url: String,
        /// `native` when the provider serves `/v1/responses` itself.
        responses: ResponsesApi,
    },
    /// Anthropic's Messages API; chat completions are translated both ways.
    Anthropic { base_url: String },
    /// The built-in CPU engine running a GGUF model in-process.
    Local(LocalConfig),
}

/// A model file on the built-in engine.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalConfig {
    /// The GGUF model file.
    pub path: PathBuf,
    /// Threads that run the model; 0 means one per core.
    pub threads: usize,
    /// Sequences generated at once (at least 1).
    pub max_sequences: usize,
    /// Requests that may wait for a sequence; more get 429.
    pub max_queue: usize,
    /// Prompt plus output tokens (2 to `engine::MAX_CONTEXT`).
    pub context_length: usize,
    /// How the weights are held: as in the file, or dequantized to f32.
    pub weights: LocalWeights,
}

impl LocalConfig {
    /// A model file with the default engine settings.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            threads: 0,
            max_sequences: default_max_sequences(),
            max_queue: default_max_queue(),
            context_length: default_context_length(),
            weights: LocalWeights::default(),
        }
    }
}

/// The tag of a provider table (`kind = "openai" | "anthropic" | "local"`).
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum KindTag {
    Openai,
    Anthropic,
    Local,
}

/// How a provider takes `POST /v1/responses` requests.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ResponsesApi {
    /// Translated to Chat Completions (every OpenAI-compatible engine).
    #[default]
    Translate,
    /// The provider serves the Responses API itself (OpenAI, recent vLLM): requests pass
    /// through, allow-listed, with `store: false`.
    Native,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(try_from = "ProviderFile", into = "ProviderFile")]
pub struct ProviderConfig {
    pub name: String,
    pub kind: ProviderKind,
    /// Name of the env variable holding the upstream API key; the key itself is never stored.
    pub api_key_env: Option<String>,
    /// A file holding the upstream API key (e.g. a mounted secret); wins over `api_key_env`.
    pub api_key_file: Option<PathBuf>,
    /// The key of a provider managed through the operator API (decrypted at start, never
    /// read from a config file).
    pub api_key: Option<Secret>,
    /// `max_tokens` sent to APIs that require one (Anthropic) when the client set none.
    pub default_max_tokens: u64,
    /// A third party gets only what the request needs (see gateway minimisation).
    pub third_party: bool,
    /// Jurisdiction the provider processes data in (e.g. `eu`, `us`); keys restricted to
    /// regions are never routed to a provider outside them, not even as a fallback.
    pub region: Option<String>,
    pub connect_timeout_ms: u64,
    /// Wait for the upstream's response headers.
    pub ttfb_timeout_ms: u64,
    /// Longest silence between two stream chunks.
    pub idle_timeout_ms: u64,
    /// Whole-request limit for non-stream requests.
    pub request_timeout_ms: u64,
    /// Active health checks: probe `health_check_path` this often (off when absent).
    pub health_check_interval_ms: Option<u64>,
    /// Path below `base_url` to probe; any 2xx is healthy.
    pub health_check_path: String,
}

impl ProviderConfig {
    /// A provider of `kind` with the default timeouts and no key.
    pub fn new(name: impl Into<String>, kind: ProviderKind) -> Self {
        Self {
            name: name.into(),
            kind,
            api_key_env: None,
            api_key_file: None,
            api_key: None,
            default_max_tokens: default_max_tokens(),
            third_party: false,
            region: None,
            connect_timeout_ms: default_connect_timeout(),
            ttfb_timeout_ms: default_ttfb_timeout(),
            idle_timeout_ms: default_idle_timeout(),
            request_timeout_ms: default_request_timeout(),
            health_check_interval_ms: None,
            health_check_path: default_health_path(),
        }
    }

    /// The settings of a provider managed through the operator API, as stored. Rows from
    /// before providers were tagged by kind also hold the built-in engine's settings at
    /// their defaults (and `responses` on Anthropic ones): those are dropped, not refused.
    pub fn stored_settings(
        json: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, serde_json::Error> {
        let mut map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json)?;
        let kind = map.get("kind").and_then(|k| k.as_str()).map(str::to_owned);
        if kind.as_deref() != Some("local") {
            for field in LOCAL_ONLY {
                map.remove(field);
            }
        }
        if kind.as_deref() == Some("anthropic") {
            map.remove("responses");
        }
        Ok(map)
    }

    /// A stored provider's settings as a provider (see `stored_settings`).
    pub fn from_stored(json: &str) -> Result<Self, StoredProviderError> {
        let map = Self::stored_settings(json)?;
        let file: ProviderFile = serde_json::from_value(serde_json::Value::Object(map))?;
        Ok(Self::try_from(file)?)
    }

    /// The API's base URL (none for the built-in engine).
    pub fn base_url(&self) -> Option<&str> {
        match &self.kind {
            ProviderKind::Openai { base_url, .. } | ProviderKind::Anthropic { base_url } => {
                Some(base_url)
            }
            ProviderKind::Local(_) => None,
        }
    }
}

/// A provider table as written in a config file (or stored by the operator API): flat,
/// tagged by `kind`. Turning it into a `ProviderConfig` refuses settings that do not apply
/// to its kind, naming them.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProviderFile {
    name: String,
    kind: KindTag,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    responses: Option<ResponsesApi>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    threads: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_sequences: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_queue: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    context_length: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weights: Option<LocalWeights>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    api_key_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    api_key_file: Option<PathBuf>,
    #[serde(default = "default_max_tokens")]
    default_max_tokens: u64,
    #[serde(default)]
    third_party: bool,
    #[serde(default)]
    region: Option<String>,
    #[serde(default = "default_connect_timeout")]
    connect_timeout_ms: u64,
    #[serde(default = "default_ttfb_timeout")]
    ttfb_timeout_ms: u64,
    #[serde(default = "default_idle_timeout")]
    idle_timeout_ms: u64,
    #[serde(default = "default_request_timeout")]
    request_timeout_ms: u64,
    #[serde(default)]
    health_check_interval_ms: Option<u64>,
    #[serde(default = "default_health_path")]
    health_check_path: String,
}

/// Why a provider row stored by the operator API cannot be read back.
#[derive(Debug, thiserror::Error)]
pub enum StoredProviderError {
    #[error("not provider settings: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Field(#[from] ProviderFieldError),
}

/// A provider setting that does not fit its kind; `field` names it.
#[derive(Debug, thiserror::Error)]
#[error("`{field}` {message}")]
pub struct ProviderFieldError {
    pub field: &'static str,
    pub message: String,
}

fn field_error(field: &'static str, message: impl Into<String>) -> ProviderFieldError {
    ProviderFieldError {
        field,
        message: message.into(),
    }
}

/// The settings only a local provider takes.
const LOCAL_ONLY: [&str; 6] = [
    "path",
    "threads",
    "max_sequences",
    "max_queue",
    "context_length",
    "weights",
];

impl ProviderFile {
    /// Whether the table is a local provider's (the built-in engine).
    pub(crate) fn is_local(&self) -> bool {
        self.kind == KindTag::Local
    }

    /// The settings given that only a local provider takes.
    fn local_settings(&self) -> impl Iterator<Item = &'static str> {
        let given = [
            self.path.is_some(),
            self.threads.is_some(),
            self.max_sequences.is_some(),
            self.max_queue.is_some(),
            self.context_length.is_some(),
            self.weights.is_some(),
        ];
        LOCAL_ONLY
            .into_iter()
            .zip(given)
            .filter_map(|(name, given)| given.then_some(name))
    }

    fn http_base_url(&mut self) -> Result<String, ProviderFieldError> {
        if let Some(field) = self.local_settings().next() {
            return Err(field_error(
                field,
                "applies only to kind = \"local\" (a model file on the built-in engine)",
            ));
        }
        let url = self.base_url.take().unwrap_or_default();
        if url.starts_with("http://") || url.starts_with("https://") {
            Ok(url)
        } else {
            Err(field_error(
                "base_url",
                "must start with http:// or https://",
            ))
        }
    }
}

impl TryFrom<ProviderFile> for ProviderConfig {
    type Error = ProviderFieldError;

    fn try_from(mut f: ProviderFile) -> Result<Self, ProviderFieldError> {
        let kind = match f.kind {
            KindTag::Openai => ProviderKind::Openai {
                base_url: f.http_base_url()?,
                responses: f.responses.unwrap_or_default(),
            },
            KindTag::Anthropic => {
                if f.responses.is_some() {
                    return Err(field_error(
                        "responses",
                        "applies only to kind = \"openai\"",
                    ));
                }
                ProviderKind::Anthropic {
                    base_url: f.http_base_url()?,
                }
            }
            KindTag::Local => {
                for (field, given) in [
                    ("base_url", f.base_url.is_some()),
                    ("responses", f.responses.is_some()),
                ] {
                    if given {
                        return Err(field_error(
                            field,
                            "does not apply to kind = \"local\" (the model runs in-process)",
                        ));
                    }
                }
                let path = f.path.take().ok_or_else(|| {
                    field_error(
                        "path",
                        "is required: the GGUF model file of a local provider",
                    )
                })?;
                // What the table leaves out keeps `LocalConfig::new`'s defaults.
                let defaults = LocalConfig::new(path);
                let local = LocalConfig {
                    threads: f.threads.unwrap_or(defaults.threads),
                    max_sequences: f.max_sequences.unwrap_or(defaults.max_sequences),
                    max_queue: f.max_queue.unwrap_or(defaults.max_queue),
                    context_length: f.context_length.unwrap_or(defaults.context_length),
                    weights: f.weights.unwrap_or(defaults.weights),
                    path: defaults.path,
                };
                if !(2..=crate::engine::MAX_CONTEXT).contains(&local.context_length) {
                    return Err(field_error(
                        "context_length",
                        format!("must be between 2 and {}", crate::engine::MAX_CONTEXT),
                    ));
                }
                if local.max_sequences == 0 {
                    return Err(field_error("max_sequences", "must be positive"));
                }
                ProviderKind::Local(local)
            }
        };
        Ok(Self {
            name: f.name,
            kind,
            api_key_env: f.api_key_env,
            api_key_file: f.api_key_file,
            api_key: None,
            default_max_tokens: f.default_max_tokens,
            third_party: f.third_party,
            region: f.region,
            connect_timeout_ms: f.connect_timeout_ms,
            ttfb_timeout_ms: f.ttfb_timeout_ms,
            idle_timeout_ms: f.idle_timeout_ms,
            request_timeout_ms: f.request_timeout_ms,
            health_check_interval_ms: f.health_check_interval_ms,
            health_check_path: f.health_check_path,
        })
    }
}

impl From<ProviderConfig> for ProviderFile {
    fn from(p: ProviderConfig) -> Self {
        let mut f = ProviderFile {
            name: p.name,
            kind: KindTag::Openai,
            responses: None,
            base_url: None,
            path: None,
            threads: None,
            max_sequences: None,
            max_queue: None,
            context_length: None,
            weights: None,
            api_key_env: p.api_key_env,
            api_key_file: p.api_key_file,
            default_max_tokens: p.default_max_tokens,
            third_party: p.third_party,
            region: p.region,
            connect_timeout_ms: p.connect_timeout_ms,
            ttfb_timeout_ms: p.ttfb_timeout_ms,
            idle_timeout_ms: p.idle_timeout_ms,
            request_timeout_ms: p.request_timeout_ms,
            health_check_interval_ms: p.health_check_interval_ms,
            health_check_path: p.health_check_path,
        };
        match p.kind {
            ProviderKind::Openai {
                base_url,
                responses,
            } => {
                f.base_url = Some(base_url);
                f.responses = Some(responses);
            }
            ProviderKind::Anthropic { base_url } => {
                f.kind = KindTag::Anthropic;
                f.base_url = Some(base_url);
            }
            ProviderKind::Local(l) => {
                f.kind = KindTag::Local;
                f.path = Some(l.path);
                f.threads = Some(l.threads);
                f.max_sequences = Some(l.max_sequences);
                f.max_queue = Some(l.max_queue);
                f.context_length = Some(l.context_length);
                f.weights = Some(l.weights);
            }
        }
        f
    }
}

fn default_max_tokens() -> u64 {
    4_096
}

fn default_max_sequences() -> usize {
    2
}

fn default_max_queue() -> usize {
    16
}

fn default_context_length() -> usize {
    2_048
}

fn default_health_path() -> String {
    "/models".to_owned()
}

fn default_connect_timeout() -> u64 {
    5_000
}
fn default_ttfb_timeout() -> u64 {
    120_000
}
fn default_idle_timeout() -> u64 {
    120_000
}
fn default_request_timeout() -> u64 {
    600_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// The name clients send.
    pub id: String,
    /// More names clients may send for this model (e.g. a `claude-…` name so Claude Code's
    /// model discovery offers a self-hosted model); records keep `id`.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// The single-route form: one provider serves the model.
    #[serde(default)]
    pub provider: Option<String>,
    /// Several routes: replicas balanced within a priority tier, higher tiers as fallback.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// The name the upstream knows; defaults to `id`.
    #[serde(default)]
    pub upstream_model: Option<String>,
    pub input_usd_per_mtok: Price,
    pub output_usd_per_mtok: Price,
    /// Price of prompt tokens the upstream reports as served from its cache; defaults to the input price.
    #[serde(default)]
    pub cached_input_usd_per_mtok: Option<Price>,
    /// Price of prompt tokens written to the provider's cache for 5 minutes (Anthropic
    /// charges 1.25× input); defaults to the input price.
    #[serde(default)]
    pub cache_write_usd_per_mtok: Option<Price>,
    /// Price of prompt tokens written to the cache for an hour (Anthropic: 2× input);
    /// defaults to the 5-minute write price.
    #[serde(default)]
    pub cache_write_1h_usd_per_mtok: Option<Price>,
    /// Price of output tokens spent reasoning; defaults to the output price.
    #[serde(default)]
    pub reasoning_usd_per_mtok: Option<Price>,
    /// Context window in tokens, shown in `GET /v1/models` when set.
    #[serde(default)]
    pub context_length: Option<u64>,
    /// The most input or output tokens an upstream may report for one request; larger
    /// counts are not billed (our own count is) and are logged with the provider. Defaults
    /// to four times `context_length`, else 10^9 (the hard cap).
    #[serde(default)]
    pub max_reported_tokens: Option<u64>,
    /// Request parameters used when a request does not set them, e.g.
    /// `default_params = { temperature = 0 }`; a request's own value always wins.
    #[serde(default)]
    pub default_params: std::collections::BTreeMap<String, serde_json::Value>,
    /// Scheduled price changes: each applies from its `effective_from` on. Records keep the
    /// cost computed when they were served, so history is never rewritten.
    #[serde(default)]
    pub price_changes: Vec<PriceChange>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub provider: String,
    /// The name this provider knows the model by; defaults to the model's `upstream_model` or id.
    #[serde(default)]
    pub upstream_model: Option<String>,
    /// Share of traffic within its tier, relative to the other routes' weights.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Lower tiers are used first; a higher tier only when no route below is healthy.
    #[serde(default)]
    pub priority: u32,
}

fn default_weight() -> u32 {
    1
}

impl ModelConfig {
    /// The model's base prices (before any scheduled change).
    pub fn prices(&self) -> crate::billing::Prices {
        prices_of(
            self.input_usd_per_mtok,
            self.output_usd_per_mtok,
            [
                self.cached_input_usd_per_mtok,
                self.cache_write_usd_per_mtok,
                self.cache_write_1h_usd_per_mtok,
                self.reasoning_usd_per_mtok,
            ],
        )
    }

    /// The most tokens of one kind an upstream may report for one request of this model.
    pub fn token_bound(&self) -> u64 {
        let hard = crate::usage::MAX_TOKENS_PER_REQUEST;
        self.max_reported_tokens
            .or_else(|| self.context_length.map(|c| c.saturating_mul(4)))
            .map_or(hard, |n| n.clamp(1, hard))
    }

    /// The model's routes, whichever form the config used.
    pub fn route_list(&self) -> Vec<RouteConfig> {
        let mut routes = self.routes.clone();
        if let Some(p) = &self.provider {
            routes.insert(
                0,
                RouteConfig {
                    provider: p.clone(),
                    upstream_model: None,
                    weight: 1,
                    priority: 0,
                },
            );
        }
        routes
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceChange {
    /// RFC 3339 instant (or YYYY-MM-DD, midnight UTC).
    pub effective_from: String,
    pub input_usd_per_mtok: Price,
    pub output_usd_per_mtok: Price,
    #[serde(default)]
    pub cached_input_usd_per_mtok: Option<Price>,
    #[serde(default)]
    pub cache_write_usd_per_mtok: Option<Price>,
    #[serde(default)]
    pub cache_write_1h_usd_per_mtok: Option<Price>,
    #[serde(default)]
    pub reasoning_usd_per_mtok: Option<Price>,
}

impl PriceChange {
    /// The prices this change puts in force, defaults filled in as for a model.
    pub fn prices(&self) -> crate::billing::Prices {
        prices_of(
            self.input_usd_per_mtok,
            self.output_usd_per_mtok,
            [
                self.cached_input_usd_per_mtok,
                self.cache_write_usd_per_mtok,
                self.cache_write_1h_usd_per_mtok,
                self.reasoning_usd_per_mtok,
            ],
        )
    }
}

/// A model's prices from its config: cache reads and 5-minute writes default to the input
/// price, 1-hour writes to the 5-minute write price, reasoning to the output price.
fn prices_of(
    input: Price,
    output: Price,
    [cached, write, write_1h, reasoning]: [Option<Price>; 4],
) -> crate::billing::Prices {
    let cache_write = write.unwrap_or(input);
    crate::billing::Prices {
        input,
        cached_input: cached.unwrap_or(input),
        cache_write,
        cache_write_1h: write_1h.unwrap_or(cache_write),
        output,
        reasoning: reasoning.unwrap_or(output),
    }
}

/// The model the embedded default serves, and its file below `data_dir`.
pub const DEFAULT_MODEL_ID: &str = "smollm2-135m-instruct";
pub const DEFAULT_MODEL_FILE: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// What [`Config::embedded_default`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum EmbeddedDefault {
    /// The config names models of its own: nothing added.
    NotNeeded,
    /// The built-in engine serves the reference model from this file.
    Serving(PathBuf),
    /// The reference model file is not there; the server starts without models.
    Missing(PathBuf),
}

impl Config {
    /// With no models configured, serve the reference model on the built-in engine when
    /// its file is in `data_dir` (`scripts/fetch-model.sh` puts it there), priced at zero,
    /// with its weights dequantized to f32.
    pub fn embedded_default(&mut self) -> EmbeddedDefault {
        if !self.models.is_empty() || !self.providers.is_empty() {
            return EmbeddedDefault::NotNeeded;
        }
        let path = self.server.data_dir.join(DEFAULT_MODEL_FILE);
        if !crate::engine::model_present(&path) {
            return EmbeddedDefault::Missing(path);
        }
        // The 135M reference model is small enough to hold in f32 (~0.7 GiB), which keeps
        // it on topic and makes prefill ~9x faster than 8-bit activations.
        let mut local = LocalConfig::new(path.clone());
        local.weights = LocalWeights::F32;
        let mut provider = ProviderConfig::new("local", ProviderKind::Local(local));
        provider.default_max_tokens = 512;
        self.providers.push(provider);
        self.models.push(ModelConfig {
            id: DEFAULT_MODEL_ID.to_owned(),
            aliases: Vec::new(),
            provider: Some("local".to_owned()),
            routes: Vec::new(),
            upstream_model: None,
            input_usd_per_mtok: Price::from_nanos_per_mtok(0),
            output_usd_per_mtok: Price::from_nanos_per_mtok(0),
            cached_input_usd_per_mtok: None,
            cache_write_usd_per_mtok: None,
            cache_write_1h_usd_per_mtok: None,
            reasoning_usd_per_mtok: None,
            context_length: Some(default_context_length() as u64),
            max_reported_tokens: None,
            // A 135M model answers sensibly greedy and wanders at temperature 1.
            default_params: [("temperature".to_owned(), serde_json::Value::from(0))].into(),
            price_changes: Vec::new(),
        });
        EmbeddedDefault::Serving(path)
    }

    /// Loads defaults < file < environment. `path` None means `./instagen.toml` when present.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let (text, name) = match path {
            Some(p) => (read(p)?, p.display().to_string()),
            None => {
                let default = Path::new("instagen.toml");
                if default.exists() {
                    (read(default)?, default.display().to_string())
                } else {
                    (String::new(), "<defaults>".to_owned())
                }
            }
        };
        Self::from_parts(&text, &name, &env)
    }

    /// Builds a config from TOML text plus `(name, value)` env pairs; pure, for tests.
    pub fn from_parts(
        text: &str,
        source_name: &str,
        env: &[(String, String)],
    ) -> Result<Self, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: source_name.to_owned(),
            message: e.to_string(),
        })?;
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let parts: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
            if parts.len() != 2 || parts.iter().any(String::is_empty) {
                return Err(ConfigError::Invalid(format!(
                    "environment variable {name} must look like {ENV_PREFIX}SECTION__FIELD"
                )));
            }
            let section = table
                .entry(parts[0].clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            let toml::Value::Table(section) = section else {
                return Err(ConfigError::Invalid(format!(
                    "environment variable {name}: `{}` is not a table",
                    parts[0]
                )));
            };
            section.insert(parts[1].clone(), env_value(value));
        }
        let mut config: Config = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|e| ConfigError::Key {
                key: e.path().to_string(),
                message: e.inner().message().to_owned(),
            })?;
        if config.accounts.admin_token.is_none()
            && let Some((_, token)) = env
                .iter()
                .find(|(n, v)| n == "INSTAGEN_ADMIN_TOKEN" && !v.is_empty())
        {
            config.accounts.admin_token = Some(Secret::new(token.clone()));
        }
        if let Some((_, key)) = env
            .iter()
            .find(|(n, v)| n == "INSTAGEN_MASTER_KEY" && !v.is_empty())
        {
            config.server.master_key = Some(Secret::new(key.clone()));
        }
        config.validate()?;
        config.privacy.read_text_file()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.privacy.validate()?;
        let mut names = HashSet::new();
        for p in &self.providers {
            if !names.insert(p.name.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "provider `{}` is defined twice",
                    p.name
                )));
            }
        }
        let mut ids = HashSet::new();
        for m in &self.models {
            if !ids.insert(m.id.as_str()) {
                return Err(ConfigError::Invalid(format!(
                    "model `{}` is defined twice",
                    m.id
                )));
            }
            let mut last = i64::MIN;
            for c in &m.price_changes {
                let at = crate::time::parse_rfc3339(&c.effective_from).map_err(|e| {
                    ConfigError::Invalid(format!(
                        "model `{}`: price_changes.effective_from: {e}",
                        m.id
                    ))
                })?;
                if at <= last {
                    return Err(ConfigError::Invalid(format!(
                        "model `{}`: price_changes must be in increasing effective_from order",
                        m.id
                    )));
                }
                last = at;
            }
            let routes = m.route_list();
            if routes.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "model `{}` needs `provider` or `routes`",
                    m.id
                )));
            }
            for r in &routes {
                // A provider may also come from the operator API (the store); the gateway
                // refuses to start if a name is found in neither.
                if r.weight == 0 {
                    return Err(ConfigError::Invalid(format!(
                        "model `{}`: route weight must be positive",
                        m.id
                    )));
                }
            }
        }
        if !["sqlite:", "postgres://", "postgresql://"]
            .iter()
            .any(|scheme| self.store.url.starts_with(scheme))
        {
            return Err(ConfigError::Invalid(
                "store.url must be sqlite://PATH or postgres://USER@HOST/DATABASE (got a URL with another scheme)".to_owned(),
            ));
        }
        if self.usage.queue_capacity == 0 || self.usage.batch_size == 0 {
            return Err(ConfigError::Invalid(
                "usage.queue_capacity and usage.batch_size must be positive".to_owned(),
            ));
        }
        if let Some(token) = &self.accounts.admin_token
            && token.expose().len() < 32
        {
            return Err(ConfigError::Invalid(
                "accounts.admin_token (INSTAGEN_ADMIN_TOKEN) must be at least 32 characters"
                    .to_owned(),
            ));
        }
        if self.server.worker_threads > MAX_WORKER_THREADS {
            return Err(ConfigError::Invalid(format!(
                "server.worker_threads must be at most {MAX_WORKER_THREADS} (0: one per core)"
            )));
        }
        if !(1..=MAX_EVENT_INTERVAL).contains(&self.server.event_interval) {
            return Err(ConfigError::Invalid(format!(
                "server.event_interval must be between 1 and {MAX_EVENT_INTERVAL}"
            )));
        }
        if let Some(secret) = &self.server.secret
            && secret.expose().len() < 32
        {
            return Err(ConfigError::Invalid(
                "server.secret must be at least 32 characters".to_owned(),
            ));
        }
        Ok(())
    }
}

/// The most runtime worker threads `server.worker_threads` may ask for.
pub const MAX_WORKER_THREADS: usize = 1024;

/// `server.event_interval` unless configured: at c=256 on one core, 500 to 2,000 halved
/// p99 against tokio's 61 and 200 did half as well (docs/performance.md).
pub const DEFAULT_EVENT_INTERVAL: u32 = 500;

/// The largest `server.event_interval`: past it a busy worker would leave I/O unread for
/// tens of milliseconds.
pub const MAX_EVENT_INTERVAL: u32 = 10_000;

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

/// An env value is read as a TOML scalar when it parses as one (`8080`, `true`), else as a string.
fn env_value(raw: &str) -> toml::Value {
    if let Ok(v) = raw.parse::<i64>() {
        return toml::Value::Integer(v);
    }
    match raw {
        "true" => toml::Value::Boolean(true),
        "false" => toml::Value::Boolean(false),
        _ => toml::Value::String(raw.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_listen_on_localhost_8080_with_embedded_sqlite() {
        let c = Config::from_parts("", "t", &[]).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.store.url, "sqlite://./instagen-data/instagen.db");
    }

    #[test]
    fn worker_threads_past_the_bound_are_refused() {
        let c = Config::from_parts("[server]\nworker_threads = 2\n", "t", &[]).unwrap();
        assert_eq!(c.server.worker_threads, 2);
        let err = Config::from_parts("[server]\nworker_threads = 100000\n", "t", &[]).unwrap_err();
        assert!(err.to_string().contains("server.worker_threads"), "{err}");
    }

    #[test]
    fn event_interval_defaults_to_the_gateways_and_is_bounded() {
        let c = Config::from_parts("", "t", &[]).unwrap();
        assert_eq!(c.server.event_interval, DEFAULT_EVENT_INTERVAL);
        let c = Config::from_parts("[server]\nevent_interval = 61\n", "t", &[]).unwrap();
        assert_eq!(c.server.event_interval, 61);
        for bad in ["0", "10001"] {
            let err = Config::from_parts(&format!("[server]\nevent_interval = {bad}\n"), "t", &[])
                .unwrap_err();
            assert!(
                err.to_string().contains("server.event_interval"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = Config::from_parts("[server]\nlisen = \"x\"\n", "t", &[]).unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
    }

    #[test]
    fn a_wrong_value_is_an_error_naming_its_key_as_data() {
        for (text, key) in [
            ("[usage]\nretention_days = -1\n", "usage.retention_days"),
            ("[server]\nlisten = 42\n", "server.listen"),
            (
                "[[providers]]\nname = \"p\"\nkind = \"nope\"\nbase_url = \"http://x\"\n",
                "providers[0].kind",
            ),
        ] {
            match Config::from_parts(text, "t", &[]) {
                Err(ConfigError::Key { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    /// A provider is tagged by `kind`: a setting of another kind is refused by name, a local
    /// provider without its file too, and what is accepted is exactly one kind's settings.
    #[test]
    fn provider_settings_that_do_not_fit_their_kind_are_refused_by_name() {
        for (table, key, named) in [
            (
                "kind = \"openai\"\nbase_url = \"http://x/v1\"\nthreads = 2",
                "providers[0]",
                "`threads` applies only to kind = \"local\"",
            ),
            (
                "kind = \"anthropic\"\nbase_url = \"http://x/v1\"\nresponses = \"native\"",
                "providers[0]",
                "`responses` applies only to kind = \"openai\"",
            ),
            (
                "kind = \"local\"\nbase_url = \"http://x/v1\"\npath = \"m.gguf\"",
                "providers[0]",
                "`base_url` does not apply",
            ),
            ("kind = \"local\"", "providers[0]", "`path` is required"),
            (
                "kind = \"local\"\npath = \"m.gguf\"\ncontext_length = 1",
                "providers[0]",
                "`context_length` must be between",
            ),
            (
                "kind = \"openai\"\nbase_url = \"x\"",
                "providers[0]",
                "`base_url` must",
            ),
        ] {
            let text = format!("[[providers]]\nname = \"p\"\n{table}\n");
            match Config::from_parts(&text, "t", &[]) {
                Err(ConfigError::Key { key: k, message }) => {
                    assert_eq!(k, key, "{table}");
                    assert!(message.contains(named), "{table}: {message}");
                }
                other => panic!("{table}: {other:?}"),
            }
        }
        let c = Config::from_parts(
            "[[providers]]\nname = \"e\"\nkind = \"local\"\npath = \"m.gguf\"\nmax_queue = 3\n",
            "t",
            &[],
        )
        .unwrap();
        let ProviderKind::Local(local) = &c.providers[0].kind else {
            panic!("{:?}", c.providers[0].kind)
        };
        assert_eq!((local.max_queue, local.max_sequences), (3, 2));
        assert_eq!(c.providers[0].base_url(), None);
    }

    /// Provider rows stored before the tagged kind carry the engine's settings at their
    /// defaults; they still load, and what is stored now holds one kind's settings only.
    #[test]
    fn stored_provider_rows_from_before_the_tagged_kind_still_load() {
        let old = r#"{"name":"a","kind":"anthropic","responses":"translate","base_url":"https://api.example/v1",
            "threads":0,"max_sequences":2,"max_queue":16,"context_length":2048,"weights":"quantized",
            "default_max_tokens":4096,"third_party":true,"region":"eu","connect_timeout_ms":5000,
            "ttfb_timeout_ms":120000,"idle_timeout_ms":120000,"request_timeout_ms":600000,
            "health_check_interval_ms":null,"health_check_path":"/models"}"#;
        let p = ProviderConfig::from_stored(old).unwrap();
        assert_eq!(
            p.kind,
            ProviderKind::Anthropic {
                base_url: "https://api.example/v1".to_owned()
            }
        );
        let now = serde_json::to_value(&p).unwrap();
        for gone in LOCAL_ONLY.iter().chain(&["responses"]) {
            assert!(now.get(gone).is_none(), "{gone}: {now}");
        }
        let again = ProviderConfig::from_stored(&now.to_string()).unwrap();
        assert_eq!((again.kind, again.region), (p.kind, p.region));
    }

    #[test]
    fn env_overrides_file() {
        let env = vec![(
            "INSTAGEN__SERVER__LISTEN".to_owned(),
            "127.0.0.1:9999".to_owned(),
        )];
        let c = Config::from_parts("[server]\nlisten = \"127.0.0.1:1\"\n", "t", &env).unwrap();
        assert_eq!(c.server.listen.port(), 9999);
    }

    #[test]
    fn model_must_name_a_known_provider() {
        let text = r#"
[[models]]
id = "m"
provider = "nope"
input_usd_per_mtok = "1"
output_usd_per_mtok = "2"
"#;
        // The name may still come from the operator API's stored providers, so config
        // accepts it; the gateway refuses to start when it is found in neither.
        let config = Config::from_parts(text, "t", &[]).unwrap();
        let err = crate::gateway::Gateway::from_config(&config).err().unwrap();
        assert!(
            matches!(&err, crate::gateway::SetupError::UnknownProvider { provider, .. } if provider == "nope"),
            "{err}"
        );
    }

    #[test]
    fn issue_example_config_parses() {
        let text = r#"
[server]
listen = "127.0.0.1:8080"
[store]
url = "sqlite://./instagen-data/instagen.db"
[[providers]]
name = "vllm-a"
kind = "openai"
base_url = "http://127.0.0.1:8000/v1"
api_key_env = "VLLM_A_KEY"
third_party = false
[[models]]
id = "qwen3-235b"
provider = "vllm-a"
upstream_model = "Qwen/Qwen3-235B-A22B-Instruct-2507"
input_usd_per_mtok = "0.20"
output_usd_per_mtok = "0.30"
"#;
        let c = Config::from_parts(text, "t", &[]).unwrap();
        assert_eq!(c.models[0].input_usd_per_mtok.nanos_per_mtok(), 200_000_000);
    }

    #[test]
    fn privacy_defaults_to_the_built_in_policy_version_1() {
        let c = Config::from_parts("", "t", &[]).unwrap();
        assert_eq!(c.privacy.version, "1");
        assert_eq!(c.privacy.text(), DEFAULT_PRIVACY_POLICY);
        assert!(DEFAULT_PRIVACY_POLICY.contains("never reach disk"));
        assert!(c.privacy.contact.is_none());
    }

    #[test]
    fn privacy_text_file_is_read_once_and_a_bad_one_is_a_config_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.md");
        std::fs::write(&path, "# Ours\n\nWe keep nothing.\n").unwrap();
        let text = format!(
            "[privacy]\nversion = \"2026-11\"\ncontact = \"privacy@example.com\"\ntext_file = \"{}\"\n",
            path.display()
        );
        let c = Config::from_parts(&text, "t", &[]).unwrap();
        assert_eq!(c.privacy.text(), "# Ours\n\nWe keep nothing.\n");
        assert_eq!(c.privacy.version, "2026-11");

        let missing = "[privacy]\ntext_file = \"/nonexistent/policy.md\"\n";
        let err = Config::from_parts(missing, "t", &[]).unwrap_err();
        assert!(err.to_string().contains("privacy.text_file"), "{err}");
        let both = format!(
            "[privacy]\ntext = \"x\"\ntext_file = \"{}\"\n",
            path.display()
        );
        assert!(Config::from_parts(&both, "t", &[]).is_err());
        for bad in [
            "[privacy]\nversion = \"\"\n",
            "[privacy]\ncontact = \"nobody\"\n",
            "[privacy]\ntext = \"  \"\n",
        ] {
            assert!(Config::from_parts(bad, "t", &[]).is_err(), "{bad}");
        }
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert_eq!(format!("{:?}", Secret::new("abc")), "[redacted]");
    }
}
