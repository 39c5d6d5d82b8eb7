//! Provider adapters behind one enum built from config, and the upstream error they share.
//!
//! Every adapter has the same shape: build the upstream request, send it, read a
//! JSON answer, map failures into [`UpstreamError`]. Upstream error bodies are reduced
//! to a status and a kind; for a 4xx the upstream's message may go to the client, and
//! it is held in a field that never prints in `Debug` or `Display`.

mod anthropic;
mod http;
mod openai;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use anthropic::StreamTranslator;
/// The Anthropic translation on its own (for the fuzz targets).
pub mod anthropic_translation {
    pub use super::anthropic::{StreamTranslator, translate_request, translate_response};
}

use super::{BodyError, Endpoint, Request};

/// A body for the upstream and its content type.
pub struct Outgoing {
    pub body: Bytes,
    pub content_type: reqwest::header::HeaderValue,
}

impl Outgoing {
    pub fn json(body: Bytes) -> Self {
        Self {
            body,
            content_type: reqwest::header::HeaderValue::from_static("application/json"),
        }
    }
}
use crate::config::{ProviderConfig, ProviderKind};

pub enum Provider {
    OpenAi(openai::OpenAiProvider),
    Anthropic(anthropic::AnthropicProvider),
}

impl Provider {
    pub fn from_config(config: &ProviderConfig) -> Result<Self, String> {
        match config.kind {
            ProviderKind::Openai => Ok(Provider::OpenAi(openai::OpenAiProvider::new(config)?)),
            ProviderKind::Anthropic => Ok(Provider::Anthropic(anthropic::AnthropicProvider::new(
                config,
            )?)),
        }
    }

    fn core(&self) -> &http::HttpCore {
        match self {
            Provider::OpenAi(p) => &p.core,
            Provider::Anthropic(p) => &p.core,
        }
    }

    pub fn name(&self) -> &str {
        &self.core().name
    }

    /// The upstream body for this provider's API (rewritten, minimised or translated).
    pub fn build_body(
        &self,
        endpoint: Endpoint,
        request: &Request<'_>,
        upstream_model: &str,
        stream: bool,
    ) -> Result<Outgoing, BodyError> {
        match self {
            Provider::OpenAi(p) => p.build_body(endpoint, request, upstream_model, stream),
            Provider::Anthropic(p) => match request {
                Request::Json(inspected) => p
                    .build_body(endpoint, inspected, upstream_model, stream)
                    .map(Outgoing::json),
                Request::Form(..) => Err(BodyError::field(
                    "model",
                    "this model supports only /v1/chat/completions",
                )),
            },
        }
    }

    /// Sends the request and waits for a successful status line and headers.
    pub async fn send(
        &self,
        endpoint: Endpoint,
        body: Outgoing,
    ) -> Result<reqwest::Response, UpstreamError> {
        match self {
            Provider::OpenAi(p) => p.send(endpoint, body).await,
            Provider::Anthropic(p) => p.send(body).await,
        }
    }

    /// Reads a whole (non-stream) response body, as an OpenAI-shaped JSON answer.
    pub async fn read_body(&self, response: reqwest::Response) -> Result<Bytes, UpstreamError> {
        let body = self.core().read_body(response).await?;
        match self {
            Provider::OpenAi(_) => Ok(body),
            Provider::Anthropic(p) => p.translate_response(&body),
        }
    }

    /// Turns this provider's stream events into OpenAI chunks, when it speaks another wire format.
    pub fn stream_translator(&self) -> Option<StreamTranslator> {
        match self {
            Provider::OpenAi(_) => None,
            Provider::Anthropic(_) => Some(StreamTranslator::default()),
        }
    }

    /// How often to probe the provider, when active health checks are on.
    pub fn probe_interval(&self) -> Option<Duration> {
        self.core().probe_interval()
    }

    /// One active health check.
    pub async fn probe(&self) -> bool {
        match self {
            Provider::OpenAi(p) => p.core.probe(&[]).await,
            Provider::Anthropic(p) => p.core.probe(&p.version_header()).await,
        }
    }

    /// Where the provider processes data, when configured.
    pub fn region(&self) -> Option<&str> {
        self.core().region.as_deref()
    }

    /// A third party gets minimised bodies (see `body.rs`).
    pub fn third_party(&self) -> bool {
        self.core().third_party
    }

    /// Longest silence allowed between two stream chunks.
    pub fn idle_timeout(&self) -> Duration {
        self.core().idle_timeout
    }
}

/// What went wrong upstream, as far as a log or a record may say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamErrorKind {
    /// Could not connect (refused, DNS, TLS).
    Connect,
    /// No response headers within the time-to-first-byte limit, or the body took too long.
    Timeout,
    /// The upstream answered with this non-success status.
    Status(u16),
    /// The answer was not what the protocol promises.
    Protocol,
}

pub struct UpstreamError {
    pub provider: Arc<str>,
    pub kind: UpstreamErrorKind,
    /// The upstream's own message for a 4xx, shown to the client only; never logged or stored.
    pub client_message: Option<String>,
    /// Seconds the upstream asked us to wait (429/503 `Retry-After`).
    pub retry_after: Option<u64>,
}

impl UpstreamError {
    pub fn new(provider: Arc<str>, kind: UpstreamErrorKind) -> Self {
        Self {
            provider,
            kind,
            client_message: None,
            retry_after: None,
        }
    }

    /// Whether another attempt (possibly elsewhere) may succeed: what failover asks.
    pub fn is_retryable(&self) -> bool {
        match self.kind {
            UpstreamErrorKind::Connect | UpstreamErrorKind::Timeout => true,
            UpstreamErrorKind::Status(s) => s == 429 || s >= 500,
            UpstreamErrorKind::Protocol => false,
        }
    }
}

impl fmt::Debug for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamError")
            .field("provider", &self.provider)
            .field("kind", &self.kind)
            .field("retry_after", &self.retry_after)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            UpstreamErrorKind::Connect => write!(f, "provider {} is unreachable", self.provider),
            UpstreamErrorKind::Timeout => write!(f, "provider {} timed out", self.provider),
            UpstreamErrorKind::Status(s) => {
                write!(f, "provider {} answered HTTP {s}", self.provider)
            }
            UpstreamErrorKind::Protocol => {
                write!(f, "provider {} sent an invalid response", self.provider)
            }
        }
    }
}

impl std::error::Error for UpstreamError {}
