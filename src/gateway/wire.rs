//! The wire formats clients speak, translated through one internal model: Chat Completions.
//!
//! A Responses or Messages request becomes a chat request (`to_chat`), goes through the
//! same gates, routing and metering as any chat request, and its answer — a chat
//! completion, or a stream of chat chunks — is turned back into the client's format
//! (`from_chat`, [`Encoder`]). One module a format: `responses`, `messages` (the
//! Anthropic upstream adapter in `provider/anthropic.rs` converts chat to Messages and
//! back on the upstream side). An upstream that speaks the client's own format natively
//! gets the client's body (allow-listed) and its answer passes back unchanged.

pub mod messages;
pub mod responses;

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

pub(crate) use super::body::string;
use super::{BodyError, Endpoint, UpstreamUsage, scan};
use crate::usage::{Charged, TokenCounts};

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
pub(crate) struct JsonBuf(BytesMut);

impl JsonBuf {
    pub(crate) fn new(hint: usize) -> Self {
        Self(BytesMut::with_capacity(hint))
    }

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

    pub(crate) fn bytes_mut(&mut self) -> &mut BytesMut {
        &mut self.0
    }

    pub(crate) fn finish(self) -> Bytes {
        self.0.freeze()
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
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PROCESS: OnceLock<String> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let process = PROCESS.get_or_init(|| {
        crate::keys::random_id(12).unwrap_or_else(|_| format!("{:012x}", crate::time::now_ms()))
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut id = String::with_capacity(prefix.len() + process.len() + 16);
    id.push_str(prefix);
    id.push_str(process);
    crate::keys::push_hex(&mut id, n, 12);
    id
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

/// A chat completion answer, as the translations read it: choice 0's message and finish
/// reason, its text borrowed from the answer unless it holds an escape, and its usage.
pub(crate) struct ChatAnswer<'a> {
    /// Choice 0: the translations ask for one answer, and answer with one.
    pub choice: Option<ChatChoice<'a>>,
    usage: Option<UpstreamUsage>,
}

impl<'a> ChatAnswer<'a> {
    /// Reads a chat completion answer in one pass of the structural scan (`scan`), building
    /// only what a translation writes back; the rest (ids, other choices, log
    /// probabilities) is skipped, not parsed. Callgrind on the bench's 245-byte answer:
    /// 3.1 k instructions, where serde's typed parse of the same types took 6.5 k.
    ///
    /// It reads what that typed parse read (the property test in `answers_read_by_the_scan`
    /// holds it to it): a member read here given twice, a string member that is neither a
    /// string nor `null`, a list or object that is not one, a tool call without its
    /// function's name — not an answer (`None`). An answer whose usage does not read is
    /// still an answer (its counts are then estimated). Unlike serde, a list where an
    /// object belongs is refused (serde reads a struct from a list), and values skipped are
    /// checked for structure only (`scan`). Its text is checked to be UTF-8 once.
    pub(crate) fn parse(json: &'a [u8]) -> Option<Self> {
        let doc = std::str::from_utf8(json).ok()?;
        let s = doc.as_bytes();
        let (mut choices, mut usage) = (Once::default(), Once::default());
        let mut answer = Self {
            choice: None,
            usage: None,
        };
        let close = scan::object(s, 0, |key, at| match &*key.name() {
            b"choices" => {
                choices.first()?;
                // Choice 0 is read; the rest are skipped.
                scan::array(s, at, |at| match answer.choice {
                    Some(_) => scan::skip(s, at),
                    None => read_choice(doc, at).map(|(choice, end)| {
                        answer.choice = Some(choice);
                        end
                    }),
                })
            }
            b"usage" => {
                let end = scan::skip(s, at)?;
                // A usage given twice reads as none, like one that does not parse.
                answer.usage = usage
                    .first()
                    .and_then(|()| UpstreamUsage::read(s.get(at..end)?));
                Some(end)
            }
            _ => scan::skip(s, at),
        })?;
        scan::only_space_from(s, close).then_some(answer)
    }

    /// The usage the upstream reported, when it reported one that reads.
    pub(crate) fn usage(&self) -> Option<UpstreamUsage> {
        self.usage
    }
}

/// A member that may be given once: its second appearance is `None`.
#[derive(Default)]
struct Once(bool);

impl Once {
    fn first(&mut self) -> Option<()> {
        (!std::mem::replace(&mut self.0, true)).then_some(())
    }

    /// A string member's value (`null` is none) into `into`, the first time; where it ends.
    fn text<'a>(
        &mut self,
        doc: &'a str,
        at: usize,
        into: &mut Option<Cow<'a, str>>,
    ) -> Option<usize> {
        self.first()?;
        let (text, end) = text_at(doc, at)?;
        *into = text;
        Some(end)
    }

    /// A string member's value (not `null`) into `into`, the first time; where it ends.
    fn string<'a>(&mut self, doc: &'a str, at: usize, into: &mut Cow<'a, str>) -> Option<usize> {
        self.first()?;
        let (text, end) = scan::string_at(doc, at)?;
        *into = text;
        Some(end)
    }
}

/// A string member's value (`null` is none), and where it ends; `None` when it is neither.
fn text_at(doc: &str, at: usize) -> Option<(Option<Cow<'_, str>>, usize)> {
    if scan::null_at(doc.as_bytes(), at) {
        return Some((None, at + 4));
    }
    let (text, end) = scan::string_at(doc, at)?;
    Some((Some(text), end))
}

/// An answer's choice: its message and finish reason, and where it ends.
fn read_choice(doc: &str, at: usize) -> Option<(ChatChoice<'_>, usize)> {
    let s = doc.as_bytes();
    let (mut message, mut finish) = (Once::default(), Once::default());
    let mut choice = ChatChoice {
        message: ChatMessage::default(),
        finish_reason: None,
    };
    let end = scan::object(s, at, |key, at| match &*key.name() {
        b"message" => {
            message.first()?;
            let (read, end) = read_message(doc, at)?;
            choice.message = read;
            Some(end)
        }
        b"finish_reason" => finish.text(doc, at, &mut choice.finish_reason),
        _ => scan::skip(s, at),
    })?;
    Some((choice, end))
}

/// A choice's message: its content, reasoning (`reasoning_content` as vLLM, SGLang and
/// llama.cpp name it, or `reasoning`: one of the two) and tool calls.
fn read_message(doc: &str, at: usize) -> Option<(ChatMessage<'_>, usize)> {
    let s = doc.as_bytes();
    let (mut content, mut reasoning, mut calls) =
        (Once::default(), Once::default(), Once::default());
    let mut message = ChatMessage::default();
    let end = scan::object(s, at, |key, at| match &*key.name() {
        b"content" => content.text(doc, at, &mut message.content),
        b"reasoning_content" | b"reasoning" => {
            reasoning.text(doc, at, &mut message.reasoning_content)
        }
        b"tool_calls" => {
            calls.first()?;
            scan::array(s, at, |at| {
                let (call, end) = read_call(doc, at)?;
                message.tool_calls.push(call);
                Some(end)
            })
        }
        _ => scan::skip(s, at),
    })?;
    Some((message, end))
}

/// One tool call: its id (empty when not given) and its function's name and arguments
/// (empty when not given).
fn read_call(doc: &str, at: usize) -> Option<(ChatToolCall<'_>, usize)> {
    let s = doc.as_bytes();
    let (mut id, mut function) = (Once::default(), None);
    let mut call_id = Cow::Borrowed("");
    let end = scan::object(s, at, |key, at| match &*key.name() {
        b"id" => id.string(doc, at, &mut call_id),
        b"function" => {
            if function.is_some() {
                return None;
            }
            let (read, end) = read_function(doc, at)?;
            function = Some(read);
            Some(end)
        }
        _ => scan::skip(s, at),
    })?;
    let call = ChatToolCall {
        id: call_id,
        function: function?,
    };
    Some((call, end))
}

/// A tool call's function: its name (required) and arguments.
fn read_function(doc: &str, at: usize) -> Option<(ChatFunction<'_>, usize)> {
    let s = doc.as_bytes();
    let (mut name, mut arguments) = (Once::default(), Once::default());
    let mut function = ChatFunction {
        name: Cow::Borrowed(""),
        arguments: Cow::Borrowed(""),
    };
    let end = scan::object(s, at, |key, at| match &*key.name() {
        b"name" => name.string(doc, at, &mut function.name),
        b"arguments" => arguments.string(doc, at, &mut function.arguments),
        _ => scan::skip(s, at),
    })?;
    name.0.then_some((function, end))
}

pub(crate) struct ChatChoice<'a> {
    pub message: ChatMessage<'a>,
    pub finish_reason: Option<Cow<'a, str>>,
}

