//! The OpenAI-compatible adapter: vLLM, SGLang, llama.cpp, Ollama, OpenAI and the like.
//!
//! The upstream receives the (rewritten) JSON body, `Content-Type`, `Accept` and our
//! own `Authorization` when a key is configured — no client header, no client address.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, RETRY_AFTER};

use super::{UpstreamError, UpstreamErrorKind};
use crate::config::{ProviderConfig, Secret};
use crate::gateway::Endpoint;

/// Upstream error bodies larger than this are not read for a client message.
const MAX_ERROR_BODY: usize = 64 * 1024;

pub struct OpenAiProvider {
    name: Arc<str>,
    /// Parsed once: chat, completions and embeddings URLs.
    urls: [reqwest::Url; 3],
    /// `Bearer <key>`, read from the env variable named in config at start.
    authorization: Option<HeaderValue>,
    client: reqwest::Client,
    ttfb_timeout: Duration,
    idle_timeout: Duration,
    request_timeout: Duration,
    third_party: bool,
    region: Option<String>,
    /// Active health check: what to probe and how often.
    probe: Option<(reqwest::Url, Duration)>,
}

impl OpenAiProvider {
    pub fn new(config: &ProviderConfig) -> Result<Self, String> {
        let authorization = match &config.api_key_env {
            Some(var) => match std::env::var(var) {
                Ok(key) if !key.is_empty() => {
                    let key = Secret::new(key);
                    let mut value = HeaderValue::from_str(&format!("Bearer {}", key.expose()))
                        .map_err(|_| {
                            format!(
                                "provider `{}`: the key in ${var} is not a valid header value",
                                config.name
                            )
                        })?;
                    value.set_sensitive(true);
                    Some(value)
                }
                _ => {
                    tracing::warn!(provider = %config.name, env = %var, "api_key_env is set but the variable is empty; calling without a key");
                    None
                }
            },
            None => None,
        };
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_millis(config.connect_timeout_ms))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1024)
            .user_agent(concat!("instagen/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("provider `{}`: cannot build HTTP client: {e}", config.name))?;
        let base = config.base_url.trim_end_matches('/');
        let url = |e: Endpoint| {
            reqwest::Url::parse(&format!("{base}{}", e.path()))
                .map_err(|e| format!("provider `{}`: invalid base_url: {e}", config.name))
        };
        let urls = [
            url(Endpoint::Chat)?,
            url(Endpoint::Completions)?,
            url(Endpoint::Embeddings)?,
        ];
        Ok(Self {
            name: Arc::from(config.name.as_str()),
            urls,
            authorization,
            client,
            ttfb_timeout: Duration::from_millis(config.ttfb_timeout_ms),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            third_party: config.third_party,
            region: config.region.clone(),
            probe: match config.health_check_interval_ms {
                Some(ms) => Some((
                    reqwest::Url::parse(&format!("{base}{}", config.health_check_path)).map_err(
                        |e| format!("provider `{}`: invalid health_check_path: {e}", config.name),
                    )?,
                    Duration::from_millis(ms.max(100)),
                )),
                None => None,
            },
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The probe interval, when active health checks are on.
    pub fn probe_interval(&self) -> Option<Duration> {
        self.probe.as_ref().map(|(_, every)| *every)
    }

    /// One active health check: a 2xx within the connect + TTFB limits is healthy.
    pub async fn probe(&self) -> bool {
        let Some((url, _)) = &self.probe else {
            return true;
        };
        let mut request = self.client.get(url.clone());
        if let Some(auth) = &self.authorization {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        matches!(
            tokio::time::timeout(self.ttfb_timeout, request.send()).await,
            Ok(Ok(r)) if r.status().is_success()
        )
    }

    pub fn region(&self) -> Option<&str> {
        self.region.as_deref()
    }

    pub fn third_party(&self) -> bool {
        self.third_party
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    fn error(&self, kind: UpstreamErrorKind) -> UpstreamError {
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

    pub async fn send(
        &self,
        endpoint: Endpoint,
        body: Bytes,
    ) -> Result<reqwest::Response, UpstreamError> {
        let mut request = self
            .client
            .post(self.urls[endpoint as usize].clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json, text/event-stream")
            .body(body);
        if let Some(auth) = &self.authorization {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let response = match tokio::time::timeout(self.ttfb_timeout, request.send()).await {
            Err(_) => return Err(self.error(UpstreamErrorKind::Timeout)),
            Ok(Err(e)) => return Err(self.map_reqwest(&e)),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        if status.is_success() {
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

/// `error.message` of an OpenAI-shaped error body.
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
