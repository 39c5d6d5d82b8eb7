//! Provider adapters behind one enum built from config, and the upstream error they share.
//!
//! Every adapter has the same shape: build the upstream request, send it, read a
//! JSON answer, map failures into [`UpstreamError`]. Upstream error bodies are reduced
//! to a status and a kind; for a 4xx the upstream's message may go to the client, and
//! it is held in a field that never prints in `Debug` or `Display`.

mod anthropic;
mod http;
mod local;
mod openai;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::wire::{Native, ProtocolHeaders, Wire};
pub use anthropic::StreamTranslator;
/// The Anthropic translation on its own (for the fuzz targets).
pub mod anthropic_translation {
    pub use super::anthropic::{
        StreamTranslator, reported_usage, translate_request, translate_response,
    };
}

use super::{BodyError, Endpoint, Request};

/// A body for the upstream and its content type; for the built-in engine, the checked job.
pub struct Outgoing {
    pub body: Bytes,
    pub content_type: axum::http::HeaderValue,
    job: Option<Box<local::Job>>,
    /// Set when the body is the client's own format, served natively by the provider.
    native: Option<Wire>,
    /// Protocol headers the client sent for a native upstream (Anthropic's).
    headers: ProtocolHeaders,
}

impl Outgoing {
    pub fn json(body: Bytes) -> Self {
        Self {
            body,
            content_type: axum::http::HeaderValue::from_static("application/json"),
            job: None,
            native: None,
            headers: Vec::new(),
        }
    }

    /// The client's own format for a provider that serves it; Anthropic's protocol headers
    /// go to an Anthropic upstream only (a Responses upstream has no use for them).
    fn native(body: Bytes, native: &Native<'_>) -> Self {
        Self {
            native: Some(native.wire),
            headers: match native.wire {
                Wire::Messages => super::wire::protocol_headers(native.headers),
                _ => Vec::new(),
            },
            ..Self::json(body)
        }
    }

    fn local(job: local::Job) -> Self {
        Self {
            job: Some(Box::new(job)),
            ..Self::json(Bytes::new())
        }
    }
}

/// A provider's answer once it has started: an HTTP response, or the built-in engine's.
pub enum Upstream {
    Http(http::Response),
    Local(local::LocalAnswer),
}

/// Upstream body bytes as they arrive; an error means the connection broke (the built-in
/// engine's streams never fail).
pub type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<Bytes, http::BodyError>> + Send>>;

impl Upstream {
    /// The body as a byte stream, and the live token counts when the engine is local.
    pub fn into_stream(self) -> (ByteStream, Option<Arc<crate::engine::LiveCounts>>) {
        match self {
            Upstream::Http(response) => {
                use http_body_util::BodyExt;
                let body = response.into_body().into_data_stream();
                (Box::pin(body), None)
            }
            Upstream::Local(local::LocalAnswer::Stream { frames, live }) => {
                let stream = futures_util::stream::unfold(frames, |mut rx| async move {
                    rx.recv().await.map(|b| (Ok(b), rx))
                });
                (Box::pin(stream), Some(live))
            }
            Upstream::Local(local::LocalAnswer::Json(body)) => (
                Box::pin(futures_util::stream::once(async move { Ok(body) })),
                None,
            ),
        }
    }

    /// The upstream's content type, when it sent one.
    pub fn content_type(&self) -> Option<&axum::http::HeaderValue> {
        match self {
            Upstream::Http(r) => r.headers().get(axum::http::header::CONTENT_TYPE),
            Upstream::Local(_) => None,
        }
    }
}
use crate::config::{ProviderConfig, ProviderKind};

pub enum Provider {
    OpenAi(openai::OpenAiProvider),
    Anthropic(anthropic::AnthropicProvider),
    /// The built-in engine, in-process.
    Local(local::LocalProvider),
}

impl Provider {
    pub fn from_config(config: &ProviderConfig) -> Result<Self, super::SetupError> {
        Self::build(config).map_err(|problem| problem.of(&config.name))
    }

    fn build(config: &ProviderConfig) -> Result<Self, super::ProviderProblem> {
        match &config.kind {
            ProviderKind::Openai { .. } => {
                Ok(Provider::OpenAi(openai::OpenAiProvider::new(config)?))
            }
            ProviderKind::Anthropic { .. } => Ok(Provider::Anthropic(
                anthropic::AnthropicProvider::new(config)?,
            )),
            ProviderKind::Local(local) => {
                let engine =
                    crate::engine::shared(config, local).map_err(super::ProviderProblem::Engine)?;
                Ok(Provider::Local(local::LocalProvider::new(config, engine)))
            }
        }
    }

