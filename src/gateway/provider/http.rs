//! The HTTP side every adapter shares: one pooled client, the provider's credential,
//! timeouts, health probes, and the reduction of an upstream error response.
//!
//! Requests carry only what an adapter passes here plus the credential headers: no
//! client header and no client address ever reaches this module.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};

use super::{UpstreamError, UpstreamErrorKind};
use crate::config::{ProviderConfig, Secret};

/// Upstream error bodies larger than this are not read for a client message.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub struct HttpCore {
    pub name: Arc<str>,
    client: reqwest::Client,
    /// The provider's credential, as the header(s) its API expects; marked sensitive.
    credential: Vec<(HeaderName, HeaderValue)>,
    ttfb_timeout: Duration,
    pub idle_timeout: Duration,
    request_timeout: Duration,
    pub third_party: bool,
    pub region: Option<String>,
    /// Active health check: what to probe and how often.
    probe: Option<(reqwest::Url, Duration)>,
}

/// The provider's API key: set by the operator API (stored encrypted), else read from
/// the file or env variable named in config. Never logged.
pub fn credential(config: &ProviderConfig) -> Result<Option<Secret>, String> {
    if let Some(key) = &config.api_key {
        return Ok(Some(key.clone()));
    }
    if let Some(path) = &config.api_key_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "provider `{}`: cannot read api_key_file {}: {e}",
                config.name,
                path.display()
            )
        })?;
        let key = text.trim();
        if key.is_empty() {
            return Err(format!(
                "provider `{}`: api_key_file {} is empty",
                config.name,
                path.display()
            ));
        }
        return Ok(Some(Secret::new(key)));
    }
    if let Some(var) = &config.api_key_env {
        match std::env::var(var) {
            Ok(key) if !key.is_empty() => return Ok(Some(Secret::new(key))),
            _ => {
                tracing::warn!(provider = %config.name, env = %var, "api_key_env is set but the variable is empty; calling without a key");
            }
        }
    }
    Ok(None)
}

/// A sensitive header value (never printed by `Debug`), or a config error naming the provider.
pub fn secret_header(provider: &str, value: &str) -> Result<HeaderValue, String> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| format!("provider `{provider}`: the API key is not a valid header value"))?;
    v.set_sensitive(true);
    Ok(v)
}

impl HttpCore {
    pub fn new(
        config: &ProviderConfig,
        credential: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .user_agent(concat!("instagen/", env!("CARGO_PKG_VERSION")))
            // An upstream cannot send our request (its body, our credential) elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("provider `{}`: cannot build HTTP client: {e}", config.name))?;
        let probe = match config.health_check_interval_ms {
            Some(ms) => Some((
                Self::url(config, &config.health_check_path)?,
                Duration::from_millis(ms.max(100)),
            )),
            None => None,
        };
        Ok(Self {
            name: Arc::from(config.name.as_str()),
            client,
            credential,
            ttfb_timeout: Duration::from_millis(config.ttfb_timeout_ms),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            third_party: config.third_party,
            region: config.region.clone(),
            probe,
        })
    }

    /// `path` below the provider's base URL.
    pub fn url(config: &ProviderConfig, path: &str) -> Result<reqwest::Url, String> {
        let base = config.base_url.trim_end_matches('/');
        reqwest::Url::parse(&format!("{base}{path}"))
            .map_err(|e| format!("provider `{}`: invalid base_url: {e}", config.name))
    }

    pub fn probe_interval(&self) -> Option<Duration> {
        self.probe.as_ref().map(|(_, every)| *every)
    }

    /// One active health check: a 2xx within the TTFB limit is healthy.
    pub async fn probe(&self, extra: &[(HeaderName, HeaderValue)]) -> bool {
        let Some((url, _)) = &self.probe else {
            return true;
        };
        let mut request = self.client.get(url.clone());
        for (n, v) in self.credential.iter().chain(extra) {
            request = request.header(n, v.clone());
        }
        matches!(
            tokio::time::timeout(self.ttfb_timeout, request.send()).await,
            Ok(Ok(r)) if r.status().is_success()
        )
    }

    pub fn error(&self, kind: UpstreamErrorKind) -> UpstreamError {
        UpstreamError::new(self.name.clone(), kind)
    }

    fn map_reqwest(&self, e: &reqwest::Error) -> UpstreamError {
        let kind = if e.is_timeout() {
            UpstreamErrorKind::Timeout
        } else if e.is_connect() {
            UpstreamErrorKind::Connect
        } else {
            UpstreamErrorKind::Protocol
        };
        self.error(kind)
    }

    /// POSTs a body and waits (up to the TTFB limit) for a successful status line.
    pub async fn post(
        &self,
        url: &reqwest::Url,
        out: super::Outgoing,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut request = self
            .client
            .post(url.clone())
            .header(CONTENT_TYPE, out.content_type)
            .header(ACCEPT, "application/json, text/event-stream")
            .body(out.body);
        for (n, v) in self.credential.iter().chain(extra) {
            request = request.header(n, v.clone());
        }
        let response = match tokio::time::timeout(self.ttfb_timeout, request.send()).await {
            Err(_) => return Err(self.error(UpstreamErrorKind::Timeout)),
            Ok(Err(e)) => return Err(self.map_reqwest(&e)),
            Ok(Ok(r)) => r,
        };
        if response.status().is_success() {
            return Ok(response);
        }
        Err(self.status_error(response).await)
    }

    /// Reduces an upstream error response to status, kind, and (4xx only) a client message.
    async fn status_error(&self, response: reqwest::Response) -> UpstreamError {
        let status = response.status().as_u16();
        let mut err = self.error(UpstreamErrorKind::Status(status));
        err.retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        if (400..500).contains(&status) && status != 401 && status != 403 {
            let body = read_limited(response, MAX_ERROR_BODY, Duration::from_secs(5)).await;
            err.client_message = body.and_then(|b| upstream_message(&b));
        }
        err
    }

    /// Reads a whole (non-stream) response body within the request timeout.
    pub async fn read_body(&self, response: reqwest::Response) -> Result<Bytes, UpstreamError> {
        match tokio::time::timeout(self.request_timeout, response.bytes()).await {
            Err(_) => Err(self.error(UpstreamErrorKind::Timeout)),
            Ok(Err(e)) => Err(self.map_reqwest(&e)),
            Ok(Ok(b)) => Ok(b),
        }
    }
}

async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
    within: Duration,
) -> Option<Vec<u8>> {
    let read = async {
        let mut out = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            out.extend_from_slice(&chunk);
            if out.len() > limit {
                return None;
            }
        }
        Some(out)
    };
    tokio::time::timeout(within, read).await.ok().flatten()
}

/// `error.message` of an error body: OpenAI's `{"error":{"message"}}` and Anthropic's
/// `{"type":"error","error":{"message"}}` alike.
fn upstream_message(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Outer {
        error: Inner,
    }
    #[derive(serde::Deserialize)]
    struct Inner {
        message: String,
    }
    serde_json::from_slice::<Outer>(body)
        .ok()
        .map(|o| o.error.message)
}
