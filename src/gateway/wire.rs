//! The wire formats clients speak, translated through one internal model: Chat Completions.
//!
//! A Responses or Messages request becomes a chat request (`to_chat`), goes through the
//! same gates, routing and metering as any chat request, and its answer — a chat
//! completion, or a stream of chat chunks — is turned back into the client's format
//! (`from_chat`, [`Encoder`]). One module a format: `responses`, `messages` (the
//! Anthropic upstream adapter in `provider/anthropic.rs` converts chat to Messages and
//! back on the upstream side). An upstream that speaks the client's own format natively
//! gets the client's body (allow-listed) and its answer passes back unchanged.

mod answer;
mod chat;
pub mod messages;
pub mod responses;

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

pub(crate) use super::body::string;
use super::{BodyError, Endpoint, UpstreamUsage};
use crate::usage::{Charged, TokenCounts};
pub(crate) use answer::ChatAnswer;
pub use chat::ChatBody;
pub(crate) use chat::{ChatCall, ChatContent, ChatImage, ChatMsg, ChatPart, ChatRequest, ChatTool};

/// The API a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// OpenAI Chat Completions, Completions, Embeddings, Transcriptions: passed as sent.
    OpenAi,
    /// OpenAI Responses (`POST /v1/responses`), stateless.
    Responses,
    /// Anthropic Messages (`POST /v1/messages`).
    Messages,
}

impl Wire {
    /// Label stored in usage records, shared: a record takes it by reference count (a
    /// `String` would be copied into every record, and again into the store's bind).
    pub fn label(self, endpoint: Endpoint) -> Arc<str> {
        type Labels = Vec<(Wire, Endpoint, Arc<str>)>;
        static LABELS: LazyLock<Labels> = LazyLock::new(|| {
            let endpoints = [
                Endpoint::Chat,
                Endpoint::Completions,
                Endpoint::Embeddings,
                Endpoint::Transcriptions,
            ];
            [Wire::OpenAi, Wire::Responses, Wire::Messages]
                .into_iter()
                .flat_map(|w| endpoints.map(|e| (w, e, Arc::from(w.label_text(e)))))
                .collect()
        });
        match LABELS.iter().find(|(w, e, _)| *w == self && *e == endpoint) {
            Some((.., label)) => label.clone(),
            None => Arc::from(self.label_text(endpoint)),
        }
    }

    fn label_text(self, endpoint: Endpoint) -> &'static str {
        match self {
            Wire::OpenAi => endpoint.label(),
            Wire::Responses => "responses",
            Wire::Messages => "messages",
        }
    }

    /// The request as a chat completion request (the internal model).
    pub fn to_chat(self, body: &[u8]) -> Result<Option<ChatBody>, BodyError> {
        match self {
            Wire::OpenAi => Ok(None),
            Wire::Responses => responses::to_chat(body).map(Some),
            Wire::Messages => messages::to_chat(body).map(Some),
        }
    }

    /// What routing reads of a request it does not translate (one that does not translate
    /// — a hosted tool, a document block — or one for a route whose every provider serves
    /// the format natively): its model, `stream` and output limit, from the body's
    /// top-level `fields`. No chat body is written: the request goes out as the client
    /// wrote it, or not at all.
    pub fn skeleton(self, fields: &[super::body::Field<'_>]) -> Option<Skeleton> {
        use super::body::field;
        let model = string(field(fields, "model")?).filter(|m| !m.is_empty())?;
        let limit = match self {
            Wire::Messages => "max_tokens",
            _ => "max_output_tokens",
        };
        Some(Skeleton {
            model: model.into_owned(),
            stream: field(fields, "stream").is_some_and(|r| r.get() == "true"),
            max_tokens: field(fields, limit).and_then(|n| n.get().parse().ok()),
        })
    }

    /// A chat completion answer translated to this format, its usage (the billed counts)
    /// carrying the cost; `None` when the answer is not a chat completion (the upstream
    /// broke its protocol) or for OpenAI's wire, which is chat's own.
    pub fn from_chat(
        self,
        chat: &[u8],
        model: &str,
        counts: TokenCounts,
        charged: &Charged,
    ) -> Option<Bytes> {
        self.answer(ChatAnswer::parse(chat)?, model, counts, charged)
    }

    /// `from_chat` of an answer already read (the gateway reads its usage from it too).
    pub(crate) fn answer(
        self,
        answer: ChatAnswer<'_>,
        model: &str,
        counts: TokenCounts,
        charged: &Charged,
    ) -> Option<Bytes> {
        match self {
            Wire::OpenAi => None,
            Wire::Responses => responses::answer(answer, model, counts, charged),
            Wire::Messages => messages::answer(answer, model, counts, charged),
        }
    }

    /// The stream encoder from chat chunks to this format (none for OpenAI clients).
    pub fn encoder(self, model: &str) -> Option<Encoder> {
        match self {
            Wire::OpenAi => None,
            Wire::Responses => Some(Encoder::Responses(Box::new(responses::Encoder::new(model)))),
            Wire::Messages => Some(Encoder::Messages(Box::new(messages::Encoder::new(model)))),
        }
    }
}