#[derive(Default)]
pub(crate) struct ChatMessage<'a> {
    pub content: Option<Cow<'a, str>>,
    pub reasoning_content: Option<Cow<'a, str>>,
    pub tool_calls: Vec<ChatToolCall<'a>>,
}

pub(crate) struct ChatToolCall<'a> {
    pub id: Cow<'a, str>,
    pub function: ChatFunction<'a>,
}

pub(crate) struct ChatFunction<'a> {
    pub name: Cow<'a, str>,
    pub arguments: Cow<'a, str>,
}

/// A chat tool definition borrowing the client's schema, which is passed on unparsed.
#[derive(serde::Serialize)]
pub(crate) struct ChatTool<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    function: ChatToolFunction<'a>,
}

#[derive(serde::Serialize)]
struct ChatToolFunction<'a> {
    name: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<Cow<'a, str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameters: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    strict: Option<bool>,
}

impl<'a> ChatTool<'a> {
    pub(crate) fn new(
        name: Cow<'a, str>,
        description: Option<Cow<'a, str>>,
        parameters: Option<&'a RawValue>,
        strict: Option<bool>,
    ) -> Self {
        Self {
            kind: "function",
            function: ChatToolFunction {
                name,
                description,
                parameters,
                strict,
            },
        }
    }
}

