//! The Anthropic adapter: OpenAI chat completions in, the Messages API out, and back.
//!
//! Requests are translated field by field — system prompts, multi-part content (text,
//! images as data URLs or links), tool definitions, tool calls and tool results, stop
//! sequences, sampling — and anything the Messages API has no place for (`user`,
//! `metadata`, `store`, `seed`, penalties …) is never sent: the translation is itself an
//! allow-list. Answers come back as OpenAI chat completions; streams are translated event
//! by event by [`StreamTranslator`]. Usage keeps Anthropic's cache reads as cached prompt
//! tokens. Error messages name positions and fields, never content.

use axum::http::header::{HeaderName, HeaderValue};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::http::{HttpCore, credential, secret_header};
use super::{UpstreamError, UpstreamErrorKind};
use crate::config::ProviderConfig;
use crate::gateway::ProviderProblem;
use crate::gateway::{BodyError, Endpoint, Inspected};

/// The Messages API version we speak.
const VERSION: &str = "2023-06-01";

pub struct AnthropicProvider {
    pub core: HttpCore,
    pub(super) url: axum::http::Uri,
    count_url: axum::http::Uri,
    /// The Messages API requires `max_tokens`; used when the client sets none.
    default_max_tokens: u64,
}

impl AnthropicProvider {
    pub fn new(config: &ProviderConfig) -> Result<Self, ProviderProblem> {
        let mut headers = Vec::new();
        if let Some(key) = credential(config)? {
            headers.push((
                HeaderName::from_static("x-api-key"),
                secret_header(key.expose())?,
            ));
        }
        Ok(Self {
            core: HttpCore::new(config, headers)?,
            url: HttpCore::url(config, "/messages")?,
            count_url: HttpCore::url(config, "/messages/count_tokens")?,
            default_max_tokens: config.default_max_tokens,
        })
    }

    pub fn version_header(&self) -> [(HeaderName, HeaderValue); 1] {
        [(
            HeaderName::from_static("anthropic-version"),
            HeaderValue::from_static(VERSION),
        )]
    }

    pub fn build_body(
        &self,
        endpoint: Endpoint,
        inspected: &Inspected<'_>,
        upstream_model: &str,
        stream: bool,
    ) -> Result<Bytes, BodyError> {
        if endpoint != Endpoint::Chat {
            return Err(BodyError::field(
                "model",
                format!(
                    "this model supports only /v1/chat/completions, not /v1{}",
                    endpoint.path()
                ),
            ));
        }
        translate_request(inspected, upstream_model, stream, self.default_max_tokens)
    }

    /// The headers a Messages request goes out with: our API version, or for a client
    /// speaking the Messages API itself, its own `anthropic-version` and `anthropic-beta`,
    /// unchanged.
    pub fn headers(&self, out: &mut super::Outgoing) -> Vec<(HeaderName, HeaderValue)> {
        let mut headers = std::mem::take(&mut out.headers);
        if !headers.iter().any(|(n, _)| n == "anthropic-version") {
            headers.extend(self.version_header());
        }
        headers
    }

    /// Counts a Messages request's input tokens with the provider's own endpoint.
    pub async fn count_tokens(
        &self,
        body: Bytes,
        headers: &[(HeaderName, HeaderValue)],
    ) -> Result<u64, UpstreamError> {
        let mut extra = headers.to_vec();
        if !extra.iter().any(|(n, _)| n == "anthropic-version") {
            extra.extend(self.version_header());
        }
        let response = self
            .core
            .post(&self.count_url, super::Outgoing::json(body), &extra)
            .await?;
        let body = self.core.read_body(response).await?;
        #[derive(Deserialize)]
        struct Count {
            input_tokens: u64,
        }
        serde_json::from_slice::<Count>(&body)
            .map(|c| c.input_tokens)
            .map_err(|_| self.core.error(UpstreamErrorKind::Protocol))
    }

    pub fn translate_response(&self, body: &[u8]) -> Result<Bytes, UpstreamError> {
        translate_response(body).ok_or_else(|| self.core.error(UpstreamErrorKind::Protocol))
    }
}

fn invalid(param: &'static str, message: impl Into<String>) -> BodyError {
    BodyError::field(param, message)
}

fn parse_field<T: serde::de::DeserializeOwned>(
    raw: &str,
    param: &'static str,
    what: &str,
) -> Result<T, BodyError> {
    serde_json::from_str(raw).map_err(|_| invalid(param, format!("`{param}` must be {what}")))
}