/// The client's request for an upstream serving its format: `{"model":` the upstream's
/// name, then `extra` (`,"store":false`), then each of its top-level `fields` that
/// `allowed` names, as the client wrote it (a `null` one left out, as absent).
fn allow_listed(
    fields: &[super::body::Field<'_>],
    upstream_model: &str,
    extra: &str,
    allowed: &[&str],
) -> Result<Bytes, BodyError> {
    // The kept fields are at most all of them, with their quotes and separators.
    let kept: usize = fields
        .iter()
        .map(|(k, v)| k.len() + v.get().len() + 4)
        .sum();
    let len = kept + upstream_model.len() + extra.len() + 16;
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(b"{\"model\":");
    crate::json::write_str(&mut out, upstream_model)
        .map_err(|_| BodyError::field("model", "the model name could not be written"))?;
    out.extend_from_slice(extra.as_bytes());
    for (key, value) in fields {
        // A key that matched a name of ours is that plain name: written as it is.
        if let Some(name) = allowed.iter().find(|name| **name == *key)
            && value.get() != "null"
        {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            out.extend_from_slice(value.get().as_bytes());
        }
    }
    out.push(b'}');
    Ok(Bytes::from(out))
}

/// The request headers an upstream of the client's own format receives from the client:
/// Anthropic's protocol headers, which the gateway protocol says to forward unchanged.
pub type ProtocolHeaders = Vec<(axum::http::HeaderName, axum::http::HeaderValue)>;

/// Anthropic's protocol headers as the client sent them, for an Anthropic upstream.
pub fn protocol_headers(headers: &axum::http::HeaderMap) -> ProtocolHeaders {
    use axum::http::HeaderName;
    // Names built once, not parsed from text on every request.
    const NAMES: [HeaderName; 2] = [
        HeaderName::from_static("anthropic-version"),
        HeaderName::from_static("anthropic-beta"),
    ];
    // One pass over the client's few headers: cheaper than a hashed lookup a name.
    let mut out = Vec::new();
    for (name, value) in headers {
        if NAMES.contains(name) {
            out.push((name.clone(), value.clone()));
        }
    }
    out
}

/// What routing reads of a request going out in the client's own format (see
/// `Wire::skeleton`).
#[derive(Debug)]
pub struct Skeleton {
    pub model: String,
    pub stream: bool,
    pub max_tokens: Option<u64>,
}

impl Skeleton {
    /// As the request routing reads.
    pub fn request(&self) -> super::Request<'_> {
        super::Request::routing_only(&self.model, self.stream, self.max_tokens)
    }
}

/// The client's own body, for an upstream that serves its format natively.
pub struct Native<'a> {
    pub wire: Wire,
    pub body: &'a [u8],
    /// The body's top-level fields, when routing has split them already (they are not
    /// split again for each upstream attempt).
    pub fields: Option<&'a [super::body::Field<'a>]>,
    /// The client's request headers: its protocol headers are taken from them only when
    /// the request goes out natively.
    pub headers: &'a axum::http::HeaderMap,
    /// Why the body does not translate to chat, when it does not: only a provider serving
    /// the format natively can take it.
    pub untranslatable: Option<&'a BodyError>,
}