/// A chat completion request as the translations write it: typed, borrowing the client's
/// text and tool schemas, so a translated request is written once with no JSON tree.
pub(crate) struct ChatRequest<'a> {
    pub model: Cow<'a, str>,
    pub messages: Vec<ChatMsg<'a>>,
    pub max_tokens: Option<u64>,
    pub stop: Vec<String>,
    /// Numbers as the client wrote them (checked to be numbers).
    pub temperature: Option<&'a RawValue>,
    pub top_p: Option<&'a RawValue>,
    pub top_k: Option<&'a RawValue>,
    pub response_format: Option<serde_json::Value>,
    pub tool_choice: Option<serde_json::Value>,
    pub parallel_tool_calls: Option<bool>,
    pub reasoning_effort: Option<&'static str>,
    pub stream: Option<bool>,
    pub tools: Vec<ChatTool<'a>>,
}

impl<'a> ChatRequest<'a> {
    pub(crate) fn new(model: Cow<'a, str>) -> Self {
        Self {
            model,
            messages: Vec::new(),
            max_tokens: None,
            stop: Vec::new(),
            temperature: None,
            top_p: None,
            top_k: None,
            response_format: None,
            tool_choice: None,
            parallel_tool_calls: None,
            reasoning_effort: None,
            stream: None,
            tools: Vec::new(),
        }
    }

    /// The request's JSON body, with where each top-level field's value lies in it.
    pub(crate) fn body(&self) -> Result<ChatBody, BodyError> {
        let mut w = BodyWriter {
            text: Vec::with_capacity(256),
            fields: Vec::with_capacity(8),
        };
        w.put("model", &self.model)?;
        w.put("messages", &self.messages)?;
        w.put_some("max_tokens", self.max_tokens.as_ref())?;
        w.put_some("stop", Some(&self.stop).filter(|s| !s.is_empty()))?;
        w.put_some("temperature", self.temperature)?;
        w.put_some("top_p", self.top_p)?;
        w.put_some("top_k", self.top_k)?;
        w.put_some("response_format", self.response_format.as_ref())?;
        w.put_some("tool_choice", self.tool_choice.as_ref())?;
        w.put_some("parallel_tool_calls", self.parallel_tool_calls.as_ref())?;
        w.put_some("reasoning_effort", self.reasoning_effort.as_ref())?;
        w.put_some("stream", self.stream.as_ref())?;
        w.put_some("tools", Some(&self.tools).filter(|t| !t.is_empty()))?;
        w.text.push(b'}');
        // serde_json writes UTF-8: the check never fails.
        let text = String::from_utf8(w.text).map_err(|_| untranslatable())?;
        Ok(ChatBody {
            text,
            fields: w.fields,
        })
    }
}

fn untranslatable() -> BodyError {
    BodyError::field("messages", "the request could not be translated")
}