    fn core(&self) -> Option<&http::HttpCore> {
        match self {
            Provider::OpenAi(p) => Some(&p.core),
            Provider::Anthropic(p) => Some(&p.core),
            Provider::Local(_) => None,
        }
    }

    pub fn name(&self) -> &str {
        self.shared_name()
    }

    /// The name as the usage record holds it (shared, not copied).
    pub fn shared_name(&self) -> &Arc<str> {
        match self {
            Provider::OpenAi(p) => &p.core.name,
            Provider::Anthropic(p) => &p.core.name,
            Provider::Local(p) => &p.name,
        }
    }

    /// The built-in engine behind a `local` provider.
    pub fn engine(&self) -> Option<&Arc<crate::engine::Engine>> {
        match self {
            Provider::Local(p) => Some(p.engine()),
            _ => None,
        }
    }

    /// The provider broke its protocol (an answer of the wrong shape).
    pub fn protocol_error(&self) -> UpstreamError {
        UpstreamError::new(Arc::from(self.name()), UpstreamErrorKind::Protocol)
    }

    /// Counts a Messages request's input tokens by the model's own count, when the
    /// provider has one: Anthropic's endpoint (`body`), the built-in engine's tokenizer
    /// (`chat`, the request translated); `None` otherwise.
    pub async fn count_tokens(
        &self,
        body: &[u8],
        chat: &[u8],
        upstream_model: &str,
        headers: &ProtocolHeaders,
    ) -> Option<Result<u64, ApiCountError>> {
        match self {
            Provider::Anthropic(p) => {
                let body = match super::wire::messages::count_body(body, upstream_model) {
                    Ok(b) => b,
                    Err(e) => return Some(Err(ApiCountError::Body(e))),
                };
                Some(
                    p.count_tokens(body, headers)
                        .await
                        .map_err(ApiCountError::Upstream),
                )
            }
            Provider::Local(p) => Some(
                super::inspect(Endpoint::Chat, chat)
                    .and_then(|i| p.count_prompt(&i, upstream_model))
                    .map_err(ApiCountError::Body),
            ),
            Provider::OpenAi(_) => None,
        }
    }

    /// Whether this provider speaks `wire` itself (then it gets the client's own body).
    pub fn serves(&self, wire: Wire) -> bool {
        match self {
            Provider::OpenAi(p) => wire == Wire::Responses && p.responses_native,
            Provider::Anthropic(_) => wire == Wire::Messages,
            Provider::Local(_) => false,
        }
    }