/// One Chat Completions stream chunk, borrowed from the event: the internal stream event.
#[derive(Deserialize)]
pub struct Chunk<'a> {
    /// Kept raw (any JSON an upstream sends there parses): only our own usage chunk reads them.
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub created: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub choices: Option<Vec<ChoiceDelta<'a>>>,
    #[serde(default)]
    pub usage: Option<UpstreamUsage>,
    #[serde(borrow, default)]
    pub error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub struct ChoiceDelta<'a> {
    #[serde(default)]
    pub index: u32,
    #[serde(borrow, default)]
    pub delta: Option<Delta<'a>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub text: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub struct Delta<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub content: Option<Cow<'a, str>>,
    /// vLLM, SGLang and llama.cpp name it `reasoning_content`; newer vLLM `reasoning`.
    #[serde(borrow, default, deserialize_with = "borrowed", alias = "reasoning")]
    pub reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub tool_calls: Option<Vec<ToolCallDelta<'a>>>,
}

#[derive(Deserialize)]
pub struct ToolCallDelta<'a> {
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
pub struct FunctionDelta<'a> {
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "borrowed")]
    pub arguments: Option<Cow<'a, str>>,
}

/// Turns chat chunks into the client's stream events as they come; only the item being
/// streamed is held (its text is repeated in the item's closing event, as the formats want).
pub enum Encoder {
    Responses(Box<responses::Encoder>),
    Messages(Box<messages::Encoder>),
}

impl Encoder {
    pub fn on_chunk(&mut self, chunk: &Chunk<'_>, out: &mut Vec<Bytes>) {
        match self {
            Encoder::Responses(e) => e.on_chunk(chunk, out),
            Encoder::Messages(e) => e.on_chunk(chunk, out),
        }
    }

    /// The closing events, with the counts the request is billed for and their cost.
    pub fn finish(&mut self, counts: TokenCounts, charged: &Charged, out: &mut Vec<Bytes>) {
        match self {
            Encoder::Responses(e) => e.finish(counts, charged, out),
            Encoder::Messages(e) => e.finish(counts, charged, out),
        }
    }

    /// The stream failed: an error event in the client's format ends it.
    pub fn fail(&mut self, status: u16, code: &str, message: &str, out: &mut Vec<Bytes>) {
        match self {
            Encoder::Responses(e) => e.fail(code, message, out),
            Encoder::Messages(e) => e.fail(status, message, out),
        }
    }
}

/// One named SSE event: `event: <name>` then its data.
pub fn named_event(name: &str, data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(name.len() + data.len() + 16);
    b.put_slice(b"event: ");
    b.put_slice(name.as_bytes());
    b.put_slice(b"\ndata: ");
    b.put_slice(data);
    b.put_slice(b"\n\n");
    b.freeze()
}

/// JSON written in place: literal keys and punctuation as they are, strings escaped as
/// serde_json escapes them, numbers by `itoa`; no JSON tree and no per-key escaping.
pub(crate) struct JsonBuf<B = BytesMut>(B);

impl JsonBuf {
    pub(crate) fn new(hint: usize) -> Self {
        Self(BytesMut::with_capacity(hint))
    }

    pub(crate) fn bytes_mut(&mut self) -> &mut BytesMut {
        &mut self.0
    }

    pub(crate) fn finish(self) -> Bytes {
        self.0.freeze()
    }
}

impl<B: BufMut> JsonBuf<B> {
    /// Bytes written as they are (keys, punctuation, JSON already valid).
    pub(crate) fn raw(&mut self, s: &str) -> &mut Self {
        self.0.put_slice(s.as_bytes());
        self
    }

    /// A JSON string (escaped as serde_json escapes it).
    pub(crate) fn string(&mut self, s: &str) -> &mut Self {
        // Writing into memory cannot fail.
        let _ = crate::json::write_str(&mut (&mut self.0).writer(), s);
        self
    }

    pub(crate) fn number(&mut self, n: u64) -> &mut Self {
        self.0.put_slice(itoa::Buffer::new().format(n).as_bytes());
        self
    }

    /// The id the upstream gave, or a fresh one with `prefix` when it gave none (empty).
    pub(crate) fn given_id(&mut self, id: &str, prefix: &str) -> &mut Self {
        match id {
            "" => self.id(prefix),
            id => self.string(id),
        }
    }

    /// A fresh id (`new_id`) as a JSON string, written in place with no `String` for it.
    pub(crate) fn id(&mut self, prefix: &str) -> &mut Self {
        let (process, n) = id_parts();
        let mut hex = [0u8; 16];
        // Prefixes, the process part and hex digits are plain ASCII: no escaping.
        self.raw("\"")
            .raw(prefix)
            .raw(process)
            .raw(crate::keys::hex(n, 12, &mut hex))
            .raw("\"")
    }
}

