//! A scriptable fake OpenAI-compatible upstream, served over real TCP.
//!
//! InstaGen's integration tests and load bench put it where a vLLM, SGLang or
//! third-party API would be. It answers:
//!
//! - `GET /v1/models` and `POST /v1/embeddings` (JSON);
//! - `POST /v1/chat/completions` (JSON or SSE), with the scripted reasoning
//!   (`reasoning_content`) and tool call (`tool_calls`, id `call_mock`) when set;
//! - `POST /v1/completions` (JSON or SSE);
//! - `POST /v1/responses`, OpenAI's Responses API (response `resp_mock`, message
//!   item `msg_mock`, function call item `fc_mock`/`call_mock`, and a reasoning item
//!   `rs_mock` when the request includes `reasoning.encrypted_content`), streamed as
//!   named SSE events with sequence numbers;
//! - Anthropic's `POST /v1/messages` in its own wire format (JSON or named SSE events,
//!   with a thinking block signed `sig_mock` and a `tool_use` block when scripted) and
//!   `POST /v1/messages/count_tokens` (JSON);
//! - `POST /v1/audio/transcriptions` (JSON or plain text);
//!
//! and records every request it receives so tests can assert exactly what an upstream saw.
//!
//! Behaviour is scripted per request: [`MockUpstream::push`] queues a [`Script`]
//! that the next request consumes; when the queue is empty the default script
//! ([`MockUpstream::set_default`]) applies. Nothing here belongs to the product.
#![allow(clippy::disallowed_methods)] // a test fixture, not the product: its tasks and exits need no tracking

pub mod floor;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// How the mock answers one request.
#[derive(Clone, Debug)]
pub struct Script {
    /// HTTP status to answer with; anything but 200 yields an OpenAI-shaped error.
    pub status: u16,
    /// Wait before sending response headers (drives time-to-first-byte timeouts).
    pub delay: Duration,
    /// Wait between SSE chunks.
    pub chunk_delay: Duration,
    /// Leave `usage` out of the JSON body and out of the stream, like engines that never send it.
    pub omit_usage: bool,
    /// Abort the connection after this many content chunks (a stream cut halfway).
    pub cut_after_chunks: Option<usize>,
    /// On an error status, echo the whole request body inside the error message,
    /// as real engines do (see the llama-cpp-python capture).
    pub echo_body_in_error: bool,
    /// The words of the reply; each becomes one stream chunk and one completion token.
    pub reply: Vec<String>,
    /// Reported `prompt_tokens_details.cached_tokens`, when set.
    pub cached_tokens: Option<u64>,
    /// Prompt tokens reported as written to the cache for 5 minutes and for an hour: on
    /// the chat route `prompt_tokens_details.cache_write_tokens` (their sum, as OpenRouter
    /// reports it); on the Anthropic route `cache_creation_input_tokens` with its
    /// `cache_creation.ephemeral_5m/1h_input_tokens` split.
    pub cache_write_tokens: Option<(u64, u64)>,
    /// Reported reasoning tokens (a part of the completion): `completion_tokens_details`
    /// on the chat route, `output_tokens_details` on the Responses route.
    pub reasoning_tokens: Option<u64>,
    /// Report these (prompt, completion) token counts instead of the real ones, as a
    /// broken or hostile upstream might.
    pub reported_tokens: Option<(u64, u64)>,
    /// Add a `Retry-After` header (seconds) to an error response.
    pub retry_after: Option<u64>,
    /// Replay these exact SSE bytes as the stream (e.g. a real engine's capture).
    pub raw_sse: Option<Bytes>,
    /// Answer (after the reply text) with a call of this tool: (name, JSON arguments).
    /// The chat, Responses and Anthropic Messages routes act on it (not `/v1/completions`).
    pub tool_call: Option<(String, String)>,
    /// Reasoning text sent before the reply: `reasoning_content` on the chat route, a
    /// thinking block (signature `sig_mock`) on the Anthropic Messages route.
    pub reasoning: Option<String>,
}

impl Default for Script {
    fn default() -> Self {
        Self {
            status: 200,
            delay: Duration::ZERO,
            chunk_delay: Duration::ZERO,
            omit_usage: false,
            cut_after_chunks: None,
            echo_body_in_error: false,
            reply: words("Hello from the mock upstream."),
            cached_tokens: None,
            cache_write_tokens: None,
            reasoning_tokens: None,
            reported_tokens: None,
            retry_after: None,
            raw_sse: None,
            tool_call: None,
            reasoning: None,
        }
    }
}