    /// The upstream body for this provider's API (rewritten, minimised or translated);
    /// `native` is the client's own body when this provider serves its format.
    pub fn build_body(
        &self,
        endpoint: Endpoint,
        request: &Request<'_>,
        native: Option<&Native<'_>>,
        upstream_model: &str,
        stream: bool,
    ) -> Result<Outgoing, BodyError> {
        if let Some(n) = native {
            let split;
            let fields = match n.fields {
                Some(fields) => fields,
                None => {
                    split = super::body::fields(n.body)?;
                    &split
                }
            };
            let body = match n.wire {
                Wire::Messages => super::wire::messages::native_body(fields, upstream_model)?,
                _ => super::wire::responses::native_body(fields, upstream_model)?,
            };
            return Ok(Outgoing::native(body, n));
        }
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
            Provider::Local(p) => match request {
                Request::Json(inspected) => p
                    .build_job(endpoint, inspected, upstream_model, stream)
                    .map(Outgoing::local),
                Request::Form(..) => Err(BodyError::field(
                    "model",
                    "this model supports only /v1/chat/completions and /v1/completions",
                )),
            },
        }
    }

    /// Sends the request and waits for a successful status line and headers. An HTTP
    /// provider's URL and headers are chosen here and its one `post` returned, mapped: a
    /// provider's own `async fn` around it would be one more future, built and copied on
    /// every request.
    pub fn send(
        &self,
        endpoint: Endpoint,
        mut body: Outgoing,
    ) -> impl Future<Output = Result<Upstream, UpstreamError>> + use<'_> {
        // Not an `async fn` either: one keeps its arguments' space for its whole life,
        // beside the future they move into (see `HttpCore::post`).
        use futures_util::future::{Either, FutureExt, ready};
        let (core, url, extra) = match self {
            Provider::OpenAi(p) => (&p.core, p.url(endpoint, &body), Vec::new()),
            Provider::Anthropic(p) => (&p.core, &p.url, p.headers(&mut body)),
            Provider::Local(p) => {
                return Either::Right(match body.job {
                    Some(job) => Either::Left(p.send(*job).map(|r| r.map(Upstream::Local))),
                    None => Either::Right(ready(Err(UpstreamError::new(
                        p.name.clone(),
                        UpstreamErrorKind::Protocol,
                    )))),
                });
            }
        };
        Either::Left(core.post(url, body, &extra).map(|r| r.map(Upstream::Http)))
    }

    /// Reads a whole (non-stream) response body: an OpenAI-shaped JSON answer, or the
    /// client's own format when the request went out natively.
    pub fn read_body(
        &self,
        upstream: Upstream,
        native: bool,
    ) -> impl Future<Output = Result<Bytes, UpstreamError>> + use<'_> {
        // Not an `async fn`, as `send`: the upstream's response would be kept beside the
        // body it moves into, and the whole copied into the request's future.
        use futures_util::future::{Either, FutureExt, ready};
        let protocol_error =
            || UpstreamError::new(Arc::from(self.name()), UpstreamErrorKind::Protocol);
        let response = match upstream {
            Upstream::Http(response) => response,
            Upstream::Local(local::LocalAnswer::Json(body)) => {
                return Either::Right(ready(Ok(body)));
            }
            Upstream::Local(local::LocalAnswer::Stream { .. }) => {
                return Either::Right(ready(Err(protocol_error())));
            }
        };
        let Some(core) = self.core() else {
            return Either::Right(ready(Err(protocol_error())));
        };
        Either::Left(core.read_body(response).map(move |body| {
            let body = body?;
            match self {
                Provider::Anthropic(p) if !native => p.translate_response(&body),
                _ => Ok(body),
            }
        }))
    }

    /// Turns this provider's stream events into OpenAI chunks (for metering, and for the
    /// client unless `native`), when it streams another wire format.
    pub fn stream_translator(&self, native: Option<Wire>) -> Option<EventTranslator> {
        match (self, native) {
            (Provider::Anthropic(_), _) => {
                Some(EventTranslator::Anthropic(StreamTranslator::default()))
            }
            (Provider::OpenAi(_), Some(Wire::Responses)) => Some(EventTranslator::Responses(
                super::wire::responses::UpstreamTranslator,
            )),
            _ => None,
        }
    }

    /// How often to probe the provider, when active health checks are on.
    pub fn probe_interval(&self) -> Option<Duration> {
        self.core().and_then(http::HttpCore::probe_interval)
    }

    /// One active health check.
    pub async fn probe(&self) -> bool {
        match self {
            Provider::OpenAi(p) => p.core.probe(&[]).await,
            Provider::Anthropic(p) => p.core.probe(&p.version_header()).await,
            Provider::Local(_) => true,
        }
    }

    /// Where the provider processes data, when configured.
    pub fn region(&self) -> Option<&str> {
        match self {
            Provider::Local(p) => p.region.as_deref(),
            _ => self.core().and_then(|c| c.region.as_deref()),
        }
    }

    /// A third party gets minimised bodies (see `body.rs`).
    pub fn third_party(&self) -> bool {
        self.core().is_some_and(|c| c.third_party)
    }

    /// Longest silence allowed between two stream chunks.
    pub fn idle_timeout(&self) -> Duration {
        match self {
            Provider::Local(p) => p.idle_timeout,
            _ => self
                .core()
                .map_or(Duration::from_secs(120), |c| c.idle_timeout),
        }
    }
}

/// An upstream's stream events of another format, as OpenAI chat chunks.
pub enum EventTranslator {
    Anthropic(StreamTranslator),
    Responses(super::wire::responses::UpstreamTranslator),
}

impl EventTranslator {
    pub fn on_event(&mut self, data: &[u8], out: &mut Vec<Bytes>) {
        match self {
            EventTranslator::Anthropic(t) => t.on_event(data, out),
            EventTranslator::Responses(t) => t.on_event(data, out),
        }
    }

    /// Counts the upstream reported before its final usage (Anthropic's `message_start`
    /// gives the prompt's), for billing a stream that ends early.
    pub fn reported_so_far(&self) -> Option<super::UpstreamUsage> {
        match self {
            EventTranslator::Anthropic(t) => t.reported_so_far(),
            EventTranslator::Responses(_) => None,
        }
    }
}

/// Why an exact token count failed.
pub enum ApiCountError {
    Body(BodyError),
    Upstream(UpstreamError),
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
