//! Application state, the router, and what wraps every request.
//!
//! A request meets, in order:
//! 1. `App::handle` — assigns the request id and start instant, refuses an oversized head,
//!    adds `x-request-id` and `Cache-Control: no-store` to every response, counts it by
//!    route label and logs the outcome (status and error kind only: never a body, a header
//!    value or a raw path). It wraps the router rather than each route: a route layer
//!    costs a boxed future and a service clone per request.
//! 2. `catch_panic` — a handler's panic becomes a 500 in the API's shape.
//! 3. the route handler — `/v1/*` authenticate (in-memory), reserve a usage slot, read
//!    the body (size-limited), then call the gateway. The inference routes
//!    ([`INFERENCE_ROUTES`]) are answered by `App::handle` itself; the router registers
//!    them from the same table, for their `405` on other methods.
//!
//! Errors become responses in `error.rs`; nothing else writes error bodies.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::FutureExt;

use crate::api;
use crate::billing::budget::Budgets;
use crate::config::{AccountsConfig, PrivacyConfig};
use crate::error::ErrorKind;
use crate::gateway::catalog::Catalog;
use crate::gateway::{Endpoint, Wire};
use crate::keys::{KeyCache, SecurityEvents};
use crate::limits::Limiter;
use crate::store::Store;
use crate::usage::UsageSink;

pub struct AppState {
    pub keys: Arc<KeyCache>,
    pub security: SecurityEvents,
    pub budgets: Arc<Budgets>,
    /// Output tokens reserved for requests without `max_tokens`.
    pub reserve_output_tokens: u64,
    pub accounts: AccountsConfig,
    /// The operator's privacy policy (`[privacy]`), which users acknowledge by version.
    pub privacy: PrivacyConfig,
    /// The live gateway (swapped when operators change providers).
    pub catalog: Arc<Catalog>,
    pub usage: UsageSink,
    pub store: Store,
    pub max_body_bytes: usize,
    /// Largest request head (request target and headers) answered normally; past it, 431.
    pub max_header_bytes: usize,
    pub limits: Arc<Limiter>,
    /// False while the store is unreachable (set by the key refresh loop).
    pub store_up: Arc<std::sync::atomic::AtomicBool>,
    /// Session cookies carry `Secure` (HTTPS here or at a proxy).
    pub secure_cookies: bool,
    pub metrics: Arc<crate::telemetry::metrics::Metrics>,
    /// `/metrics` is served on its own (internal) listener instead of to operators here.
    pub metrics_public: bool,
    pub usage_queue_capacity: usize,
    /// Alert rules' webhook secrets and the delivery machinery.
    pub alerts: Arc<crate::alerts::Alerts>,
    /// The trusted proxy header naming the client IP (`limits.client_ip_header`).
    pub client_ip_header: Option<HeaderName>,
}

/// Who a request was answered for, for its log line (set by the handler once the key
/// authenticated): the key and, for inference, the configured model that served it.
#[derive(Clone)]
pub struct Served {
    pub key: Arc<crate::keys::AuthedKey>,
    pub model: Option<Arc<str>>,
}

/// Per-request identity and clock, set by the outermost middleware.
#[derive(Clone)]
pub struct RequestContext {
    pub id: Arc<str>,
    pub started: Instant,
    /// The wall clock when the request arrived, in epoch milliseconds: the one reading that
    /// its key's expiry, its prices and its usage record's start are all taken at.
    pub started_ms: i64,
    /// The peer address (no proxy header is trusted yet).
    pub client_ip: Option<IpAddr>,
}

