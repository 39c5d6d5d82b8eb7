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

use bytes::{BufMut, Bytes, BytesMut};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{BodyError, Endpoint, UpstreamUsage};
use crate::usage::TokenCounts;

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
    /// Label stored in usage records.
    pub fn label(self, endpoint: Endpoint) -> &'static str {
        match self {
            Wire::OpenAi => endpoint.label(),
            Wire::Responses => "responses",
            Wire::Messages => "messages",
        }
    }

    /// The request as a chat completion request (the internal model).
    pub fn to_chat(self, body: &[u8]) -> Result<Option<Bytes>, BodyError> {
        match self {
            Wire::OpenAi => Ok(None),
            Wire::Responses => responses::to_chat(body).map(Some),
            Wire::Messages => messages::to_chat(body).map(Some),
        }
    }

    /// A chat completion answer in this format; `None` when the answer is not a chat
    /// completion (the upstream broke its protocol).
    pub fn from_chat(self, chat: Bytes, model: &str, counts: TokenCounts) -> Option<Bytes> {
        match self {
            Wire::OpenAi => Some(chat),
            Wire::Responses => responses::from_chat(&chat, model, counts),
            Wire::Messages => messages::from_chat(&chat, model, counts),
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

/// The request headers an upstream of the client's own format receives from the client:
/// Anthropic's protocol headers, which the gateway protocol says to forward unchanged.
pub type ProtocolHeaders = Vec<(axum::http::HeaderName, axum::http::HeaderValue)>;

/// The client's own body, for an upstream that serves its format natively.
pub struct Native<'a> {
    pub wire: Wire,
    pub body: &'a [u8],
    pub headers: &'a ProtocolHeaders,
}

/// One Chat Completions stream chunk, borrowed from the event: the internal stream event.
#[derive(Deserialize)]
pub(crate) struct Chunk<'a> {
    #[serde(borrow, default)]
    pub choices: Option<Vec<ChoiceDelta<'a>>>,
    #[serde(default)]
    pub usage: Option<UpstreamUsage>,
    #[serde(borrow, default)]
    pub error: Option<&'a RawValue>,
}

#[derive(Deserialize)]
pub(crate) struct ChoiceDelta<'a> {
    #[serde(default)]
    pub index: u32,
    #[serde(borrow, default)]
    pub delta: Option<Delta<'a>>,
    #[serde(borrow, default)]
    pub text: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub finish_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
pub(crate) struct Delta<'a> {
    #[serde(borrow, default)]
    pub content: Option<Cow<'a, str>>,
    /// vLLM, SGLang and llama.cpp name it `reasoning_content`; newer vLLM `reasoning`.
    #[serde(borrow, default, alias = "reasoning")]
    pub reasoning_content: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub tool_calls: Option<Vec<ToolCallDelta<'a>>>,
}

#[derive(Deserialize)]
pub(crate) struct ToolCallDelta<'a> {
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(borrow, default)]
    pub id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
pub(crate) struct FunctionDelta<'a> {
    #[serde(borrow, default)]
    pub name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub arguments: Option<Cow<'a, str>>,
}

/// Turns chat chunks into the client's stream events as they come; only the item being
/// streamed is held (its text is repeated in the item's closing event, as the formats want).
pub enum Encoder {
    Responses(Box<responses::Encoder>),
    Messages(Box<messages::Encoder>),
}

impl Encoder {
    pub(crate) fn on_chunk(&mut self, chunk: &Chunk<'_>, out: &mut Vec<Bytes>) {
        match self {
            Encoder::Responses(e) => e.on_chunk(chunk, out),
            Encoder::Messages(e) => e.on_chunk(chunk, out),
        }
    }

    /// The closing events, with the counts the request is billed for.
    pub fn finish(&mut self, counts: TokenCounts, out: &mut Vec<Bytes>) {
        match self {
            Encoder::Responses(e) => e.finish(counts, out),
            Encoder::Messages(e) => e.finish(counts, out),
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

/// A fresh id with the format's prefix (`resp_`, `msg_`, `fc_` …).
pub(crate) fn new_id(prefix: &str) -> String {
    let random =
        crate::keys::random_id(24).unwrap_or_else(|_| format!("{:024x}", crate::time::now_ms()));
    format!("{prefix}{random}")
}

pub(crate) fn now_s() -> u64 {
    u64::try_from(crate::time::now_ms() / 1_000).unwrap_or(0)
}

/// A chat completion answer, as the translations read it.
#[derive(Deserialize)]
pub(crate) struct ChatAnswer {
    #[serde(default)]
    pub choices: Vec<ChatChoice>,
}

#[derive(Deserialize)]
pub(crate) struct ChatChoice {
    #[serde(default)]
    pub message: ChatMessage,
    #[serde(default)]
    pub finish_reason: Option<String>,
}

#[derive(Deserialize, Default)]
pub(crate) struct ChatMessage {
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default, alias = "reasoning")]
    pub reasoning_content: Option<String>,
    #[serde(default)]
    pub tool_calls: Vec<ChatToolCall>,
}

#[derive(Deserialize)]
pub(crate) struct ChatToolCall {
    #[serde(default)]
    pub id: String,
    pub function: ChatFunction,
}

#[derive(Deserialize)]
pub(crate) struct ChatFunction {
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

/// Parses one top-level field as `T`, naming the field when it has the wrong shape.
pub(crate) fn parse<T: serde::de::DeserializeOwned>(
    raw: &RawValue,
    param: &'static str,
    what: &str,
) -> Result<T, BodyError> {
    serde_json::from_str(raw.get())
        .map_err(|_| BodyError::field(param, format!("`{param}` must be {what}")))
}

/// Chat `content` from parts: text parts alone are joined into a string (every engine
/// takes one), anything else stays a list of parts.
pub(crate) fn chat_content(parts: Vec<serde_json::Value>) -> serde_json::Value {
    use serde_json::Value;
    if parts.iter().all(|p| p["type"] == "text") {
        let texts: Vec<&str> = parts.iter().filter_map(|p| p["text"].as_str()).collect();
        return Value::String(texts.join("\n"));
    }
    Value::Array(parts)
}