/// An OpenAI chat completion request as a Messages API request.
pub fn translate_request(
    inspected: &Inspected<'_>,
    upstream_model: &str,
    stream: bool,
    default_max_tokens: u64,
) -> Result<Bytes, BodyError> {
    let mut out = Map::new();
    out.insert("model".into(), upstream_model.into());
    let messages: Vec<Value> = match inspected.field("messages") {
        Some(raw) => parse_field(raw, "messages", "an array of message objects")?,
        None => Vec::new(),
    };
    let (system, messages) = translate_messages(messages)?;
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert("messages".into(), Value::Array(messages));
    out.insert(
        "max_tokens".into(),
        inspected.max_tokens.unwrap_or(default_max_tokens).into(),
    );
    for name in ["temperature", "top_p", "top_k"] {
        if let Some(raw) = inspected.field(name) {
            let n: serde_json::Number = parse_field(raw, param_name(name), "a number")?;
            out.insert(name.into(), Value::Number(n));
        }
    }
    if let Some(raw) = inspected.field("stop") {
        let stops = match serde_json::from_str::<Value>(raw) {
            Ok(Value::String(s)) => vec![Value::String(s)],
            Ok(Value::Array(a)) if a.iter().all(Value::is_string) => a,
            _ => {
                return Err(invalid(
                    "stop",
                    "`stop` must be a string or an array of strings",
                ));
            }
        };
        out.insert("stop_sequences".into(), Value::Array(stops));
    }
    if let Some(raw) = inspected.field("n")
        && raw != "1"
    {
        return Err(invalid("n", "this model supports only `n` = 1"));
    }
    if let Some(raw) = inspected.field("response_format") {
        let kind = serde_json::from_str::<Value>(raw)
            .ok()
            .and_then(|v| v.get("type").and_then(Value::as_str).map(str::to_owned));
        if kind.as_deref() != Some("text") {
            return Err(invalid(
                "response_format",
                "this model supports only `response_format` of type `text`",
            ));
        }
    }
    if let Some(raw) = inspected.field("tools") {
        let tools: Vec<Value> = parse_field(raw, "tools", "an array of tool objects")?;
        let mut translated = Vec::with_capacity(tools.len());
        for (i, tool) in tools.into_iter().enumerate() {
            translated.push(translate_tool(tool, i)?);
        }
        out.insert("tools".into(), Value::Array(translated));
    }
    let mut choice = match inspected.field("tool_choice") {
        Some(raw) => Some(translate_tool_choice(parse_field(
            raw,
            "tool_choice",
            "a string or an object",
        )?)?),
        None => None,
    };
    if inspected
        .field("parallel_tool_calls")
        .is_some_and(|r| r == "false")
    {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = Value::Bool(true);
        }
    }
    if let Some(c) = choice {
        out.insert("tool_choice".into(), c);
    }
    if stream {
        out.insert("stream".into(), Value::Bool(true));
    }
    serde_json::to_vec(&out)
        .map(Bytes::from)
        .map_err(|_| invalid("messages", "the request could not be translated"))
}

fn param_name(name: &str) -> &'static str {
    match name {
        "temperature" => "temperature",
        "top_p" => "top_p",
        _ => "top_k",
    }
}

fn translate_tool(tool: Value, i: usize) -> Result<Value, BodyError> {
    let bad = || {
        invalid(
            "tools",
            format!("tools[{i}] must be {{\"type\": \"function\", \"function\": {{\"name\", …}}}}"),
        )
    };
    let Value::Object(mut tool) = tool else {
        return Err(bad());
    };
    if tool.get("type").and_then(Value::as_str) != Some("function") {
        return Err(bad());
    }
    let Some(Value::Object(mut f)) = tool.remove("function") else {
        return Err(bad());
    };
    let Some(name @ Value::String(_)) = f.remove("name") else {
        return Err(bad());
    };
    let mut out = Map::new();
    out.insert("name".into(), name);
    if let Some(d @ Value::String(_)) = f.remove("description") {
        out.insert("description".into(), d);
    }
    let schema = match f.remove("parameters") {
        Some(p @ Value::Object(_)) => p,
        _ => json!({"type": "object", "properties": {}}),
    };
    out.insert("input_schema".into(), schema);
    Ok(Value::Object(out))
}