static REQUEST_ID_PREFIX: OnceLock<String> = OnceLock::new();
static REQUEST_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A request id unique across restarts: a random per-process prefix and a counter.
fn next_request_id() -> Arc<str> {
    let prefix = REQUEST_ID_PREFIX.get_or_init(|| {
        crate::keys::random_id(12).unwrap_or_else(|_| format!("{:012x}", crate::time::now_ms()))
    });
    let n = REQUEST_COUNTER.fetch_add(1, Ordering::Relaxed);
    thread_local! {
        // Written here and copied once into the id's own allocation.
        static ID: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    ID.with_borrow_mut(|id| {
        id.clear();
        write_request_id(id, prefix, n);
        Arc::from(id.as_str())
    })
}

/// `req_{prefix}{n:010x}`, written without the formatting machinery (every request).
fn write_request_id(id: &mut String, prefix: &str, n: u64) {
    id.push_str("req_");
    id.push_str(prefix);
    crate::keys::push_hex(id, n, 10);
}

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The client's address: the last one in the trusted proxy header when configured (the
/// proxy appends what it saw), else the peer's.
fn client_ip(
    req: &Request,
    trusted_header: Option<&HeaderName>,
    peer: Option<SocketAddr>,
) -> Option<IpAddr> {
    if let Some(name) = trusted_header
        && let Some(ip) = req
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|v| v.trim().parse::<IpAddr>().ok())
            .next_back()
    {
        return Some(ip);
    }
    peer.map(|p| p.ip())
}

/// The inference routes, `POST` only: what each path serves, in which wire format. The
/// router registers them from here (so that other methods get their `405`), and
/// `App::handle` answers a `POST` to one of them itself: the router would box the
/// handler's future (several KiB) and clone its service on every request.
pub const INFERENCE_ROUTES: [(&str, Endpoint, Wire); 6] = [
    ("/v1/chat/completions", Endpoint::Chat, Wire::OpenAi),
    ("/v1/completions", Endpoint::Completions, Wire::OpenAi),
    ("/v1/embeddings", Endpoint::Embeddings, Wire::OpenAi),
    (
        "/v1/audio/transcriptions",
        Endpoint::Transcriptions,
        Wire::OpenAi,
    ),
    ("/v1/responses", Endpoint::Chat, Wire::Responses),
    ("/v1/messages", Endpoint::Chat, Wire::Messages),
];

/// The inference route a request goes to, if it is a `POST` to one.
fn inference_route(req: &Request) -> Option<(Endpoint, Wire)> {
    if req.method() != Method::POST {
        return None;
    }
    let path = req.uri().path();
    INFERENCE_ROUTES
        .iter()
        .find(|(p, ..)| *p == path)
        .map(|&(_, endpoint, wire)| (endpoint, wire))
}

/// The application: the router, and around every request its context. The context is
/// applied around the router, not as a layer on each route (a route layer costs a boxed
/// future and a service clone per request); the route's label comes from the path
/// (`route_label`), as the matched route would give it.
#[derive(Clone)]
pub struct App {
    router: Router,
    state: Arc<AppState>,
}