impl Script {
    /// A script answering with an error status.
    pub fn status(status: u16) -> Self {
        Self {
            status,
            ..Self::default()
        }
    }

    /// A script answering with the given reply text (split into word tokens).
    pub fn reply(text: &str) -> Self {
        Self {
            reply: words(text),
            ..Self::default()
        }
    }
}

/// Splits text into word tokens that keep their leading space, as BPE tokenizers do.
pub fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for ch in text.chars() {
        if ch == ' ' && !current.is_empty() {
            out.push(std::mem::take(&mut current));
        }
        current.push(ch);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// One request as the mock received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Recorded {
    /// The body parsed as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The value of a header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Shared {
    queue: Mutex<VecDeque<Script>>,
    default: Mutex<Script>,
    recorded: Mutex<Vec<Recorded>>,
    record: std::sync::atomic::AtomicBool,
    /// Streams whose body was dropped before it finished (the client went away).
    cancelled_streams: AtomicU64,
    /// Streams that sent everything they meant to.
    completed_streams: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A running mock upstream; stops when dropped.
pub struct MockUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _stop: oneshot::Sender<()>,
}

impl MockUpstream {
    /// Starts a mock on `127.0.0.1:0` that records requests.
    pub async fn start() -> std::io::Result<Self> {
        Self::bind("127.0.0.1:0".parse().map_err(std::io::Error::other)?, true).await
    }

    /// Starts a mock on `addr`; `record` keeps every request in memory (off for load benches).
    pub async fn bind(addr: SocketAddr, record: bool) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        shared.record.store(record, Ordering::Relaxed);
        let app = router(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let serve = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            });
            let _ = serve.await;
        });
        Ok(Self {
            addr,
            shared,
            _stop: stop,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to configure as a provider's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Queues a script for the next request.
    pub fn push(&self, script: Script) {
        lock(&self.shared.queue).push_back(script);
    }

    /// Sets the script used when the queue is empty.
    pub fn set_default(&self, script: Script) {
        *lock(&self.shared.default) = script;
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.shared.recorded).clone()
    }

    /// How many streams were abandoned by the client before they finished.
    pub fn cancelled_streams(&self) -> u64 {
        self.shared.cancelled_streams.load(Ordering::SeqCst)
    }

    /// How many streams ran to their end.
    pub fn completed_streams(&self) -> u64 {
        self.shared.completed_streams.load(Ordering::SeqCst)
    }
}

/// The mock's routes, for embedding in another server.
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/responses", post(responses))
        .route("/v1/messages", post(anthropic_messages))
        .route("/v1/messages/count_tokens", post(anthropic_count_tokens))
        .route("/v1/audio/transcriptions", post(transcriptions))
        .with_state(shared)
}

/// Runs a mock forever on `addr` (the `mock-upstream` binary).
pub async fn serve_forever(addr: SocketAddr, default: Script) -> std::io::Result<()> {
    let mock = MockUpstream::bind(addr, false).await?;
    mock.set_default(default);
    println!("mock-upstream listening on {}", mock.addr());
    std::future::pending::<()>().await;
    Ok(())
}

async fn models() -> Response {
    axum::Json(json!({
        "object": "list",
        "data": [{"id": "mock-model", "object": "model", "owned_by": "mock", "created": 0}]
    }))
    .into_response()
}

/// A request's start, the same on every route: takes its script, waits the scripted
/// delay, and answers a scripted error status in `wire`'s error shape.
async fn begin(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
    wire: Wire,
) -> Result<Script, Response> {
    let script = take_script(shared, method, uri, headers, body);
    if !script.delay.is_zero() {
        tokio::time::sleep(script.delay).await;
    }
    if script.status != 200 {
        return Err(error_response(&script, body, wire));
    }
    Ok(script)
}

