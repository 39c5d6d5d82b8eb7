//! The HTTP side every adapter shares: one pooled client, the provider's credential,
//! timeouts, health probes, and the reduction of an upstream error response.
//!
//! Requests carry only what an adapter passes here plus the credential headers: no
//! client header and no client address ever reaches this module. An HTTPS upstream is
//! called through hyper-util's pooled client over rustls (HTTP/2 by ALPN, certificates
//! verified against the platform's roots); a plain-HTTP one (a self-hosted engine) through
//! our own HTTP/1.1 pool (`pool`), whose connections the request's own task drives (`h1`),
//! which costs less a request. Redirects are never
//! followed: an upstream cannot send our request, with its body and our credential,
//! somewhere else.

mod h1;
mod pool;

pub use pool::BodyError;

use std::sync::Arc;
use std::time::Duration;

use axum::http::header::{
    ACCEPT, CONTENT_TYPE, HOST, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT,
};
use axum::http::{Method, Request, Uri};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::{UpstreamError, UpstreamErrorKind};
use crate::config::{ProviderConfig, Secret};
use crate::gateway::ProviderProblem;

/// An idle upstream connection is closed after this long.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Upstream error bodies larger than this are not read for a client message.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// An upstream's answer: status, headers and a body still to be read.
pub type Response = axum::http::Response<pool::Body>;

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

static USER_AGENT_VALUE: HeaderValue =
    HeaderValue::from_static(concat!("instagen/", env!("CARGO_PKG_VERSION")));
static ACCEPT_VALUE: HeaderValue = HeaderValue::from_static("application/json, text/event-stream");

/// How requests reach the upstream.
enum Transport {
    /// Plain HTTP: our own pool of HTTP/1.1 connections to the one host, each driven by
    /// the request it is lent to.
    Plain(Arc<pool::Pool>),
    /// HTTPS: hyper-util's client, TLS and HTTP/2 by ALPN.
    Tls(Box<HttpsClient>),
}

pub struct HttpCore {
    pub name: Arc<str>,
    transport: Transport,
    /// The provider's credential, as the header(s) its API expects; marked sensitive.
    credential: Vec<(HeaderName, HeaderValue)>,
    ttfb_timeout: Duration,
    pub idle_timeout: Duration,
    request_timeout: Duration,
    pub third_party: bool,
    pub region: Option<String>,
    /// Active health check: what to probe and how often.
    probe: Option<(Uri, Duration)>,
    /// The `Host` header of a plain-HTTP upstream, built once: hyper-util would format it
    /// for every request. (Over TLS, HTTP/2 may be chosen, which sends `:authority`
    /// instead, so hyper-util keeps deciding there.)
    host: Option<HeaderValue>,
    /// A plain-HTTP upstream's header lines every request carries (`Host`, our user agent,
    /// the credential), written once: a POST's head is these and the request's own few
    /// (`HttpCore::post`), with no header map built, filled and dropped each time.
    lines: HeaderLines,
}

/// Header lines written once, the credential among them: `Debug` shows their size only.
struct HeaderLines(Box<[u8]>);

impl std::fmt::Debug for HeaderLines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HeaderLines({} bytes)", self.0.len())
    }
}