/// Writes a `ChatBody`, a top-level field at a time.
struct BodyWriter {
    text: Vec<u8>,
    fields: Vec<(&'static str, std::ops::Range<usize>)>,
}

/// A translated chat request: its JSON body and, for each top-level field, where its
/// value lies in it. Routing reads the fields from here instead of parsing the body again
/// (`Request::translated`).
pub struct ChatBody {
    /// Always `{"model":…}` and valid JSON: written here by serde_json.
    text: String,
    fields: Vec<(&'static str, std::ops::Range<usize>)>,
}

impl BodyWriter {
    fn put<T: serde::Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: &T,
    ) -> Result<(), BodyError> {
        self.text
            .push(if self.fields.is_empty() { b'{' } else { b',' });
        self.text.push(b'"');
        self.text.extend_from_slice(name.as_bytes());
        self.text.extend_from_slice(b"\":");
        let start = self.text.len();
        serde_json::to_writer(&mut self.text, value).map_err(|_| untranslatable())?;
        self.fields.push((name, start..self.text.len()));
        Ok(())
    }

    fn put_some<T: serde::Serialize + ?Sized>(
        &mut self,
        name: &'static str,
        value: Option<&T>,
    ) -> Result<(), BodyError> {
        match value {
            Some(v) => self.put(name, v),
            None => Ok(()),
        }
    }
}

/// Field names and the body's size only: the body holds the client's content.
impl std::fmt::Debug for ChatBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatBody")
            .field("bytes", &self.text.len())
            .field(
                "fields",
                &self.fields.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl ChatBody {
    /// The JSON body.
    pub fn as_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    /// The JSON body, owned.
    pub fn into_bytes(self) -> Bytes {
        Bytes::from(self.text)
    }

    /// The text after the model's value (written first, so every other field and the
    /// closing brace).
    pub(crate) fn after_model(&self) -> Option<&str> {
        match self.fields.first() {
            Some(("model", range)) => self.text.get(range.end..),
            _ => None,
        }
    }

    /// Each top-level field and its value's JSON text, in order.
    pub(crate) fn fields(&self) -> impl Iterator<Item = (Cow<'_, str>, &str)> {
        // Each range ends where serde_json stopped writing a value: on a char boundary.
        self.fields
            .iter()
            .filter_map(|(name, range)| Some((Cow::Borrowed(*name), self.text.get(range.clone())?)))
    }
}

/// `raw` when it is a JSON number: sampling parameters pass through as written.
pub(crate) fn number<'a>(
    raw: &'a RawValue,
    param: &'static str,
) -> Result<&'a RawValue, BodyError> {
    parse::<serde_json::Number>(raw, param, "a number").map(|_| raw)
}

/// One chat message as a translation writes it, borrowing the client's text.
#[derive(serde::Serialize)]
pub(crate) struct ChatMsg<'a> {
    pub role: &'static str,
    pub content: ChatContent<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ChatCall<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<Cow<'a, str>>,
}

impl<'a> ChatMsg<'a> {
    pub(crate) fn new(role: &'static str, content: ChatContent<'a>) -> Self {
        Self {
            role,
            content,
            tool_calls: Vec::new(),
            tool_call_id: None,
        }
    }
}

/// A chat message's `content`: none (an assistant turn of tool calls alone), text, or
/// parts.
#[derive(serde::Serialize)]
#[serde(untagged)]
pub(crate) enum ChatContent<'a> {
    None,
    Text(Cow<'a, str>),
    Parts(Vec<ChatPart<'a>>),
}

impl<'a> ChatContent<'a> {
    /// Text parts alone are joined into a string (every engine takes one); anything else
    /// stays a list of parts.
    pub(crate) fn from_parts(parts: Vec<ChatPart<'a>>) -> Self {
        if !parts.iter().all(|p| matches!(p, ChatPart::Text { .. })) {
            return Self::Parts(parts);
        }
        Self::Text(joined(parts.into_iter().filter_map(ChatPart::into_text)))
    }
}

/// A chat content part.
#[derive(serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum ChatPart<'a> {
    Text { text: Cow<'a, str> },
    ImageUrl { image_url: ChatImage<'a> },
}

impl<'a> ChatPart<'a> {
    /// A text part's text; `None` for an image.
    pub(crate) fn into_text(self) -> Option<Cow<'a, str>> {
        match self {
            ChatPart::Text { text } => Some(text),
            ChatPart::ImageUrl { .. } => None,
        }
    }
}

#[derive(serde::Serialize)]
pub(crate) struct ChatImage<'a> {
    pub url: Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Cow<'a, str>>,
}