fn take_script(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Script {
    if shared.record.load(Ordering::Relaxed) {
        let headers = headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        lock(&shared.recorded).push(Recorded {
            method: method.to_string(),
            path: uri.path().to_owned(),
            headers,
            body: body.clone(),
        });
    }
    let queued = lock(&shared.queue).pop_front();
    queued.unwrap_or_else(|| lock(&shared.default).clone())
}

/// Which API's error shape to answer in.
#[derive(Clone, Copy)]
enum Wire {
    OpenAi,
    Anthropic,
}

/// The scripted error status in `wire`'s JSON shape, with the scripted `Retry-After`.
fn error_response(script: &Script, body: &Bytes, wire: Wire) -> Response {
    let message = match (script.echo_body_in_error, wire) {
        (true, Wire::OpenAi) => format!(
            "1 validation error: input was {}",
            String::from_utf8_lossy(body)
        ),
        (true, Wire::Anthropic) => format!("invalid request: {}", String::from_utf8_lossy(body)),
        (false, _) => format!("mock upstream failure {}", script.status),
    };
    let json = match wire {
        Wire::OpenAi => {
            json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}})
        }
        Wire::Anthropic => {
            let kind = match script.status {
                429 => "rate_limit_error",
                529 => "overloaded_error",
                400 => "invalid_request_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
    };
    let status = StatusCode::from_u16(script.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(json)).into_response();
    if let Some(secs) = script.retry_after
        && let Ok(v) = header::HeaderValue::from_str(&secs.to_string())
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Counts whitespace-separated words in every string under `value`: the mock's "tokenizer".
fn count_words(value: &Value) -> u64 {
    match value {
        Value::String(s) => s.split_whitespace().count() as u64,
        Value::Array(items) => items.iter().map(count_words).sum(),
        Value::Object(map) => map
            .iter()
            .filter(|(k, _)| {
                k.as_str() == "content" || k.as_str() == "text" || k.as_str() == "messages"
            })
            .map(|(_, v)| count_words(v))
            .sum(),
        _ => 0,
    }
}

fn usage(script: &Script, prompt_tokens: u64, completion_tokens: u64) -> Value {
    let (prompt_tokens, completion_tokens) = script
        .reported_tokens
        .unwrap_or((prompt_tokens, completion_tokens));
    let mut u = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens.saturating_add(completion_tokens),
    });
    if let Some(cached) = script.cached_tokens {
        u["prompt_tokens_details"] = json!({"cached_tokens": cached});
    }
    if let Some((five, hour)) = script.cache_write_tokens {
        u["prompt_tokens_details"]["cache_write_tokens"] = json!(five + hour);
    }
    if let Some(reasoning) = script.reasoning_tokens {
        u["completion_tokens_details"] = json!({"reasoning_tokens": reasoning});
    }
    u
}

/// Splits `s` in two halves, on a char boundary (how the mock streams tool arguments).
fn split_half(s: &str) -> (&str, &str) {
    let mut mid = s.len() / 2;
    while !s.is_char_boundary(mid) {
        mid -= 1;
    }
    s.split_at(mid)
}

/// An SSE response replaying `events`, cut after event `cut_at` and paced by `delay`.
fn sse_response(
    events: Vec<Bytes>,
    cut_at: Option<usize>,
    delay: Duration,
    shared: Arc<Shared>,
) -> Response {
    let stream = MockStream {
        events: events.into(),
        sent: 0,
        cut_at,
        delay,
        sleep: None,
        shared,
        finished: false,
    };
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Chat,
    Completion,
}

async fn chat(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    generate(shared, Kind::Chat, method, uri, headers, body).await
}

async fn completions(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    generate(shared, Kind::Completion, method, uri, headers, body).await
}