fn translate_tool_choice(choice: Value) -> Result<Value, BodyError> {
    match &choice {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(json!({"type": "auto"})),
            "required" => Ok(json!({"type": "any"})),
            "none" => Ok(json!({"type": "none"})),
            _ => Err(invalid(
                "tool_choice",
                "`tool_choice` must be `auto`, `required`, `none` or a function",
            )),
        },
        Value::Object(_) => match choice.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => Ok(json!({"type": "tool", "name": name})),
            None => Err(invalid(
                "tool_choice",
                "`tool_choice.function.name` is required",
            )),
        },
        _ => Err(invalid(
            "tool_choice",
            "`tool_choice` must be a string or an object",
        )),
    }
}

/// Splits system prompts off and turns each message into content blocks; consecutive
/// messages of one role are merged (tool results follow their assistant turn together).
fn translate_messages(list: Vec<Value>) -> Result<(Vec<Value>, Vec<Value>), BodyError> {
    let mut system = Vec::new();
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    for (i, message) in list.into_iter().enumerate() {
        let Value::Object(mut m) = message else {
            return Err(invalid(
                "messages",
                format!("messages[{i}] must be an object"),
            ));
        };
        let role = match m.get("role").and_then(Value::as_str) {
            Some(r @ ("system" | "developer" | "user" | "assistant" | "tool")) => r.to_owned(),
            _ => {
                return Err(invalid(
                    "messages",
                    format!(
                        "messages[{i}].role must be system, developer, user, assistant or tool"
                    ),
                ));
            }
        };
        let content = m.remove("content");
        let (turn_role, blocks) = match role.as_str() {
            "system" | "developer" => {
                let blocks = content_blocks(content, i)?;
                if blocks.iter().any(|b| b["type"] != "text") {
                    return Err(invalid(
                        "messages",
                        format!("messages[{i}]: a system message may hold only text"),
                    ));
                }
                system.extend(blocks);
                continue;
            }
            "user" => ("user", content_blocks(content, i)?),
            "assistant" => {
                let mut blocks = content_blocks(content, i)?;
                if let Some(Value::Array(calls)) = m.remove("tool_calls") {
                    for (j, call) in calls.into_iter().enumerate() {
                        blocks.push(tool_use_block(call, i, j)?);
                    }
                }
                ("assistant", blocks)
            }
            _ => {
                let Some(Value::String(id)) = m.remove("tool_call_id") else {
                    return Err(invalid(
                        "messages",
                        format!("messages[{i}].tool_call_id is required for a tool message"),
                    ));
                };
                let mut result = json!({"type": "tool_result", "tool_use_id": id});
                let blocks = content_blocks(content, i)?;
                if !blocks.is_empty() {
                    result["content"] = Value::Array(blocks);
                }
                ("user", vec![result])
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((r, existing)) if *r == turn_role => existing.extend(blocks),
            _ => turns.push((turn_role, blocks)),
        }
    }
    let messages = turns
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    Ok((system, messages))
}

fn tool_use_block(call: Value, i: usize, j: usize) -> Result<Value, BodyError> {
    let bad = |what: &str| invalid("messages", format!("messages[{i}].tool_calls[{j}]: {what}"));
    let id = call
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("`id` is required"))?;
    let name = call
        .pointer("/function/name")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("`function.name` is required"))?;
    let input = match call.pointer("/function/arguments") {
        Some(Value::String(args)) if !args.trim().is_empty() => serde_json::from_str::<Value>(args)
            .map_err(|_| bad("`function.arguments` must be a JSON object"))?,
        _ => json!({}),
    };
    if !input.is_object() {
        return Err(bad("`function.arguments` must be a JSON object"));
    }
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

/// A message's `content` (string, parts, or null) as Messages API content blocks.
fn content_blocks(content: Option<Value>, i: usize) -> Result<Vec<Value>, BodyError> {
    match content {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) if s.is_empty() => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![json!({"type": "text", "text": s})]),
        Some(Value::Array(parts)) => {
            let mut out = Vec::with_capacity(parts.len());
            for (j, part) in parts.into_iter().enumerate() {
                if let Some(block) = content_part(part, i, j)? {
                    out.push(block);
                }
            }
            Ok(out)
        }
        Some(_) => Err(invalid(
            "messages",
            format!("messages[{i}].content must be a string or an array of parts"),
        )),
    }
}