/// An assistant's tool call, as a chat request carries it.
#[derive(serde::Serialize)]
pub(crate) struct ChatCall<'a> {
    pub id: Cow<'a, str>,
    #[serde(rename = "type")]
    kind: &'static str,
    function: ChatCallFunction<'a>,
}

#[derive(serde::Serialize)]
struct ChatCallFunction<'a> {
    name: Cow<'a, str>,
    arguments: Cow<'a, str>,
}

impl<'a> ChatCall<'a> {
    pub(crate) fn new(id: Cow<'a, str>, name: Cow<'a, str>, arguments: Cow<'a, str>) -> Self {
        Self {
            id,
            kind: "function",
            function: ChatCallFunction { name, arguments },
        }
    }
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

    #[test]
    fn an_answers_strings_are_borrowed_unless_escaped() {
        let json = br#"{"id":"x","choices":[{"message":{"content":"plain","reasoning":"why \"so\""},"finish_reason":"stop"}]}"#;
        let answer = ChatAnswer::parse(json).expect("an answer");
        let choice = answer.choice.as_ref().expect("choice 0");
        assert!(matches!(
            choice.message.content,
            Some(Cow::Borrowed("plain"))
        ));
        assert!(matches!(choice.finish_reason, Some(Cow::Borrowed("stop"))));
        assert_eq!(
            choice.message.reasoning_content.as_deref(),
            Some("why \"so\"")
        );
        let counted = ChatAnswer::parse(
            br#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,"extra":[1]}}"#,
        )
        .and_then(|a| a.usage())
        .expect("usage");
        assert_eq!(
            (counted.prompt_tokens, counted.completion_tokens),
            (Some(5), Some(7))
        );
        // A usage that does not read leaves the answer an answer, its counts to estimate.
        for usage in [
            r#""lots""#,
            r#"{"prompt_tokens":-1}"#,
            r#"{"prompt_tokens":1.5}"#,
            "null",
        ] {
            let json =
                format!(r#"{{"choices":[{{"message":{{"content":"hi"}}}}],"usage":{usage}}}"#);
            let answer = ChatAnswer::parse(json.as_bytes()).expect("still an answer");
            assert!(answer.usage().is_none(), "{usage}");
            let choice = answer.choice.expect("choice 0");
            assert_eq!(choice.message.content.as_deref(), Some("hi"));
        }
        let none =
            ChatAnswer::parse(br#"{"choices":[{"message":{"content":null}}]}"#).expect("an answer");
        assert!(none.choice.expect("choice 0").message.content.is_none());
        // Choice 0 is read; the others are skipped, whatever they hold.
        let two = ChatAnswer::parse(
            br#"{"choices":[{"message":{"content":"a"}},{"message":7},[]],"usage":{"prompt_tokens":2}}"#,
        )
        .expect("an answer");
        assert_eq!(two.usage().and_then(|u| u.prompt_tokens), Some(2));
        assert_eq!(
            two.choice.expect("choice 0").message.content.as_deref(),
            Some("a")
        );
        let empty = ChatAnswer::parse(br#"{"choices":[]}"#).expect("an answer");
        assert!(empty.choice.is_none());
        assert!(ChatAnswer::parse(br#"{"choices":{}}"#).is_none());
    }
}

#[cfg(test)]
mod answers_read_by_the_scan {
    //! `ChatAnswer::parse` reads what serde's typed parse of the same types read (the
    //! reader it replaced, kept here as the oracle), on generated answers with members
    //! given twice, escaped keys, `null`s and values of the wrong type.

    use proptest::prelude::*;
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize)]
    struct Typed<'a> {
        #[serde(borrow, default, rename = "choices", deserialize_with = "first")]
        choice: Option<TypedChoice<'a>>,
        #[serde(default)]
        usage: Option<UpstreamUsage>,
    }

    #[derive(Deserialize)]
    struct TypedNoUsage<'a> {
        #[serde(borrow, default, rename = "choices", deserialize_with = "first")]
        choice: Option<TypedChoice<'a>>,
    }

    #[derive(Deserialize)]
    struct TypedChoice<'a> {
        #[serde(borrow, default)]
        message: TypedMessage<'a>,
        #[serde(borrow, default, deserialize_with = "borrowed")]
        finish_reason: Option<Cow<'a, str>>,
    }