async fn generate(
    shared: Arc<Shared>,
    kind: Kind,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let script = match begin(&shared, &method, &uri, &headers, &body, Wire::OpenAi).await {
        Ok(script) => script,
        Err(scripted_error) => return scripted_error,
    };
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response();
    };
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-model")
        .to_owned();
    let prompt_tokens = match kind {
        Kind::Chat => count_words(req.get("messages").unwrap_or(&Value::Null)),
        Kind::Completion => count_words(req.get("prompt").unwrap_or(&Value::Null)),
    };
    let completion_tokens = script.reply.len() as u64;
    // Reasoning and tool calls only exist on the chat wire.
    let (reasoning, tool_call) = match kind {
        Kind::Chat => (script.reasoning.as_deref(), script.tool_call.as_ref()),
        Kind::Completion => (None, None),
    };
    let finish_reason = if tool_call.is_some() {
        "tool_calls"
    } else {
        "stop"
    };
    let stream = req.get("stream").and_then(Value::as_bool).unwrap_or(false);
    if !stream {
        let text = script.reply.concat();
        let mut out = match kind {
            Kind::Chat => {
                let mut message = json!({"role": "assistant", "content": text});
                if let Some(reasoning) = reasoning {
                    message["reasoning_content"] = json!(reasoning);
                }
                if let Some((name, args)) = tool_call {
                    if text.is_empty() {
                        message["content"] = Value::Null;
                    }
                    message["tool_calls"] = json!([{"id": "call_mock", "type": "function",
                                                    "function": {"name": name, "arguments": args}}]);
                }
                json!({
                    "id": "chatcmpl-mock", "object": "chat.completion", "created": 1, "model": model,
                    "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish_reason}],
                })
            }
            Kind::Completion => json!({
                "id": "cmpl-mock", "object": "text_completion", "created": 1, "model": model,
                "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "stop"}],
            }),
        };
        if !script.omit_usage {
            out["usage"] = usage(&script, prompt_tokens, completion_tokens);
        }
        return axum::Json(out).into_response();
    }
    let include_usage = req
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if let Some(raw) = &script.raw_sse {
        return sse_response(vec![raw.clone()], None, Duration::ZERO, shared);
    }
    let mut events: Vec<Bytes> = Vec::new();
    let chunk = |choices: Value, usage: Option<Value>| -> Bytes {
        let mut c = match kind {
            Kind::Chat => {
                json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1, "model": model, "choices": choices})
            }
            Kind::Completion => {
                json!({"id": "cmpl-mock", "object": "text_completion", "created": 1, "model": model, "choices": choices})
            }
        };
        if let Some(u) = usage {
            c["usage"] = u;
        }
        Bytes::from(format!("data: {c}\n\n"))
    };
    let delta = |delta: Value| -> Bytes {
        chunk(
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": null}]),
            None,
        )
    };
    if kind == Kind::Chat {
        events.push(delta(json!({"role": "assistant"})));
    }
    if let Some(reasoning) = reasoning {
        events.push(delta(json!({"reasoning_content": reasoning})));
    }
    let content_start = events.len();
    for word in &script.reply {
        events.push(match kind {
            Kind::Chat => delta(json!({"content": word})),
            Kind::Completion => chunk(
                json!([{"index": 0, "text": word, "logprobs": null, "finish_reason": null}]),
                None,
            ),
        });
    }
    if let Some((name, args)) = tool_call {
        events.push(delta(
            json!({"tool_calls": [{"index": 0, "id": "call_mock", "type": "function",
                                                 "function": {"name": name, "arguments": ""}}]}),
        ));
        let (head, tail) = split_half(args);
        for piece in [head, tail] {
            events.push(delta(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]}),
            ));
        }
    }
    let finish = match kind {
        Kind::Chat => {
            json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": finish_reason}])
        }
        Kind::Completion => {
            json!([{"index": 0, "text": "", "logprobs": null, "finish_reason": "stop"}])
        }
    };
    events.push(chunk(finish, None));
    if include_usage && !script.omit_usage {
        events.push(chunk(
            json!([]),
            Some(usage(&script, prompt_tokens, completion_tokens)),
        ));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    let cut_at = script.cut_after_chunks.map(|n| content_start + n);
    sse_response(events, cut_at, script.chunk_delay, shared)
}

struct MockStream {
    events: VecDeque<Bytes>,
    sent: usize,
    cut_at: Option<usize>,
    delay: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    shared: Arc<Shared>,
    finished: bool,
}

impl Stream for MockStream {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.finished {
            return Poll::Ready(None);
        }
        if self.cut_at == Some(self.sent) {
            // Give the server a moment to flush what was sent, then abort the connection.
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(50))));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.finished = true;
            self.shared.completed_streams.fetch_add(1, Ordering::SeqCst);
            return Poll::Ready(Some(Err(std::io::Error::other("stream cut by script"))));
        }
        if self.sent > 0 && !self.delay.is_zero() {
            let delay = self.delay;
            let sleep = self
                .sleep
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(delay)));
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            self.sleep = None;
        }
        match self.events.pop_front() {
            Some(ev) => {
                self.sent += 1;
                if self.events.is_empty() {
                    // The last event is on its way: the stream ran to its end.
                    self.finished = true;
                    self.shared.completed_streams.fetch_add(1, Ordering::SeqCst);
                }
                Poll::Ready(Some(Ok(ev)))
            }
            None => {
                self.finished = true;
                self.shared.completed_streams.fetch_add(1, Ordering::SeqCst);
                Poll::Ready(None)
            }
        }
    }
}