impl App {
    /// One request, answered: assigns the request id and start instant, refuses an
    /// oversized head, catches a handler's panic, adds `x-request-id` and
    /// `Cache-Control: no-store` to the response, counts it and logs the outcome (status
    /// and error kind only: never a body, a header value or a raw path).
    pub async fn handle(mut self, mut req: Request, peer: Option<SocketAddr>) -> Response {
        let state = &self.state;
        let ctx = RequestContext {
            id: next_request_id(),
            started: Instant::now(),
            started_ms: crate::time::now_ms(),
            client_ip: client_ip(&req, state.client_ip_header.as_ref(), peer),
        };
        let route = crate::telemetry::metrics::route_label(req.uri().path());
        let head_bytes = req.uri().path_and_query().map_or(0, |p| p.as_str().len())
            + req
                .headers()
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 4)
                .sum::<usize>();
        let shape = ErrorShape::of(req.uri().path());
        let mut response = if head_bytes > state.max_header_bytes {
            let limit = state.max_header_bytes;
            shape.answer(crate::error::ApiError::HeadersTooLarge { limit }, || {
                crate::api::manage::MgmtError::new(
                    axum::http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "headers_too_large",
                    format!("the request's headers exceed the limit of {limit} bytes"),
                )
                .into_response()
            })
        } else if let Some((endpoint, wire)) = inference_route(&req) {
            // Boxed: the handler's future is several KiB, and this one is moved by value
            // into hyper's per-connection slot on every request.
            let answer = Box::pin(api::openai::answer(state, &ctx, endpoint, wire, req));
            catch_panic(shape, answer).await
        } else {
            req.extensions_mut().insert(ctx.clone());
            let router = &mut self.router;
            catch_panic(shape, async move {
                match tower_service::Service::call(router, req).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            })
            .await
        };
        let headers = response.headers_mut();
        if let Ok(v) = HeaderValue::from_str(&ctx.id) {
            headers.insert(X_REQUEST_ID.clone(), v);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let status = response.status().as_u16();
        state.metrics.http(route, status);
        if let Some(ErrorKind(kind)) = response.extensions().get::<ErrorKind>() {
            state.metrics.limited(kind);
        }
        let latency_us = ctx.started.elapsed().as_micros() as u64;
        let route = route.as_str();
        // Ids only: who asked (set by the handler once the key authenticated).
        let served = response.extensions().get::<Served>();
        let who = served.map(|s| &*s.key);
        let model = served.and_then(|s| s.model.as_deref());
        match response.extensions().get::<ErrorKind>() {
            Some(ErrorKind(kind)) if status >= 500 => {
                tracing::warn!(request_id = %ctx.id, route, status, account_id = who.map(|k| &*k.account_id), key_id = who.map(|k| &*k.key_id), model, error_kind = kind, latency_us, "request failed");
            }
            Some(ErrorKind(kind)) => {
                tracing::info!(request_id = %ctx.id, route, status, account_id = who.map(|k| &*k.account_id), key_id = who.map(|k| &*k.key_id), model, error_kind = kind, latency_us, "request refused");
            }
            None => {
                tracing::debug!(request_id = %ctx.id, route, status, account_id = who.map(|k| &*k.account_id), key_id = who.map(|k| &*k.key_id), model, latency_us, "request answered")
            }
        }
        response
    }
}

/// The error shape a path's clients read: Anthropic's, OpenAI's or the management API's.
#[derive(Clone, Copy)]
enum ErrorShape {
    Anthropic,
    OpenAi,
    Management,
}

impl ErrorShape {
    fn of(path: &str) -> Self {
        if path.starts_with("/v1/messages") {
            Self::Anthropic
        } else if path.starts_with("/v1/") {
            Self::OpenAi
        } else {
            Self::Management
        }
    }

    /// `error` answered in this shape; the management API's own error comes from
    /// `management`, since its codes are documented apart from the inference APIs'.
    fn answer(
        self,
        error: crate::error::ApiError,
        management: impl FnOnce() -> Response,
    ) -> Response {
        match self {
            Self::Anthropic => crate::error::AnthropicError(error).into_response(),
            Self::OpenAi => error.into_response(),
            Self::Management => management(),
        }
    }
}

/// A panic in a handler is a bug, never a dropped connection: the client gets a 500 in its
/// API's shape (`App::handle` adds the request id and logs it), and the log says a handler
/// panicked. The panic hook never logs the message, which could quote a request.
async fn catch_panic(shape: ErrorShape, handler: impl Future<Output = Response>) -> Response {
    match std::panic::AssertUnwindSafe(handler).catch_unwind().await {
        Ok(response) => response,
        Err(_) => {
            tracing::error!("handler panicked; answered 500");
            shape.answer(
                crate::error::ApiError::Internal,
                crate::api::manage::internal_error,
            )
        }
    }
}