/// The provider's API key: set by the operator API (stored encrypted), else read from
/// the file or env variable named in config. Never logged.
pub fn credential(config: &ProviderConfig) -> Result<Option<Secret>, ProviderProblem> {
    if let Some(key) = &config.api_key {
        return Ok(Some(key.clone()));
    }
    if let Some(path) = &config.api_key_file {
        let text = std::fs::read_to_string(path).map_err(|source| ProviderProblem::KeyFile {
            path: path.clone(),
            source,
        })?;
        let key = text.trim();
        if key.is_empty() {
            return Err(ProviderProblem::EmptyKeyFile(path.clone()));
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

/// The `Host` header HTTP/1.1 sends to `uri`: its host, with the port unless it is the
/// scheme's default (hyper-util's rule, which it applies when none is set).
fn host_header(uri: &Uri) -> Option<HeaderValue> {
    let host = uri.host()?;
    let default = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    match uri.port_u16() {
        Some(port) if port != default => HeaderValue::from_str(&format!("{host}:{port}")).ok(),
        _ => HeaderValue::from_str(host).ok(),
    }
}

/// A sensitive header value (never printed by `Debug`).
pub fn secret_header(value: &str) -> Result<HeaderValue, ProviderProblem> {
    let mut v = HeaderValue::from_str(value).map_err(|_| ProviderProblem::KeyHeader)?;
    v.set_sensitive(true);
    Ok(v)
}

impl HttpCore {
    pub fn new(
        config: &ProviderConfig,
        credential: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<Self, ProviderProblem> {
        let mut tcp = HttpConnector::new();
        tcp.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
        tcp.set_nodelay(true);
        let base = Self::url(config, "")?;
        let https = base.scheme_str() == Some("https");
        let transport = if https {
            tcp.enforce_http(false);
            Transport::Tls(Box::new(Self::tls_client(tcp)?))
        } else {
            let mut target = base.clone().into_parts();
            target.path_and_query = Some(axum::http::uri::PathAndQuery::from_static("/"));
            let target =
                Uri::from_parts(target).map_err(|e| ProviderProblem::BaseUrl(e.to_string()))?;
            Transport::Plain(pool::Pool::new(tcp, target, IDLE_TIMEOUT))
        };
        let probe = match config.health_check_interval_ms {
            Some(ms) => Some((
                Self::url(config, &config.health_check_path)?,
                Duration::from_millis(ms.max(100)),
            )),
            None => None,
        };
        let (host, lines) = match https {
            true => (None, Vec::new()),
            false => {
                let host = host_header(&base);
                let lines = h1::header_lines(
                    host.iter()
                        .map(|h| (&HOST, h))
                        .chain([(&USER_AGENT, &USER_AGENT_VALUE)])
                        .chain(credential.iter().map(|(n, v)| (n, v))),
                );
                (host, lines)
            }
        };
        Ok(Self {
            name: Arc::from(config.name.as_str()),
            transport,
            lines: HeaderLines(lines.into_boxed_slice()),
            credential,
            ttfb_timeout: Duration::from_millis(config.ttfb_timeout_ms),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
            request_timeout: Duration::from_millis(config.request_timeout_ms),
            third_party: config.third_party,
            region: config.region.clone(),
            probe,
            host,
        })
    }

    /// hyper-util's client over rustls, verifying against the platform's roots (loaded
    /// only for an HTTPS upstream: they cost ~1.5 MiB).
    fn tls_client(tcp: HttpConnector) -> Result<HttpsClient, ProviderProblem> {
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_platform_verifier(provider)
            .map_err(|e| ProviderProblem::Tls(e.to_string()))?
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(tcp);
        Ok(Client::builder(TokioExecutor::new())
            .timer(TokioTimer::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_max_idle_per_host(1024)
            .build(connector))
    }

    /// `path` below the provider's base URL: an absolute `http` or `https` URL.
    pub fn url(config: &ProviderConfig, path: &str) -> Result<Uri, ProviderProblem> {
        let base = config.base_url().unwrap_or_default().trim_end_matches('/');
        let invalid = |why: &str| ProviderProblem::BaseUrl(why.to_owned());
        let uri: Uri = format!("{base}{path}")
            .parse()
            .map_err(|e: axum::http::uri::InvalidUri| invalid(&e.to_string()))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(invalid("the scheme must be http or https")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(invalid("no host"));
        }
        Ok(uri)
    }

    pub fn probe_interval(&self) -> Option<Duration> {
        self.probe.as_ref().map(|(_, every)| *every)
    }

    /// One active health check: a 2xx within the TTFB limit is healthy.
    pub async fn probe(&self, extra: &[(HeaderName, HeaderValue)]) -> bool {
        let Some((url, _)) = &self.probe else {
            return true;
        };
        let request = self.request(Method::GET, url, extra);
        matches!(
            tokio::time::timeout(self.ttfb_timeout, self.exchange(request, Bytes::new())).await,
            Ok(Ok(r)) if r.status().is_success()
        )
    }

    /// A request with our user agent and the credential; nothing of the client's.
    fn request(
        &self,
        method: Method,
        url: &Uri,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Request<()> {
        let mut request = Request::new(());
        *request.method_mut() = method;
        *request.uri_mut() = url.clone();
        let headers = request.headers_mut();
        headers.reserve(4 + self.credential.len() + extra.len());
        if let Some(host) = &self.host {
            headers.insert(HOST, host.clone());
        }
        headers.insert(USER_AGENT, USER_AGENT_VALUE.clone());
        for (n, v) in self.credential.iter().chain(extra) {
            headers.insert(n, v.clone());
        }
        request
    }

    pub fn error(&self, kind: UpstreamErrorKind) -> UpstreamError {
        UpstreamError::new(self.name.clone(), kind)
    }

    /// One request and its response's head, through this upstream's transport.
    fn exchange(
        &self,
        request: Request<()>,
        body: Bytes,
    ) -> impl Future<Output = Result<Response, UpstreamError>> + use<'_> {
        use futures_util::future::{Either, FutureExt};
        match &self.transport {
            Transport::Plain(pool) => {
                Either::Left(self.send_plain(pool, h1::encode(&request, body)))
            }
            Transport::Tls(client) => Either::Right(
                client
                    .request(request.map(|()| Full::new(body)))
                    .map(|r| match r {
                        Ok(response) => Ok(response.map(pool::Body::from)),
                        Err(e) => Err(self.map_error(&e, e.is_connect())),
                    }),
            ),
        }
    }

    /// One request, its head written (`h1::encode`), and its response's head, through
    /// this plain-HTTP upstream's pool.
    fn send_plain<'a>(
        &'a self,
        pool: &'a Arc<pool::Pool>,
        request: (Vec<u8>, Bytes),
    ) -> impl Future<Output = Result<Response, UpstreamError>> + use<'a> {
        use futures_util::future::FutureExt;
        pool.send(request).map(|r| {
            r.map_err(|e| {
                let connect = matches!(e, pool::Failure::Connect(_));
                self.map_error(&e, connect)
            })
        })
    }

    /// Whether a request's `extra` headers go out after the upstream's own lines
    /// (`HeaderLines`) as they would through a header map: none of them names a header
    /// those lines or the request's own give, or is given twice (a map keeps one value).
    /// (Framing headers need no check: the head leaves them out either way.)
    fn lines_take(&self, extra: &[(HeaderName, HeaderValue)]) -> bool {
        const OWN: [HeaderName; 4] = [HOST, USER_AGENT, CONTENT_TYPE, ACCEPT];
        extra.iter().enumerate().all(|(i, (name, _))| {
            !OWN.contains(name)
                && !self.credential.iter().any(|(n, _)| n == name)
                && !extra[i + 1..].iter().any(|(n, _)| n == name)
        })
    }

    /// A POST as a request with its header map (for TLS, or `extra` that `lines_take`
    /// refuses): our user agent, the credential, `extra`, the body's type and ours.
    fn post_request(
        &self,
        url: &Uri,
        content_type: HeaderValue,
        extra: &[(HeaderName, HeaderValue)],
    ) -> Request<()> {
        let mut request = self.request(Method::POST, url, extra);
        let headers = request.headers_mut();
        headers.insert(CONTENT_TYPE, content_type);
        headers.insert(ACCEPT, ACCEPT_VALUE.clone());
        request
    }

    /// The head `post_request` would give a plain-HTTP upstream, written from the
    /// upstream's lines and the request's own (`extra` as `lines_take` allows), and the
    /// body left to follow it.
    fn plain_head(
        &self,
        url: &Uri,
        content_type: &HeaderValue,
        extra: &[(HeaderName, HeaderValue)],
        body: Bytes,
    ) -> (Vec<u8>, Bytes) {
        let path = url.path_and_query().map_or("/", |p| p.as_str());
        let own = extra
            .iter()
            .map(|(n, v)| (n, v))
            .chain([(&CONTENT_TYPE, content_type), (&ACCEPT, &ACCEPT_VALUE)]);
        h1::encode_head(("POST", path), &self.lines.0, own, true, body)
    }

    /// A failed exchange: could not connect (a connect timeout counts as a timeout), or
    /// the connection broke.
    fn map_error(&self, e: &(dyn std::error::Error + 'static), connect: bool) -> UpstreamError {
        let timed_out = std::iter::successors(Some(e), |e| e.source()).any(|e| {
            e.downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
        });
        let kind = if timed_out {
            UpstreamErrorKind::Timeout
        } else if connect {
            UpstreamErrorKind::Connect
        } else {
            UpstreamErrorKind::Protocol
        };
        self.error(kind)
    }

    /// POSTs a body and waits (up to the TTFB limit) for a successful status line.
    ///
    /// Not an `async fn`: rustc keeps an async body's arguments (and locals moved into an
    /// awaited future) in its state beside that future, so each level of this exchange
    /// held the request or body twice, and every level is built and moved on each
    /// request. The request is built before the future, which holds only what it awaits.
    pub fn post(
        &self,
        url: &Uri,
        out: super::Outgoing,
        extra: &[(HeaderName, HeaderValue)],
    ) -> impl Future<Output = Result<Response, UpstreamError>> + use<'_> {
        use futures_util::future::{Either, FutureExt, ready};
        let exchange = match &self.transport {
            Transport::Plain(pool) if self.lines_take(extra) => {
                let head = self.plain_head(url, &out.content_type, extra, out.body);
                Either::Left(self.send_plain(pool, head))
            }
            _ => {
                let request = self.post_request(url, out.content_type, extra);
                Either::Right(self.exchange(request, out.body))
            }
        };
        tokio::time::timeout(self.ttfb_timeout, exchange).then(move |result| {
            match result {
                Err(_) => Either::Left(ready(Err(self.error(UpstreamErrorKind::Timeout)))),
                Ok(Err(e)) => Either::Left(ready(Err(e))),
                Ok(Ok(response)) if response.status().is_success() => {
                    Either::Left(ready(Ok(response)))
                }
                // Boxed: this cold path's future would otherwise more than double the size
                // of this one, and of every future above it.
                Ok(Ok(response)) => Either::Right(Box::pin(self.status_error(response)).map(Err)),
            }
        })
    }

    /// Reduces an upstream error response to status, kind, and (4xx only) a client message.
    async fn status_error(&self, response: Response) -> UpstreamError {
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
    pub fn read_body(
        &self,
        response: Response,
    ) -> impl Future<Output = Result<Bytes, UpstreamError>> + use<'_> {
        // Not an `async fn`: one would hold the response beside the body it moves into.
        use futures_util::FutureExt;
        tokio::time::timeout(self.request_timeout, response.into_body().collect()).map(
            move |read| match read {
                Err(_) => Err(self.error(UpstreamErrorKind::Timeout)),
                Ok(Err(_)) => Err(self.error(UpstreamErrorKind::Protocol)),
                Ok(Ok(b)) => Ok(b.to_bytes()),
            },
        )
    }
}

async fn read_limited(response: Response, limit: usize, within: Duration) -> Option<Vec<u8>> {
    let mut body = response.into_body();
    let read = async {
        let mut out = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(chunk) = frame.into_data() {
                out.extend_from_slice(&chunk);
                if out.len() > limit {
                    return None;
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_header_carries_the_port_only_when_it_is_not_the_schemes_default() {
        let host = |url: &str| host_header(&url.parse().unwrap()).unwrap();
        assert_eq!(host("http://engine:8000/v1"), "engine:8000");
        assert_eq!(host("http://engine:80/v1"), "engine");
        assert_eq!(host("http://engine/v1"), "engine");
        assert_eq!(host("http://127.0.0.1:9/v1"), "127.0.0.1:9");
        assert_eq!(host("http://[::1]:8000/v1"), "[::1]:8000");
        assert_eq!(host("https://api.example.com:443/v1"), "api.example.com");
        assert_eq!(
            host("https://api.example.com:8443/v1"),
            "api.example.com:8443"
        );
    }

    #[test]
    fn a_plain_posts_head_is_what_its_header_map_would_write() {
        use crate::config::{ProviderKind, ResponsesApi};
        let name = |n: &'static str| HeaderName::from_static(n);
        let value = |v: &'static str| HeaderValue::from_static(v);
        let credentials = [
            vec![],
            vec![(name("authorization"), secret_header("Bearer sk-1").unwrap())],
            vec![(name("x-api-key"), secret_header("k").unwrap())],
        ];
        let extras = [
            vec![],
            vec![(name("anthropic-version"), value("2023-06-01"))],
            vec![
                (name("anthropic-version"), value("2023-06-01")),
                (name("anthropic-beta"), value("b1,b2")),
            ],
            // A framing header: left out of the head by either way.
            vec![(axum::http::header::CONTENT_LENGTH, value("999"))],
        ];
        let bodies = [
            Bytes::new(),
            Bytes::from_static(b"{\"model\":\"m\"}"),
            Bytes::from(vec![b'x'; 20_000]),
        ];
        for base in ["http://engine:8000/v1", "http://engine/v1"] {
            let config = ProviderConfig::new(
                "p",
                ProviderKind::Openai {
                    base_url: base.to_owned(),
                    responses: ResponsesApi::default(),
                },
            );
            let url: Uri = format!("{base}/chat/completions?x=1").parse().unwrap();
            for credential in &credentials {
                let core = HttpCore::new(&config, credential.clone()).unwrap();
                for extra in &extras {
                    assert!(core.lines_take(extra));
                    for content_type in [value("application/json"), value("multipart/form-data")] {
                        for body in &bodies {
                            let request = core.post_request(&url, content_type.clone(), extra);
                            assert_eq!(
                                core.plain_head(&url, &content_type, extra, body.clone()),
                                h1::encode(&request, body.clone()),
                                "{base} {credential:?} {extra:?} {}",
                                body.len()
                            );
                        }
                    }
                }
                // A header the map would replace, or keep one of, goes through the map.
                for refused in [
                    vec![(CONTENT_TYPE, value("text/plain"))],
                    vec![(HOST, value("elsewhere"))],
                    vec![(name("a"), value("1")), (name("a"), value("2"))],
                ]
                .into_iter()
                .chain(
                    credential
                        .first()
                        .map(|(n, _)| vec![(n.clone(), value("other"))]),
                ) {
                    assert!(!core.lines_take(&refused), "{refused:?}");
                }
            }
        }
    }
}