    #[derive(Deserialize, Default)]
    struct TypedMessage<'a> {
        #[serde(borrow, default, deserialize_with = "borrowed")]
        content: Option<Cow<'a, str>>,
        #[serde(borrow, default, deserialize_with = "borrowed", alias = "reasoning")]
        reasoning_content: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        tool_calls: Vec<TypedCall<'a>>,
    }

    #[derive(Deserialize)]
    struct TypedCall<'a> {
        #[serde(borrow, default)]
        id: Cow<'a, str>,
        #[serde(borrow)]
        function: TypedFunction<'a>,
    }

    #[derive(Deserialize)]
    struct TypedFunction<'a> {
        #[serde(borrow)]
        name: Cow<'a, str>,
        #[serde(borrow, default)]
        arguments: Cow<'a, str>,
    }

    /// The first element of a list typed, the rest skipped.
    fn first<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
    where
        D: serde::Deserializer<'de>,
        T: Deserialize<'de>,
    {
        struct First<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for First<T> {
            type Value = Option<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Option<T>, A::Error> {
                let first = seq.next_element()?;
                while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(first)
            }
        }
        d.deserialize_seq(First(std::marker::PhantomData))
    }

    type Call = (String, String, String);
    type Choice = (Option<String>, Option<String>, Option<String>, Vec<Call>);
    type View = (Option<Choice>, Option<(Option<u64>, Option<u64>)>);

    /// What a translation takes from an answer, owned, to compare.
    fn view(choice: Option<ChatChoice<'_>>, usage: Option<UpstreamUsage>) -> View {
        let choice = choice.map(|c| {
            let calls = c.message.tool_calls.into_iter().map(|t| {
                let function = t.function;
                (t.id.into(), function.name.into(), function.arguments.into())
            });
            (
                c.message.content.map(String::from),
                c.message.reasoning_content.map(String::from),
                c.finish_reason.map(String::from),
                calls.collect(),
            )
        });
        (
            choice,
            usage.map(|u| (u.prompt_tokens, u.completion_tokens)),
        )
    }

    fn typed_view(json: &str) -> Option<View> {
        let (choice, usage) = match serde_json::from_str::<Typed<'_>>(json) {
            Ok(t) => (t.choice, t.usage),
            Err(_) => (
                serde_json::from_str::<TypedNoUsage<'_>>(json).ok()?.choice,
                None,
            ),
        };
        let choice = choice.map(|c| ChatChoice {
            message: ChatMessage {
                content: c.message.content,
                reasoning_content: c.message.reasoning_content,
                tool_calls: c
                    .message
                    .tool_calls
                    .into_iter()
                    .map(|t| ChatToolCall {
                        id: t.id,
                        function: ChatFunction {
                            name: t.function.name,
                            arguments: t.function.arguments,
                        },
                    })
                    .collect(),
            },
            finish_reason: c.finish_reason,
        });
        Some(view(choice, usage))
    }

    fn scanned_view(json: &str) -> Option<View> {
        let answer = ChatAnswer::parse(json.as_bytes())?;
        let usage = answer.usage();
        Some(view(answer.choice, usage))
    }

    /// An object of the members given, in order, duplicates kept.
    fn object(members: Vec<(&'static str, String)>) -> String {
        let members: Vec<String> = members
            .into_iter()
            .map(|(key, value)| format!("\"{key}\":{value}"))
            .collect();
        format!("{{{}}}", members.join(","))
    }

    fn list(elements: Vec<String>) -> String {
        format!("[{}]", elements.join(","))
    }

    /// Strings, plain and escaped, as JSON.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(r#""plain""#),
            Just(r#""""#),
            Just(r#""h\u00e9 \"q\" \\ \n""#),
            Just("\"caf\u{e9} ]}\""),
        ]
        .prop_map(String::from)
    }

    /// Values where an object or a string belongs that are neither (no list: serde reads a
    /// struct from a list, the scan does not, and no upstream writes one).
    fn not_object() -> impl Strategy<Value = String> {
        prop_oneof![Just("null"), Just("7"), Just("true"), Just(r#""s""#)].prop_map(String::from)
    }

    fn wrong() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("null"),
            Just("-1"),
            Just("false"),
            Just("{}"),
            Just("[]"),
            Just(r#"[1,{"a":"]"}]"#),
        ]
        .prop_map(String::from)
    }

    fn text_or_wrong() -> impl Strategy<Value = String> {
        prop_oneof![12 => text(), 1 => wrong()]
    }

    fn or_not_object(object: impl Strategy<Value = String>) -> impl Strategy<Value = String> {
        prop_oneof![12 => object, 1 => not_object()]
    }

    /// A member, present or not.
    type Member = BoxedStrategy<Option<(&'static str, String)>>;

    /// A member present three times in four.
    fn member(key: &'static str, value: impl Strategy<Value = String> + 'static) -> Member {
        prop::option::weighted(0.75, value.prop_map(move |v| (key, v))).boxed()
    }

    /// A member present one time in ten.
    fn rare(key: &'static str, value: impl Strategy<Value = String> + 'static) -> Member {
        prop::option::weighted(0.1, value.prop_map(move |v| (key, v))).boxed()
    }

    /// An object of the members present, in some order, now and then one given twice.
    fn members(each: Vec<Member>) -> impl Strategy<Value = String> {
        let twice = prop::option::weighted(0.08, any::<prop::sample::Index>());
        (each, twice, any::<prop::sample::Index>()).prop_map(|(present, twice, turn)| {
            let mut members: Vec<_> = present.into_iter().flatten().collect();
            if let (Some(i), false) = (twice, members.is_empty()) {
                let again = members[i.index(members.len())].clone();
                members.push(again);
            }
            if !members.is_empty() {
                let by = turn.index(members.len());
                members.rotate_left(by);
            }
            object(members)
        })
    }

    fn function() -> impl Strategy<Value = String> {
        members(vec![
            member("name", text_or_wrong()),
            member("arguments", text_or_wrong()),
            member("x", wrong()),
        ])
    }

    fn call() -> impl Strategy<Value = String> {
        members(vec![
            member("id", text_or_wrong()),
            member("function", or_not_object(function())),
            member("type", text()),
        ])
    }

    fn message() -> impl Strategy<Value = String> {
        let calls = prop_oneof![
            8 => prop::collection::vec(or_not_object(call()), 0..3).prop_map(list),
            1 => wrong(),
        ];
        members(vec![
            member("content", text_or_wrong()),
            rare(r"cont\u0065nt", text()),
            rare("reasoning", text_or_wrong()),
            member("reasoning_content", text_or_wrong()),
            member("tool_calls", calls),
            member("role", text()),
        ])
    }

    fn choice() -> impl Strategy<Value = String> {
        members(vec![
            member("message", or_not_object(message())),
            member("finish_reason", text_or_wrong()),
            member("index", Just("0".to_owned())),
            member("logprobs", wrong()),
        ])
    }

    fn usage() -> impl Strategy<Value = String> {
        let count = || {
            prop_oneof![Just("5"), Just("0"), Just("-1"), Just("1.5"), Just("null")]
                .prop_map(String::from)
        };
        prop_oneof![
            8 => members(vec![
                member("prompt_tokens", count()),
                member("completion_tokens", count()),
                member("input_tokens", count()),
                member("total_tokens", wrong()),
            ]),
            1 => wrong(),
        ]
    }

    fn answer() -> impl Strategy<Value = String> {
        let choices = prop_oneof![
            10 => prop::collection::vec(or_not_object(choice()), 0..3).prop_map(list),
            1 => wrong(),
        ];
        let doc = members(vec![
            member("choices", choices),
            member("usage", usage()),
            rare(r"us\u0061ge", usage()),
            member("id", text()),
            member("object", wrong()),
        ]);
        let after = prop_oneof![12 => Just(""), 1 => Just(" \n"), 1 => Just(" x"), 1 => Just("}")];
        (doc, after).prop_map(|(doc, after)| doc + after)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(5000))]
        #[test]
        fn the_scan_reads_an_answer_as_the_typed_parse_did(json in answer()) {
            prop_assert_eq!(scanned_view(&json), typed_view(&json), "{}", json);
        }
    }

    #[test]
    fn the_generated_answers_include_ones_that_read() {
        let json = r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"hi","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#;
        let view = scanned_view(json).expect("an answer");
        assert_eq!(view, typed_view(json).expect("an answer"));
        let calls = vec![("c".to_owned(), "f".to_owned(), "{}".to_owned())];
        let choice = (
            Some("hi".to_owned()),
            None,
            Some("tool_calls".to_owned()),
            calls,
        );
        assert_eq!(view, (Some(choice), Some((Some(5), Some(2)))));
    }
}