impl Drop for MockStream {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.cancelled_streams.fetch_add(1, Ordering::SeqCst);
        }
    }
}

async fn embeddings(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let script = match begin(&shared, &method, &uri, &headers, &body, Wire::OpenAi).await {
        Ok(script) => script,
        Err(scripted_error) => return scripted_error,
    };
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response();
    };
    let inputs: Vec<Value> = match req.get("input") {
        Some(Value::Array(items)) => items.clone(),
        Some(v) => vec![v.clone()],
        None => Vec::new(),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, _)| json!({"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3, 0.4]}))
        .collect();
    let tokens: u64 = inputs.iter().map(count_words).sum();
    let mut out = json!({"object": "list", "data": data, "model": req.get("model").cloned().unwrap_or(Value::Null)});
    if !script.omit_usage {
        out["usage"] = json!({"prompt_tokens": tokens, "total_tokens": tokens});
    }
    axum::Json(out).into_response()
}

/// The prompt tokens of an Anthropic Messages request: words in `messages` and `system`.
fn anthropic_prompt_tokens(req: &Value) -> u64 {
    count_words(req.get("messages").unwrap_or(&Value::Null))
        + count_words(&json!({"content": req.get("system").cloned().unwrap_or(Value::Null)}))
}

/// Anthropic's Messages API: the same scripts, in Anthropic's JSON and event stream.
async fn anthropic_messages(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let script = match begin(&shared, &method, &uri, &headers, &body, Wire::Anthropic).await {
        Ok(script) => script,
        Err(scripted_error) => return scripted_error,
    };
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-claude")
        .to_owned();
    let prompt = anthropic_prompt_tokens(&req);
    let cached = script.cached_tokens.unwrap_or(0).min(prompt);
    let (five, hour) = script.cache_write_tokens.unwrap_or((0, 0));
    let writes = (five + hour).min(prompt - cached);
    let input = prompt - cached - writes;
    let output = script.reply.len() as u64;
    let prompt_usage = json!({"input_tokens": input, "cache_read_input_tokens": cached,
                              "cache_creation_input_tokens": writes,
                              "cache_creation": {"ephemeral_5m_input_tokens": five, "ephemeral_1h_input_tokens": hour}});
    let mut usage = prompt_usage.clone();
    usage["output_tokens"] = json!(output);
    let stop_reason = if script.tool_call.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    if !req.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        let mut content = Vec::new();
        if let Some(thinking) = &script.reasoning {
            content
                .push(json!({"type": "thinking", "thinking": thinking, "signature": "sig_mock"}));
        }
        content.push(json!({"type": "text", "text": script.reply.concat()}));
        if let Some((name, args)) = &script.tool_call {
            let input: Value = serde_json::from_str(args).unwrap_or(json!({}));
            content.push(
                json!({"type": "tool_use", "id": "toolu_mock", "name": name, "input": input}),
            );
        }
        return axum::Json(json!({
            "id": "msg_mock", "type": "message", "role": "assistant", "model": model,
            "content": content, "stop_reason": stop_reason, "stop_sequence": null, "usage": usage,
        }))
        .into_response();
    }
    let event = |name: &str, data: Value| Bytes::from(format!("event: {name}\ndata: {data}\n\n"));
    // As Anthropic does, the prompt's counts come first, in `message_start`.
    let mut start_usage = prompt_usage;
    start_usage["output_tokens"] = json!(1);
    let mut events = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {"id": "msg_mock", "type": "message", "role": "assistant",
               "model": model, "content": [], "stop_reason": null,
               "usage": start_usage}}),
    )];
    // The text block follows the thinking block, when there is one.
    let mut index = 0;
    if let Some(thinking) = &script.reasoning {
        events.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0,
                   "content_block": {"type": "thinking", "thinking": ""}}),
        ));
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "thinking_delta", "thinking": thinking}}),
        ));
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0,
                   "delta": {"type": "signature_delta", "signature": "sig_mock"}}),
        ));
        events.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": 0}),
        ));
        index = 1;
    }
    events.push(event(
        "content_block_start",
        json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
    ));
    events.push(event("ping", json!({"type": "ping"})));
    let content_start = events.len();
    for word in &script.reply {
        events.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": word}}),
        ));
    }
    events.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": index}),
    ));
    if let Some((name, args)) = &script.tool_call {
        let index = index + 1;
        events.push(event(
            "content_block_start",
            json!({"type": "content_block_start", "index": index,
                   "content_block": {"type": "tool_use", "id": "toolu_mock", "name": name, "input": {}}}),
        ));
        let (head, tail) = split_half(args);
        for piece in [head, tail] {
            events.push(event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                       "delta": {"type": "input_json_delta", "partial_json": piece}}),
            ));
        }
        events.push(event(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
    }
    events.push(event(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop_reason, "stop_sequence": null},
               "usage": {"output_tokens": output}}),
    ));
    events.push(event("message_stop", json!({"type": "message_stop"})));
    let cut_at = script.cut_after_chunks.map(|n| content_start + n);
    sse_response(events, cut_at, script.chunk_delay, shared)
}