/// One named SSE event whose JSON is written in place, for the stream encoders' deltas:
/// no JSON tree and no second copy for the frame.
pub(crate) struct EventBuf(JsonBuf);

impl EventBuf {
    pub(crate) fn new(name: &str, hint: usize) -> Self {
        let mut b = JsonBuf::new(name.len() + hint + 24);
        b.raw("event: ").raw(name).raw("\ndata: ");
        Self(b)
    }

    pub(crate) fn raw(&mut self, s: &str) -> &mut Self {
        self.0.raw(s);
        self
    }

    pub(crate) fn string(&mut self, s: &str) -> &mut Self {
        self.0.string(s);
        self
    }

    pub(crate) fn number(&mut self, n: u64) -> &mut Self {
        self.0.number(n);
        self
    }

    pub(crate) fn finish(mut self) -> Bytes {
        self.0.raw("\n\n");
        self.0.finish()
    }
}

/// Re-frames an upstream event of the client's own format, naming it by its `type`.
pub fn native_event(data: &[u8]) -> Bytes {
    #[derive(Deserialize)]
    struct Typed<'a> {
        #[serde(borrow, rename = "type")]
        kind: Cow<'a, str>,
    }
    match serde_json::from_slice::<Typed<'_>>(data) {
        Ok(t) => named_event(&t.kind, data),
        Err(_) => super::sse::frame(data),
    }
}

/// A fresh id with the format's prefix (`resp_`, `msg_`, `fc_` …): a random per-process
/// part and a counter, unique across restarts. Nothing can be fetched by it (nothing is
/// stored), so it needs no secrecy, and costs no system call.
pub(crate) fn new_id(prefix: &str) -> String {
    let (process, n) = id_parts();
    let mut hex = [0u8; 16];
    let hex = crate::keys::hex(n, 12, &mut hex);
    let mut id = String::with_capacity(prefix.len() + process.len() + hex.len());
    id.push_str(prefix);
    id.push_str(process);
    id.push_str(hex);
    id
}

/// A fresh id's parts after its prefix: this process's random part, and the counter.
fn id_parts() -> (&'static str, u64) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PROCESS: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let process = PROCESS.get_or_init(|| {
        crate::keys::random_id(12).unwrap_or_else(|_| format!("{:012x}", crate::time::now_ms()))
    });
    (process, NEXT.fetch_add(1, Ordering::Relaxed))
}

pub(crate) fn now_s() -> u64 {
    u64::try_from(crate::time::now_ms() / 1_000).unwrap_or(0)
}

/// An optional JSON string, borrowed from the document unless it holds an escape: serde's
/// own `Option<Cow<str>>` copies every string, `#[serde(borrow)]` or not.
pub(crate) fn borrowed<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Cow<'de, str>>, D::Error> {
    Ok(Option::<super::body::Text<'de>>::deserialize(d)?.map(|t| t.0))
}

/// `raw` when it is a JSON number: sampling parameters pass through as written.
pub(crate) fn number<'a>(
    raw: &'a RawValue,
    param: &'static str,
) -> Result<&'a RawValue, BodyError> {
    parse::<serde_json::Number>(raw, param, "a number").map(|_| raw)
}

/// Texts joined by newlines; one text is passed on as it is.
pub(crate) fn joined<'a>(texts: impl IntoIterator<Item = Cow<'a, str>>) -> Cow<'a, str> {
    let mut texts = texts.into_iter();
    let Some(first) = texts.next() else {
        return Cow::Borrowed("");
    };
    let Some(second) = texts.next() else {
        return first;
    };
    let mut all = String::with_capacity(first.len() + second.len() + 1);
    all.push_str(&first);
    for t in std::iter::once(second).chain(texts) {
        all.push('\n');
        all.push_str(&t);
    }
    Cow::Owned(all)
}

/// Parses one top-level field as `T` (borrowing from the body where `T` does), naming the
/// field when it has the wrong shape.
pub(crate) fn parse<'a, T: Deserialize<'a>>(
    raw: &'a RawValue,
    param: &'static str,
    what: &str,
) -> Result<T, BodyError> {
    serde_json::from_str(raw.get())
        .map_err(|_| BodyError::field(param, format!("`{param}` must be {what}")))
}

#[cfg(test)]
mod round_trips {
    //! Through our own converters and back: what a client sent or was answered keeps its
    //! text, tool calls and usage.

    use proptest::prelude::*;
    use serde_json::{Value, json};