fn content_part(part: Value, i: usize, j: usize) -> Result<Option<Value>, BodyError> {
    let bad = |what: &str| invalid("messages", format!("messages[{i}].content[{j}]: {what}"));
    let Value::Object(mut part) = part else {
        return Err(bad("a content part must be an object"));
    };
    match part.get("type").and_then(Value::as_str) {
        Some("text") => match part.remove("text") {
            Some(Value::String(t)) if t.is_empty() => Ok(None),
            Some(Value::String(t)) => Ok(Some(json!({"type": "text", "text": t}))),
            _ => Err(bad("`text` must be a string")),
        },
        Some("image_url") => {
            let url = match part.remove("image_url") {
                Some(Value::String(u)) => u,
                Some(Value::Object(mut o)) => match o.remove("url") {
                    Some(Value::String(u)) => u,
                    _ => return Err(bad("`image_url.url` is required")),
                },
                _ => return Err(bad("`image_url.url` is required")),
            };
            Ok(Some(image_block(url).ok_or_else(|| {
                bad("an image must be an https URL or a base64 data URL")
            })?))
        }
        _ => Err(bad(
            "this model accepts only `text` and `image_url` content parts",
        )),
    }
}

/// `data:<media type>;base64,<data>` becomes an inline image; an http(s) URL a linked one.
fn image_block(url: String) -> Option<Value> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',')?;
        let media_type = meta.strip_suffix(";base64")?;
        if !media_type.starts_with("image/") {
            return None;
        }
        return Some(json!({"type": "image", "source": {
            "type": "base64", "media_type": media_type, "data": data}}));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Some(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    None
}

/// Token counts of a Messages API answer.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct Usage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    /// The cache writes by lifetime (`ephemeral_5m_input_tokens`, `ephemeral_1h_…`).
    #[serde(default)]
    cache_creation: Option<CacheCreation>,
}

#[derive(Debug, Default, Clone, Copy, Deserialize)]
struct CacheCreation {
    #[serde(default)]
    ephemeral_5m_input_tokens: Option<u64>,
    #[serde(default)]
    ephemeral_1h_input_tokens: Option<u64>,
}

impl Usage {
    /// Later reports (a stream's `message_delta`) update only what they carry.
    fn merge(&mut self, later: Usage) {
        let pick = |a: &mut Option<u64>, b: Option<u64>| {
            if b.is_some() {
                *a = b;
            }
        };
        pick(&mut self.input_tokens, later.input_tokens);
        pick(&mut self.output_tokens, later.output_tokens);
        pick(
            &mut self.cache_creation_input_tokens,
            later.cache_creation_input_tokens,
        );
        pick(
            &mut self.cache_read_input_tokens,
            later.cache_read_input_tokens,
        );
        if later.cache_creation.is_some() {
            self.cache_creation = later.cache_creation;
        }
    }

    /// The counts in OpenAI's terms: prompt tokens include cache reads and writes; reads
    /// are `cached_tokens`, writes `cache_write_tokens` (as OpenRouter reports them) with
    /// the 1-hour part as `cache_write_1h_tokens` (writes without a split are 5-minute
    /// ones, Anthropic's default). Each kind is billed at its own price. The upstream's
    /// numbers are summed saturating (the meter bounds them after).
    fn totals(&self) -> Totals {
        let cached = self.cache_read_input_tokens.unwrap_or(0);
        let split = self.cache_creation.unwrap_or_default();
        let write_1h = split.ephemeral_1h_input_tokens.unwrap_or(0);
        let writes = self
            .cache_creation_input_tokens
            .unwrap_or(0)
            .max(write_1h.saturating_add(split.ephemeral_5m_input_tokens.unwrap_or(0)));
        Totals {
            prompt: self
                .input_tokens
                .unwrap_or(0)
                .saturating_add(cached)
                .saturating_add(writes),
            completion: self.output_tokens.unwrap_or(0),
            cached,
            writes,
            write_1h,
        }
    }

    /// As an OpenAI `usage` object.
    fn openai(&self) -> Value {
        let t = self.totals();
        json!({
            "prompt_tokens": t.prompt,
            "completion_tokens": t.completion,
            "total_tokens": t.prompt.saturating_add(t.completion),
            "prompt_tokens_details": {"cached_tokens": t.cached, "cache_write_tokens": t.writes,
                                      "cache_write_1h_tokens": t.write_1h},
        })
    }