pub fn router(state: Arc<AppState>) -> App {
    use crate::api::openai::inference;
    let mut router = Router::new()
        .route("/v1/models", get(api::openai::models))
        .route("/v1/models/{model}", get(api::openai::model))
        .route(
            "/v1/responses/{response_id}",
            get(api::openai::response_not_stored).delete(api::openai::response_not_stored),
        )
        .route(
            "/v1/responses/{response_id}/{action}",
            get(api::openai::response_not_stored).post(api::openai::response_not_stored),
        )
        .route("/v1/key", get(api::standing::key))
        .route(
            "/v1/generations/{request_id}",
            get(api::standing::generation),
        )
        .route(
            "/v1/messages/count_tokens",
            post(api::anthropic::count_tokens),
        );
    for (path, endpoint, wire) in INFERENCE_ROUTES {
        router = router.route(path, inference(endpoint, wire));
    }
    let router = router
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/metrics", get(api::metrics_for_operators))
        .merge(api::manage::router())
        .merge(crate::console::router())
        .fallback(api::route_not_found)
        .method_not_allowed_fallback(api::method_not_allowed)
        .with_state(state.clone());
    App { router, state }
}

/// The router of the separate metrics listener (`server.metrics_listen`): `/metrics` only.
pub fn metrics_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(api::metrics))
        .with_state(state)
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // a test's tasks end with its runtime
mod tests {
    use super::*;
    use axum::middleware::{self, Next};

    #[test]
    fn request_ids_are_the_prefix_and_a_zero_padded_hex_counter() {
        for n in [0, 1, 0xabc, 0xff_ffff_ffff, 0x100_0000_0000, u64::MAX] {
            let mut id = String::new();
            write_request_id(&mut id, "p1", n);
            assert_eq!(id, format!("req_p1{n:010x}"));
        }
        assert_ne!(next_request_id(), next_request_id());
    }

    #[test]
    fn only_a_post_to_an_inference_path_is_answered_outside_the_router() {
        let req = |method: Method, uri: &str| {
            Request::builder()
                .method(method)
                .uri(uri)
                .body(axum::body::Body::empty())
                .unwrap()
        };
        for (path, endpoint, wire) in INFERENCE_ROUTES {
            assert_eq!(
                inference_route(&req(Method::POST, path)),
                Some((endpoint, wire))
            );
            let with_query = format!("{path}?beta=true");
            assert_eq!(
                inference_route(&req(Method::POST, &with_query)),
                Some((endpoint, wire))
            );
            // Other methods get the router's 405; near misses its 404.
            assert_eq!(inference_route(&req(Method::GET, path)), None);
            assert_eq!(
                inference_route(&req(Method::POST, &format!("{path}/"))),
                None
            );
            // Every one has its own label in the HTTP metrics.
            assert_eq!(crate::telemetry::metrics::route_label(path).as_str(), path);
        }
        assert_eq!(
            inference_route(&req(Method::POST, "/v1/messages/count_tokens")),
            None
        );
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_500_in_its_apis_shape() {
        async fn boom() -> &'static str {
            panic!("boom")
        }
        let app = Router::new()
            .route("/v1/chat/completions", get(boom))
            .route("/api/v1/x", get(boom))
            .layer(middleware::from_fn(|req: Request, next: Next| {
                catch_panic(ErrorShape::of(req.uri().path()), next.run(req))
            }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = reqwest::Client::new();
        let v1 = client
            .get(format!("http://{addr}/v1/chat/completions"))
            .send()
            .await
            .unwrap();
        assert_eq!(v1.status(), 500);
        let body: serde_json::Value = v1.json().await.unwrap();
        assert_eq!(body["error"]["type"], "server_error", "{body}");
        let api = client
            .get(format!("http://{addr}/api/v1/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(api.status(), 500);
        let body: serde_json::Value = api.json().await.unwrap();
        assert_eq!(body["error"]["code"], "internal", "{body}");
        // The server lives on after both.
        let again = client
            .get(format!("http://{addr}/api/v1/x"))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 500);
    }
}