    use super::*;
    use crate::gateway::provider::anthropic_translation::{StreamTranslator, translate_response};

    /// One generated turn: text pieces, tool calls `(name, argument)`, usage counts.
    type Turn = (Vec<String>, Vec<(String, String)>, (u64, u64, u64));

    /// Text pieces as an engine streams them, and tool calls `(name, argument)`.
    fn turn() -> impl Strategy<Value = Turn> {
        (
            proptest::collection::vec("[a-zA-Z0-9 .,!?\"\\\\\n\u{e9}\u{1F600}]{1,12}", 0..6),
            proptest::collection::vec(("[a-z_]{1,10}", "[a-zA-Z0-9 \"\\\\]{0,16}"), 0..3),
            (0u64..1_000_000, 0u64..1_000_000, 0u64..1_000_000),
        )
    }

    fn counts((input, cached, output): (u64, u64, u64)) -> TokenCounts {
        TokenCounts {
            input: input.max(cached),
            cached_input: cached,
            output,
            estimated: false,
            ..TokenCounts::default()
        }
    }

    /// The chat chunks of a turn: text pieces, then each call's head and arguments.
    fn chunks(text: &[String], calls: &[(String, String)]) -> Vec<String> {
        let mut out: Vec<String> = text
            .iter()
            .map(|t| json!({"choices": [{"index": 0, "delta": {"content": t}}]}).to_string())
            .collect();
        for (i, (name, arg)) in calls.iter().enumerate() {
            let args = json!({"a": arg}).to_string();
            out.push(json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": i, "id": format!("call_{i}"), "function": {"name": name, "arguments": ""}}]}}]}).to_string());
            out.push(
                json!({"choices": [{"index": 0, "delta": {"tool_calls": [
                {"index": i, "function": {"arguments": args}}]}}]})
                .to_string(),
            );
        }
        let finish = if calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        out.push(
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]}).to_string(),
        );
        out
    }

    /// What chat chunks carry: text, each call's name and arguments, the last usage.
    fn read_chunks(chunks: &[Bytes]) -> (String, Vec<(String, String)>, Option<Value>) {
        let (mut text, mut calls, mut usage) =
            (String::new(), Vec::<(String, String)>::new(), None);
        for c in chunks.iter().filter(|c| c.as_ref() != b"[DONE]") {
            let v: Value = serde_json::from_slice(c).unwrap();
            if !v["usage"].is_null() {
                usage = Some(v["usage"].clone());
            }
            let delta = &v["choices"][0]["delta"];
            if let Some(t) = delta["content"].as_str() {
                text.push_str(t);
            }
            for call in delta["tool_calls"].as_array().into_iter().flatten() {
                if let Some(name) = call["function"]["name"].as_str() {
                    calls.push((name.to_owned(), String::new()));
                }
                if let (Some(a), Some(last)) =
                    (call["function"]["arguments"].as_str(), calls.last_mut())
                {
                    last.1.push_str(a);
                }
            }
        }
        (text, calls, usage)
    }

    /// The `data` of each SSE event in `events`.
    fn data_of(events: &[Bytes]) -> Vec<Vec<u8>> {
        events
            .iter()
            .map(|e| {
                let s = std::str::from_utf8(e).unwrap();
                s.lines()
                    .find_map(|l| l.strip_prefix("data: "))
                    .unwrap()
                    .as_bytes()
                    .to_vec()
            })
            .collect()
    }

    fn expected_calls(calls: &[(String, String)]) -> Vec<(String, String)> {
        calls
            .iter()
            .map(|(n, a)| (n.clone(), json!({"a": a}).to_string()))
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// A chat answer sent to a Messages client, read back by our Anthropic adapter.
        #[test]
        fn messages_answers_round_trip((text, calls, usage) in turn()) {
            let message = json!({"role": "assistant", "content": text.concat(), "tool_calls":
                calls.iter().enumerate().map(|(i, (n, a))| json!({"id": format!("call_{i}"), "type": "function",
                    "function": {"name": n, "arguments": json!({"a": a}).to_string()}})).collect::<Vec<_>>()});
            let chat = json!({"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]});
            let counts = counts(usage);
            let charged = Charged { cost: crate::billing::Money::from_nanos(1_500), estimated: false };
            let answer = Wire::Messages.from_chat(chat.to_string().as_bytes(), "m", counts, &charged).unwrap();
            let whole: Value = serde_json::from_slice(&answer).unwrap();
            prop_assert_eq!(&whole["usage"]["cost_usd"], "0.000001500");
            let back: Value = serde_json::from_slice(&translate_response(&answer).unwrap()).unwrap();
            let m = &back["choices"][0]["message"];
            prop_assert_eq!(m["content"].as_str().unwrap_or(""), text.concat());
            let got: Vec<(String, String)> = m["tool_calls"].as_array().into_iter().flatten()
                .map(|c| (c["function"]["name"].as_str().unwrap().to_owned(),
                          c["function"]["arguments"].as_str().unwrap().to_owned())).collect();
            prop_assert_eq!(got, expected_calls(&calls));
            prop_assert_eq!(back["usage"]["prompt_tokens"].as_u64(), Some(counts.input));
            prop_assert_eq!(back["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64(), Some(counts.cached_input));
            prop_assert_eq!(back["usage"]["completion_tokens"].as_u64(), Some(counts.output));
        }

        /// Chat chunks streamed to a Messages client, read back by our Anthropic adapter.
        #[test]
        fn messages_streams_round_trip((text, calls, usage) in turn()) {
            let counts = counts(usage);
            let mut encoder = Wire::Messages.encoder("m").unwrap();
            let mut events = Vec::new();
            for c in chunks(&text, &calls) {
                encoder.on_chunk(&serde_json::from_str(&c).unwrap(), &mut events);
            }
            encoder.finish(counts, &Charged::default(), &mut events);
            let mut t = StreamTranslator::default();
            let mut back = Vec::new();
            for data in data_of(&events) {
                t.on_event(&data, &mut back);
            }
            let (got_text, got_calls, got_usage) = read_chunks(&back);
            prop_assert_eq!(got_text, text.concat());
            prop_assert_eq!(got_calls, expected_calls(&calls));
            let u = got_usage.unwrap();
            prop_assert_eq!(u["prompt_tokens"].as_u64(), Some(counts.input));
            prop_assert_eq!(u["completion_tokens"].as_u64(), Some(counts.output));
        }

        /// Chat chunks streamed to a Responses client, read back as a native Responses
        /// stream is read for metering.
        #[test]
        fn responses_streams_round_trip((text, calls, usage) in turn()) {
            let counts = counts(usage);
            let mut encoder = Wire::Responses.encoder("m").unwrap();
            let mut events = Vec::new();
            for c in chunks(&text, &calls) {
                encoder.on_chunk(&serde_json::from_str(&c).unwrap(), &mut events);
            }
            encoder.finish(counts, &Charged::default(), &mut events);
            let mut t = responses::UpstreamTranslator;
            let mut back = Vec::new();
            for data in data_of(&events) {
                t.on_event(&data, &mut back);
            }
            let (got_text, _, got_usage) = read_chunks(&back);
            prop_assert_eq!(got_text, text.concat());
            let args: String = data_of(&events).iter()
                .map(|d| serde_json::from_slice::<Value>(d).unwrap())
                .filter(|v| v["type"] == "response.function_call_arguments.delta")
                .map(|v| v["delta"].as_str().unwrap().to_owned()).collect();
            let want: String = expected_calls(&calls).into_iter().map(|(_, a)| a).collect();
            prop_assert_eq!(args, want);
            let u = got_usage.unwrap();
            prop_assert_eq!(u["prompt_tokens"].as_u64(), Some(counts.input));
            prop_assert_eq!(u["prompt_tokens_details"]["cached_tokens"].as_u64(), Some(counts.cached_input));
            prop_assert_eq!(u["completion_tokens"].as_u64(), Some(counts.output));
        }
    }
}

#[cfg(test)]
mod translated_bodies {
    //! A translation's fields are read where it wrote them, not parsed again: routing and
    //! the upstream's body must come out as they would from parsing the written body (the
    //! body it writes in one copy, `after_model`, byte for byte the field-by-field one).

    use serde_json::json;

    use super::*;
    use crate::gateway::Request;

    fn both(wire: Wire, body: serde_json::Value) {
        let chat = wire
            .to_chat(body.to_string().as_bytes())
            .expect("translates")
            .expect("a translated wire");
        let Request::Json(read) = Request::translated(Endpoint::Chat, &chat).expect("valid") else {
            panic!("a JSON request");
        };
        let Request::Json(parsed) =
            Request::parse(Endpoint::Chat, None, chat.as_bytes()).expect("valid JSON")
        else {
            panic!("a JSON request");
        };
        assert_eq!(read.model, parsed.model);
        assert_eq!(read.stream, parsed.stream);
        assert_eq!(read.max_tokens, parsed.max_tokens);
        assert_eq!(read.client_wants_usage, parsed.client_wants_usage);
        for stream in [false, true] {
            for minimise in [None, Some(Endpoint::Chat)] {
                assert_eq!(
                    read.rewrite("up/model", stream, minimise)
                        .expect("rewrites"),
                    parsed
                        .rewrite("up/model", stream, minimise)
                        .expect("rewrites"),
                    "stream {stream}, minimise {minimise:?}"
                );
            }
        }
    }

    #[test]
    fn translated_fields_read_in_place_match_the_written_body_parsed() {
        both(
            Wire::Messages,
            json!({"model": "m\u{e9}\"x", "max_tokens": 64, "system": "be brief",
                   "messages": [{"role": "user", "content": "h\u{e9}llo \"there\"\n"}]}),
        );
        both(
            Wire::Messages,
            json!({"model": "m", "max_tokens": 9, "stream": true, "temperature": 0.5,
                   "top_k": 3, "stop_sequences": ["x"],
                   "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
                   "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
                   "thinking": {"type": "enabled", "budget_tokens": 2048},
                   "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]},
                                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"x": 1}}]},
                                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}]}),
        );
        both(
            Wire::Responses,
            json!({"model": "m", "input": "hi", "instructions": "be kind",
                   "max_output_tokens": 20, "stream": true,
                   "text": {"format": {"type": "json_object"}}}),
        );
    }

    #[test]
    fn a_skeleton_routes_as_the_translation_would() {
        for (wire, body) in [
            (
                Wire::Messages,
                json!({"model": "m\u{e9}\"x", "max_tokens": 64, "stream": true,
                       "messages": [{"role": "user", "content": "hi"}]}),
            ),
            (
                Wire::Responses,
                json!({"model": "r", "input": "hi", "max_output_tokens": 20, "stream": false}),
            ),
            (Wire::Responses, json!({"model": "r", "input": "hi"})),
        ] {
            let text = body.to_string();
            let f = crate::gateway::body::fields(text.as_bytes()).expect("fields");
            let skeleton = wire.skeleton(&f).expect("a skeleton");
            let chat = wire
                .to_chat(text.as_bytes())
                .expect("translates")
                .expect("chat");
            let read = |request: Request<'_>| match request {
                Request::Json(r) => (r.model.to_string(), r.stream, r.max_tokens),
                Request::Form(..) => panic!("a JSON request"),
            };
            assert_eq!(
                read(skeleton.request()),
                read(Request::translated(Endpoint::Chat, &chat).expect("valid")),
                "{text}"
            );
        }
        let no_model = br#"{"max_tokens": 5, "messages": []}"#;
        let f = crate::gateway::body::fields(no_model).expect("fields");
        assert!(Wire::Messages.skeleton(&f).is_none());
    }
}