    /// What the upstream has reported so far (a stream's `message_start` carries the
    /// prompt's exact counts), when it has reported the prompt: the counts `openai` writes,
    /// without writing them.
    fn reported(&self) -> Option<crate::gateway::UpstreamUsage> {
        self.input_tokens?;
        let t = self.totals();
        Some(crate::gateway::UpstreamUsage {
            prompt_tokens: Some(t.prompt),
            completion_tokens: Some(t.completion),
            prompt_tokens_details: Some(crate::gateway::PromptDetails {
                cached_tokens: Some(t.cached),
                cache_write_tokens: Some(t.writes),
                cache_write_1h_tokens: Some(t.write_1h),
            }),
            completion_tokens_details: None,
        })
    }
}

/// `Usage` in OpenAI's terms (see `Usage::totals`).
struct Totals {
    prompt: u64,
    completion: u64,
    cached: u64,
    writes: u64,
    write_1h: u64,
}

fn finish_reason(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

fn now_s() -> u64 {
    u64::try_from(crate::time::now_ms() / 1_000).unwrap_or(0)
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Block {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    Thinking {
        thinking: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Message {
    id: String,
    model: String,
    #[serde(default)]
    content: Vec<Block>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Usage,
}

/// The token counts of a Messages API answer's `usage` object (its JSON, as the gateway's
/// scan found it in the answer), as OpenAI usage (for metering a native answer).
pub fn reported_usage(usage: &[u8]) -> Option<crate::gateway::UpstreamUsage> {
    crate::gateway::body::read_json::<Usage>(usage)?.reported()
}

/// A Messages API answer as an OpenAI chat completion.
pub fn translate_response(body: &[u8]) -> Option<Bytes> {
    let m: Message = serde_json::from_slice(body).ok()?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in m.content {
        match block {
            Block::Text { text: t } => text.push_str(&t),
            Block::Thinking { thinking } => reasoning.push_str(&thinking),
            Block::ToolUse { id, name, input } => calls.push(json!({
                "id": id, "type": "function",
                "function": {"name": name, "arguments": input.to_string()},
            })),
            Block::Other => {}
        }
    }
    let mut message = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { Value::String(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = Value::String(reasoning);
    }
    let out = json!({
        "id": m.id,
        "object": "chat.completion",
        "created": now_s(),
        "model": m.model,
        "choices": [{"index": 0, "message": message, "logprobs": null,
                     "finish_reason": finish_reason(m.stop_reason.as_deref())}],
        "usage": m.usage.openai(),
    });
    serde_json::to_vec(&out).ok().map(Bytes::from)
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event {
    MessageStart {
        message: StartMessage,
    },
    ContentBlockStart {
        index: u64,
        content_block: StartBlock,
    },
    ContentBlockDelta {
        index: u64,
        delta: Delta,
    },
    MessageDelta {
        #[serde(default)]
        delta: MessageDeltaBody,
        #[serde(default)]
        usage: Option<Usage>,
    },
    MessageStop,
    Error {
        error: ErrorBody,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct StartMessage {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    #[serde(default)]
    usage: Usage,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum StartBlock {
    ToolUse {
        id: String,
        name: String,
    },
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Delta {
    #[serde(rename = "text_delta")]
    Text { text: String },
    #[serde(rename = "input_json_delta")]
    InputJson { partial_json: String },
    #[serde(rename = "thinking_delta")]
    Thinking { thinking: String },
    #[serde(other)]
    Other,
}

#[derive(Deserialize, Default)]
struct MessageDeltaBody {
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}

/// Translates a Messages API event stream into OpenAI chat completion chunks, one
/// event at a time: `message_delta` becomes the finish and usage chunks, `message_stop`
/// `[DONE]`, an `error`
/// event an in-band OpenAI error (which ends the relay).
#[derive(Default)]
pub struct StreamTranslator {
    id: String,
    model: String,
    created: u64,
    usage: Usage,
    /// Content-block index of each tool call, in call order (the OpenAI `index`).
    tool_blocks: Vec<u64>,
}

impl StreamTranslator {
    /// The counts the upstream has reported so far (the prompt's, from `message_start`).
    pub fn reported_so_far(&self) -> Option<crate::gateway::UpstreamUsage> {
        self.usage.reported()
    }

    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        let c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        Bytes::from(c.to_string())
    }

    /// The OpenAI chunks (as SSE `data` payloads) for one upstream event's data.
    pub fn on_event(&mut self, data: &[u8], out: &mut Vec<Bytes>) {
        let Ok(event) = serde_json::from_slice::<Event>(data) else {
            return;
        };
        match event {
            Event::MessageStart { message } => {
                self.id = message.id;
                self.model = message.model;
                self.created = now_s();
                self.usage = message.usage;
                out.push(self.chunk(json!({"role": "assistant", "content": ""}), None));
            }
            Event::ContentBlockStart {
                index,
                content_block: StartBlock::ToolUse { id, name },
            } => {
                let n = self.tool_blocks.len();
                self.tool_blocks.push(index);
                out.push(self.chunk(
                    json!({"tool_calls": [{"index": n, "id": id, "type": "function",
                                           "function": {"name": name, "arguments": ""}}]}),
                    None,
                ));
            }
            Event::ContentBlockStart { .. } => {}
            Event::ContentBlockDelta { index, delta } => match delta {
                Delta::Text { text } => out.push(self.chunk(json!({"content": text}), None)),
                Delta::Thinking { thinking } => {
                    out.push(self.chunk(json!({"reasoning_content": thinking}), None));
                }
                Delta::InputJson { partial_json } => {
                    if let Some(n) = self.tool_blocks.iter().position(|b| *b == index) {
                        out.push(self.chunk(
                            json!({"tool_calls": [{"index": n, "function": {"arguments": partial_json}}]}),
                            None,
                        ));
                    }
                }
                Delta::Other => {}
            },
            Event::MessageDelta { delta, usage } => {
                if let Some(u) = usage {
                    self.usage.merge(u);
                }
                if let Some(reason) = delta.stop_reason {
                    out.push(self.chunk(json!({}), Some(finish_reason(Some(&reason)))));
                }
                // The final counts come here: the usage chunk goes with them (and a native
                // client's `message_delta` shows their cost).
                let usage = json!({
                    "id": self.id, "object": "chat.completion.chunk", "created": self.created,
                    "model": self.model, "choices": [], "usage": self.usage.openai(),
                });
                out.push(Bytes::from(usage.to_string()));
            }
            Event::MessageStop => out.push(Bytes::from_static(b"[DONE]")),
            Event::Error { error } => {
                let e = json!({"error": {"message": error.message, "type": "upstream_error",
                                         "param": null, "code": error.kind}});
                out.push(Bytes::from(e.to_string()));
            }
            Event::Other => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::inspect;

    fn request(body: Value) -> Value {
        let bytes = serde_json::to_vec(&body).unwrap();
        let inspected = inspect(Endpoint::Chat, &bytes).unwrap();
        let out = translate_request(&inspected, "claude-x", true, 1024).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn a_native_answers_usage_meters_as_its_openai_usage_reads() {
        for usage in [
            json!({"input_tokens": 7, "output_tokens": 3}),
            json!({"input_tokens": 7, "output_tokens": 3, "cache_read_input_tokens": 100,
                   "cache_creation_input_tokens": 50,
                   "cache_creation": {"ephemeral_5m_input_tokens": 20,
                                      "ephemeral_1h_input_tokens": 30}}),
            json!({"input_tokens": 1, "cache_creation": {"ephemeral_1h_input_tokens": 4}}),
        ] {
            let got = reported_usage(usage.to_string().as_bytes()).expect("counts");
            let parsed: Usage = serde_json::from_value(usage.clone()).unwrap();
            let via_json: crate::gateway::UpstreamUsage =
                serde_json::from_value(parsed.openai()).unwrap();
            assert_eq!(got.counts(), via_json.counts(), "{usage}");
        }
        let got = reported_usage(
            br#"{"input_tokens":5,"output_tokens":2,"cache_read_input_tokens":10,"cache_creation":{"ephemeral_1h_input_tokens":4}}"#,
        )
        .expect("counts");
        assert_eq!(got.prompt_tokens, Some(19));
        assert_eq!(got.completion_tokens, Some(2));
        let details = got.prompt_tokens_details.expect("details");
        assert_eq!(
            (
                details.cached_tokens,
                details.cache_write_tokens,
                details.cache_write_1h_tokens
            ),
            (Some(10), Some(4), Some(4))
        );
        // No prompt count, nothing reported; counts past u64 saturate instead of wrapping.
        assert!(reported_usage(br#"{"output_tokens":2}"#).is_none());
        assert!(reported_usage(b"null").is_none());
        let max = u64::MAX;
        let huge = format!(r#"{{"input_tokens":{max},"cache_read_input_tokens":{max}}}"#);
        let got = reported_usage(huge.as_bytes()).expect("counts");
        assert_eq!(got.prompt_tokens, Some(u64::MAX));
    }

    #[test]
    fn requests_translate_system_parts_tools_and_results_and_drop_the_rest() {
        let got = request(json!({
            "model": "m", "stream": true, "user": "alice@example.com", "metadata": {"a": 1},
            "store": true, "seed": 7, "temperature": 0.5, "stop": "END", "max_tokens": 99,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "look", "arguments": "{\"q\":1}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
                {"role": "user", "content": "thanks"}
            ],
            "tools": [{"type": "function", "function": {"name": "look", "description": "d",
                       "parameters": {"type": "object", "properties": {"q": {"type": "integer"}}}}}],
            "tool_choice": "required", "parallel_tool_calls": false
        }));
        assert_eq!(
            got,
            json!({
                "model": "claude-x",
                "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use tools."}],
                "messages": [
                    {"role": "user", "content": [
                        {"type": "text", "text": "What is this?"},
                        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"}}]},
                    {"role": "assistant", "content": [
                        {"type": "tool_use", "id": "call_1", "name": "look", "input": {"q": 1}}]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "call_1", "content": [{"type": "text", "text": "a cat"}]},
                        {"type": "text", "text": "thanks"}]}
                ],
                "max_tokens": 99,
                "temperature": 0.5,
                "stop_sequences": ["END"],
                "tools": [{"name": "look", "description": "d",
                           "input_schema": {"type": "object", "properties": {"q": {"type": "integer"}}}}],
                "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
                "stream": true
            })
        );
    }

    #[test]
    fn untranslatable_requests_are_refused_without_echoing_content() {
        let bytes = br#"{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"SECRET"}}]}]}"#;
        let inspected = inspect(Endpoint::Chat, bytes).unwrap();
        let err = translate_request(&inspected, "c", false, 1).unwrap_err();
        assert_eq!(err.param, Some("messages"));
        assert!(!err.message.contains("SECRET") && err.message.contains("content[0]"));
        let bytes = br#"{"model":"m","n":2,"messages":[]}"#;
        let inspected = inspect(Endpoint::Chat, bytes).unwrap();
        assert_eq!(
            translate_request(&inspected, "c", false, 1)
                .unwrap_err()
                .param,
            Some("n")
        );
    }

    #[test]
    fn answers_become_chat_completions_with_tool_calls_and_cache_usage() {
        let body = json!({
            "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "text", "text": "Let me look."},
                        {"type": "tool_use", "id": "toolu_1", "name": "look", "input": {"q": 1}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 2}
        });
        let out: Value =
            serde_json::from_slice(&translate_response(body.to_string().as_bytes()).unwrap())
                .unwrap();
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(out["choices"][0]["message"]["content"], "Let me look.");
        assert_eq!(
            out["choices"][0]["message"]["tool_calls"][0]["function"],
            json!({"name": "look", "arguments": "{\"q\":1}"})
        );
        assert_eq!(
            out["usage"],
            json!({"prompt_tokens": 16, "completion_tokens": 5, "total_tokens": 21,
                   "prompt_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 2,
                                             "cache_write_1h_tokens": 0}})
        );
    }

    #[test]
    fn stream_events_become_chunks_then_usage_then_done() {
        let events = [
            json!({"type": "message_start", "message": {"id": "msg_1", "model": "claude-x", "usage": {"input_tokens": 7, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "ping"}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "look", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"q\":"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "1}"}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
            json!({"type": "message_stop"}),
        ];
        let mut t = StreamTranslator::default();
        let mut out = Vec::new();
        for e in &events {
            t.on_event(e.to_string().as_bytes(), &mut out);
        }
        assert_eq!(out.last().unwrap().as_ref(), b"[DONE]");
        let chunks: Vec<Value> = out[..out.len() - 1]
            .iter()
            .map(|b| serde_json::from_slice(b).unwrap())
            .collect();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hi");
        assert_eq!(
            chunks[2]["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
            "look"
        );
        let args: String = chunks[3..5]
            .iter()
            .map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(args, "{\"q\":1}");
        assert_eq!(chunks[5]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chunks[6]["usage"]["prompt_tokens"], 7);
        assert_eq!(chunks[6]["usage"]["completion_tokens"], 9);
        assert_eq!(chunks[6]["choices"], json!([]));
    }
}