/// Anthropic's token counting: `{"input_tokens": N}`, N counted as the Messages route
/// counts its prompt, or the scripted `reported_tokens` prompt count.
async fn anthropic_count_tokens(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let script = match begin(&shared, &method, &uri, &headers, &body, Wire::Anthropic).await {
        Ok(script) => script,
        Err(scripted_error) => return scripted_error,
    };
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let input_tokens = match script.reported_tokens {
        Some((prompt, _)) => prompt,
        None => anthropic_prompt_tokens(&req),
    };
    axum::Json(json!({"input_tokens": input_tokens})).into_response()
}

/// Appends one named Responses API event, numbered by its position in the stream.
fn push_response_event(events: &mut Vec<Bytes>, kind: &str, mut data: Value) {
    data["type"] = json!(kind);
    data["sequence_number"] = json!(events.len());
    events.push(Bytes::from(format!("event: {kind}\ndata: {data}\n\n")));
}

/// OpenAI's Responses API: the same scripts, as a response object or its named event stream.
/// Input tokens are the words in `input` and `instructions`; the reply is one `output_text`
/// part of message `msg_mock`, followed by function call `fc_mock` when a tool call is scripted.
async fn responses(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let script = match begin(&shared, &method, &uri, &headers, &body, Wire::OpenAi).await {
        Ok(script) => script,
        Err(scripted_error) => return scripted_error,
    };
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "not JSON").into_response();
    };
    let model = req
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("mock-model")
        .to_owned();
    let counted = count_words(req.get("input").unwrap_or(&Value::Null))
        + count_words(req.get("instructions").unwrap_or(&Value::Null));
    let (input_tokens, output_tokens) = script
        .reported_tokens
        .unwrap_or((counted, script.reply.len() as u64));
    let usage = (!script.omit_usage).then(|| {
        json!({
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": script.cached_tokens.unwrap_or(0)},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": script.reasoning_tokens.unwrap_or(0)},
            "total_tokens": input_tokens.saturating_add(output_tokens),
        })
    });
    let encrypted_reasoning = req
        .get("include")
        .and_then(Value::as_array)
        .is_some_and(|items| {
            items
                .iter()
                .any(|v| v.as_str() == Some("reasoning.encrypted_content"))
        });
    let text = script.reply.concat();
    let reasoning_item = json!({"type": "reasoning", "id": "rs_mock", "summary": [], "encrypted_content": "enc_mock"});
    let text_part = |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
    let message_item = |status: &str, content: Value| json!({"type": "message", "id": "msg_mock", "status": status, "role": "assistant", "content": content});
    let call_item = |name: &str, arguments: &str, status: &str| {
        json!({"type": "function_call", "id": "fc_mock", "call_id": "call_mock", "name": name,
               "arguments": arguments, "status": status})
    };
    let response_object = |status: &str, output: &[Value], usage: Option<&Value>| {
        let mut r = json!({
            "id": "resp_mock", "object": "response", "created_at": 1_700_000_000, "status": status,
            "model": model, "output": output, "error": null, "incomplete_details": null,
        });
        if let Some(u) = usage {
            r["usage"] = u.clone();
        }
        r
    };
    let mut output = Vec::new();
    if encrypted_reasoning {
        output.push(reasoning_item.clone());
    }
    let message_index = output.len();
    output.push(message_item("completed", json!([text_part(&text)])));
    if let Some((name, args)) = &script.tool_call {
        output.push(call_item(name, args, "completed"));
    }
    let completed = response_object("completed", &output, usage.as_ref());
    if !req.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        return axum::Json(completed).into_response();
    }
    if let Some(raw) = &script.raw_sse {
        return sse_response(vec![raw.clone()], None, Duration::ZERO, shared);
    }
    let mut events = Vec::new();
    let mut in_progress = response_object("in_progress", &[], None);
    in_progress["usage"] = Value::Null;
    push_response_event(
        &mut events,
        "response.created",
        json!({"response": in_progress}),
    );
    push_response_event(
        &mut events,
        "response.in_progress",
        json!({"response": in_progress}),
    );
    if encrypted_reasoning {
        for kind in ["response.output_item.added", "response.output_item.done"] {
            push_response_event(
                &mut events,
                kind,
                json!({"output_index": 0, "item": reasoning_item}),
            );
        }
    }
    let text_at = json!({"item_id": "msg_mock", "output_index": message_index, "content_index": 0});
    let with = |base: &Value, key: &str, value: Value| {
        let mut v = base.clone();
        v[key] = value;
        v
    };
    push_response_event(
        &mut events,
        "response.output_item.added",
        json!({"output_index": message_index, "item": message_item("in_progress", json!([]))}),
    );
    push_response_event(
        &mut events,
        "response.content_part.added",
        with(&text_at, "part", text_part("")),
    );
    let content_start = events.len();
    for word in &script.reply {
        push_response_event(
            &mut events,
            "response.output_text.delta",
            with(&text_at, "delta", json!(word)),
        );
    }
    push_response_event(
        &mut events,
        "response.output_text.done",
        with(&text_at, "text", json!(text)),
    );
    push_response_event(
        &mut events,
        "response.content_part.done",
        with(&text_at, "part", text_part(&text)),
    );
    push_response_event(
        &mut events,
        "response.output_item.done",
        json!({"output_index": message_index, "item": output[message_index]}),
    );
    if let Some((name, args)) = &script.tool_call {
        let call_index = message_index + 1;
        push_response_event(
            &mut events,
            "response.output_item.added",
            json!({"output_index": call_index, "item": call_item(name, "", "in_progress")}),
        );
        let (head, tail) = split_half(args);
        for piece in [head, tail] {
            push_response_event(
                &mut events,
                "response.function_call_arguments.delta",
                json!({"item_id": "fc_mock", "output_index": call_index, "delta": piece}),
            );
        }
        push_response_event(
            &mut events,
            "response.function_call_arguments.done",
            json!({"item_id": "fc_mock", "output_index": call_index, "arguments": args}),
        );
        push_response_event(
            &mut events,
            "response.output_item.done",
            json!({"output_index": call_index, "item": output[call_index]}),
        );
    }
    push_response_event(
        &mut events,
        "response.completed",
        json!({"response": completed}),
    );
    let cut_at = script.cut_after_chunks.map(|n| content_start + n);
    sse_response(events, cut_at, script.chunk_delay, shared)
}

/// Audio transcription: answers the script's reply as the transcript, in JSON with token
/// usage (one input token per 100 uploaded bytes) or, for `response_format=text`, as plain text.
async fn transcriptions(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let script = match begin(&shared, &method, &uri, &headers, &body, Wire::OpenAi).await {
        Ok(script) => script,
        Err(scripted_error) => return scripted_error,
    };
    let text = script.reply.concat();
    let plain = body
        .windows(b"name=\"response_format\"\r\n\r\ntext\r\n".len())
        .any(|w| w == b"name=\"response_format\"\r\n\r\ntext\r\n");
    if plain {
        return ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response();
    }
    let mut out = json!({"text": text});
    if !script.omit_usage {
        out["usage"] = json!({"type": "tokens", "input_tokens": body.len() as u64 / 100,
                              "output_tokens": script.reply.len(), "total_tokens": body.len() as u64 / 100 + script.reply.len() as u64});
    }
    axum::Json(out).into_response()
}