#[cfg(test)]
mod ids {
    use super::*;

    #[test]
    fn an_id_written_in_place_is_a_fresh_id_as_a_string() {
        let mut j = JsonBuf::new(64);
        j.id("msg_").raw(",").id("msg_");
        let text = String::from_utf8(j.finish().to_vec()).unwrap();
        let (a, b) = text.split_once(',').unwrap();
        let (a, b): (String, String) = (
            serde_json::from_str(a).unwrap(),
            serde_json::from_str(b).unwrap(),
        );
        let fresh = new_id("msg_");
        assert_ne!(a, b);
        assert!(
            a.starts_with("msg_") && a.len() == fresh.len(),
            "{a} {fresh}"
        );
        assert_eq!(a[..a.len() - 12], fresh[..fresh.len() - 12]);
    }

    #[test]
    fn an_answer_keeps_the_upstreams_call_id_and_makes_one_when_none_is_given() {
        let mut j = JsonBuf::new(64);
        j.given_id("c\"1", "call_").raw(",").given_id("", "call_");
        let text = String::from_utf8(j.finish().to_vec()).unwrap();
        let (given, made) = text.split_once(',').unwrap();
        assert_eq!(serde_json::from_str::<String>(given).unwrap(), "c\"1");
        let made: String = serde_json::from_str(made).unwrap();
        assert!(
            made.starts_with("call_") && made.len() > "call_".len(),
            "{made}"
        );
    }
}
