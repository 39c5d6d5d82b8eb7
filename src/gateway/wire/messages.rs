//! The Anthropic Messages API, inbound: requests to chat, chat answers and chunks back.
//!
//! For engines that speak Chat Completions: system blocks, text, images, `tool_use` and
//! `tool_result` translate; `thinking` becomes the engine's reasoning effort; server
//! tools and documents are a 400 naming the parameter; `metadata` (with its `user_id`)
//! is never sent anywhere. An Anthropic provider instead gets the client's own body,
//! allow-listed (`native_body`), so `cache_control` and signed thinking survive.

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use super::{
    ChatCall, ChatContent, ChatImage, ChatMsg, ChatPart, ChatRequest, Chunk, joined, new_id,
    number, parse, string,
};
use crate::gateway::BodyError;
use crate::gateway::body::{Field, field, fields, read_json};
use crate::usage::{Charged, TokenCounts};

/// A Messages request as a chat completion request.
pub fn to_chat(body: &[u8]) -> Result<super::ChatBody, BodyError> {
    translate(body, false)
}

/// A `count_tokens` request (no `max_tokens`) as a chat completion request.
pub fn count_to_chat(body: &[u8]) -> Result<super::ChatBody, BodyError> {
    translate(body, true)
}

fn translate(body: &[u8], counting: bool) -> Result<super::ChatBody, BodyError> {
    // One pass reads the fields and the message list together; a body it does not read
    // (a field it does not know, one given twice, anything malformed) is split into its
    // fields instead, which says what is wrong or keeps what is unknown out.
    let top = match read_json::<Top<'_>>(body) {
        Some(top) => top,
        None => Top::of_fields(&fields(body)?),
    };
    let model = match top.model {
        Some(raw) => match string(raw) {
            Some(m) if !m.is_empty() => m,
            _ => {
                return Err(BodyError::field(
                    "model",
                    "model: must be a non-empty string",
                ));
            }
        },
        None => return Err(BodyError::field("model", "model: Field required")),
    };
    let mut out = ChatRequest::new(model);
    if let Some(raw) = top.system {
        let text = text_or_blocks(raw).map_err(|e| match e {
            NotText::Shape => BodyError::field(
                "system",
                "system: must be a string or an array of text blocks",
            ),
            NotText::Block(i) => BodyError::field(
                "system",
                format!("system.{i}: only text blocks may be given"),
            ),
        })?;
        if !text.is_empty() {
            out.messages
                .push(ChatMsg::new("system", ChatContent::Text(text)));
        }
    }
    // Only a list that does not read is gone through again, to say which message is wrong.
    let list: Vec<InBlock<'_>> = match top.messages {
        Some(Listed::Read(list)) => list,
        Some(Listed::Raw(raw)) => match serde_json::from_str(raw.get()) {
            Ok(list) => list,
            Err(_) => return Err(unreadable_messages(raw)),
        },
        None => return Err(BodyError::field("messages", "messages: Field required")),
    };
    out.messages.reserve(list.len());
    for (i, m) in list.into_iter().enumerate() {
        message(m, i, &mut out.messages)?;
    }
    match top.max_tokens {
        Some(raw) => out.max_tokens = Some(parse(raw, "max_tokens", "a positive integer")?),
        None if counting => {}
        None => return Err(BodyError::field("max_tokens", "max_tokens: Field required")),
    }
    if let Some(raw) = top.stop_sequences {
        out.stop = parse(raw, "stop_sequences", "an array of strings")?;
    }
    if let Some(raw) = top.temperature {
        out.temperature = Some(number(raw, "temperature")?);
    }
    if let Some(raw) = top.top_p {
        out.top_p = Some(number(raw, "top_p")?);
    }
    if let Some(raw) = top.top_k {
        out.top_k = Some(number(raw, "top_k")?);
    }
    if let Some(raw) = top.tools {
        let list: Vec<InTool<'_>> = serde_json::from_str(raw.get())
            .map_err(|_| BodyError::field("tools", "tools: must be an array of tools"))?;
        out.tools.reserve(list.len());
        for (i, tool) in list.into_iter().enumerate() {
            out.tools.push(tool_to_chat(tool, i)?);
        }
    }
    if let Some(raw) = top.tool_choice {
        #[derive(Deserialize)]
        struct Choice {
            #[serde(rename = "type")]
            kind: String,
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            disable_parallel_tool_use: Option<bool>,
        }
        let c: Choice = parse(raw, "tool_choice", "an object with a `type`")?;
        let choice = match (c.kind.as_str(), c.name) {
            ("auto", _) => json!("auto"),
            ("any", _) => json!("required"),
            ("none", _) => json!("none"),
            ("tool", Some(name)) => json!({"type": "function", "function": {"name": name}}),
            _ => {
                return Err(BodyError::field(
                    "tool_choice",
                    "tool_choice.type: must be `auto`, `any`, `tool` (with a `name`) or `none`",
                ));
            }
        };
        out.tool_choice = Some(choice);
        if c.disable_parallel_tool_use == Some(true) {
            out.parallel_tool_calls = Some(false);
        }
    }
    out.reasoning_effort = reasoning_effort(top.thinking, top.output_config)?;
    if let Some(raw) = top.stream {
        out.stream = Some(parse(raw, "stream", "a boolean")?);
    }
    Ok(out.body())
}

/// The top-level fields of a Messages request the translation reads, each raw until it
/// is read (`null` is absent, as `field` has it), and `metadata`, which it drops. Read in
/// one pass, a field given twice or one not named here fails it (`deny_unknown_fields`):
/// the body is then split by `fields`, which refuses the one and leaves out the other.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Top<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    system: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Option<Listed<'a>>,
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stop_sequences: Option<&'a RawValue>,
    #[serde(borrow, default)]
    temperature: Option<&'a RawValue>,
    #[serde(borrow, default)]
    top_p: Option<&'a RawValue>,
    #[serde(borrow, default)]
    top_k: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_choice: Option<&'a RawValue>,
    #[serde(borrow, default)]
    thinking: Option<&'a RawValue>,
    #[serde(borrow, default)]
    output_config: Option<&'a RawValue>,
    #[serde(borrow, default)]
    stream: Option<&'a RawValue>,
    #[serde(default, rename = "metadata")]
    _metadata: Option<serde::de::IgnoredAny>,
}

impl<'a> Top<'a> {
    /// The same fields out of a body split by `fields` (which refused duplicates).
    fn of_fields(f: &[(Cow<'a, str>, &'a RawValue)]) -> Self {
        Self {
            model: field(f, "model"),
            system: field(f, "system"),
            messages: field(f, "messages").map(Listed::Raw),
            max_tokens: field(f, "max_tokens"),
            stop_sequences: field(f, "stop_sequences"),
            temperature: field(f, "temperature"),
            top_p: field(f, "top_p"),
            top_k: field(f, "top_k"),
            tools: field(f, "tools"),
            tool_choice: field(f, "tool_choice"),
            thinking: field(f, "thinking"),
            output_config: field(f, "output_config"),
            stream: field(f, "stream"),
            _metadata: None,
        }
    }
}

/// `messages`: read as a list in the one pass, or raw from `fields`.
enum Listed<'a> {
    Read(Vec<InBlock<'a>>),
    Raw(&'a RawValue),
}

impl<'de: 'a, 'a> Deserialize<'de> for Listed<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<InBlock<'a>>::deserialize(d).map(Listed::Read)
    }
}

/// Why `text_or_blocks` found no text: not a string or an array, or the array's block `i`
/// is not a text block.
enum NotText {
    Shape,
    Block(usize),
}

/// A string, or an array of text blocks joined by newlines (`system`, a tool result).
fn text_or_blocks(raw: &RawValue) -> Result<Cow<'_, str>, NotText> {
    if let Some(text) = string(raw) {
        return Ok(text);
    }
    let blocks: Vec<&RawValue> = serde_json::from_str(raw.get()).map_err(|_| NotText::Shape)?;
    let mut texts = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.into_iter().enumerate() {
        texts.push(text_block(b).ok_or(NotText::Block(i))?);
    }
    Ok(joined(texts))
}

/// The text of a `{"type": "text", "text": …}` block; `None` for anything else.
fn text_block(raw: &RawValue) -> Option<Cow<'_, str>> {
    #[derive(Deserialize)]
    struct Block<'a> {
        #[serde(rename = "type", borrow, default)]
        kind: Option<&'a RawValue>,
        #[serde(borrow, default)]
        text: Option<&'a RawValue>,
    }
    let b: Block<'_> = serde_json::from_str(raw.get()).ok()?;
    if b.kind.and_then(string).as_deref() != Some("text") {
        return None;
    }
    b.text.and_then(string)
}

/// A tool as the client sent it, borrowed (its schema is never parsed).
#[derive(Deserialize)]
struct InTool<'a> {
    #[serde(rename = "type", borrow, deserialize_with = "super::borrowed", default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "super::borrowed", default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "super::borrowed", default)]
    description: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    input_schema: Option<&'a RawValue>,
}

/// `thinking` (a budget, or adaptive with `output_config.effort`) as a reasoning effort.
fn reasoning_effort(
    thinking: Option<&RawValue>,
    output_config: Option<&RawValue>,
) -> Result<Option<&'static str>, BodyError> {
    #[derive(Deserialize)]
    struct Thinking {
        #[serde(rename = "type")]
        kind: String,
        #[serde(default)]
        budget_tokens: Option<u64>,
    }
    #[derive(Deserialize)]
    struct OutputConfig {
        #[serde(default)]
        effort: Option<String>,
    }
    let effort = match output_config {
        Some(raw) => parse::<OutputConfig>(raw, "output_config", "an object")?.effort,
        None => None,
    };
    let from_effort = |e: Option<&str>| match e {
        Some("low") => Ok(Some("low")),
        Some("medium") | None => Ok(Some("medium")),
        Some("high" | "max") => Ok(Some("high")),
        Some(_) => Err(BodyError::field(
            "output_config",
            "output_config.effort: must be `low`, `medium`, `high` or `max`",
        )),
    };
    let Some(raw) = thinking else {
        return match effort {
            Some(e) => from_effort(Some(&e)),
            None => Ok(None),
        };
    };
    let t: Thinking = parse(raw, "thinking", "an object with a `type`")?;
    match t.kind.as_str() {
        "disabled" => Ok(None),
        "enabled" => Ok(Some(match t.budget_tokens.unwrap_or(0) {
            0..4_096 => "low",
            4_096..16_384 => "medium",
            _ => "high",
        })),
        "adaptive" => from_effort(effort.as_deref()),
        _ => Err(BodyError::field(
            "thinking",
            "thinking.type: must be `enabled`, `adaptive` or `disabled`",
        )),
    }
}

fn tool_to_chat(tool: InTool<'_>, i: usize) -> Result<super::ChatTool<'_>, BodyError> {
    match tool.kind.as_deref() {
        None | Some("custom") => {}
        Some(kind) => {
            let kind = &kind[..kind.floor_char_boundary(40)];
            return Err(BodyError::field(
                "tools",
                format!("tools.{i}: the server tool `{kind}` is not available on this model"),
            ));
        }
    }
    let Some(name) = tool.name else {
        return Err(BodyError::field(
            "tools",
            format!("tools.{i}.name: Field required"),
        ));
    };
    let Some(schema) = tool.input_schema.filter(|s| s.get().starts_with('{')) else {
        return Err(BodyError::field(
            "tools",
            format!("tools.{i}.input_schema: Field required"),
        ));
    };
    Ok(super::ChatTool::new(
        name,
        tool.description,
        Some(schema),
        None,
    ))
}

/// A message or content block of the request, each field kept raw until it is read.
#[derive(Deserialize)]
struct InBlock<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    role: Option<&'a RawValue>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
    #[serde(borrow, default)]
    source: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_use_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
}

/// One message as chat messages: a user turn's tool results become tool messages (first,
/// right after the assistant's calls), an assistant's `tool_use` blocks its tool calls.
/// Why a `messages` value that does not read as a list of messages does not: it is no
/// list, or its message `i` is no object.
fn unreadable_messages(raw: &RawValue) -> BodyError {
    let list: Vec<&RawValue> = match parse(raw, "messages", "an array of messages") {
        Ok(list) => list,
        Err(e) => return e,
    };
    let i = list
        .iter()
        .position(|m| serde_json::from_str::<InBlock<'_>>(m.get()).is_err())
        .unwrap_or(0);
    BodyError::field("messages", format!("messages.{i}: must be an object"))
}

fn message<'a>(m: InBlock<'a>, i: usize, out: &mut Vec<ChatMsg<'a>>) -> Result<(), BodyError> {
    let bad = |what: &str| BodyError::field("messages", format!("messages.{i}: {what}"));
    let role = match m.role.and_then(string).as_deref() {
        Some("user") => "user",
        Some("assistant") => "assistant",
        // Claude Code sends system text mid-conversation too.
        Some("system") => "system",
        _ => return Err(bad("role: must be `user`, `assistant` or `system`")),
    };
    let content = m
        .content
        .ok_or_else(|| bad("content: must be a string or an array of blocks"))?;
    if let Some(text) = string(content) {
        out.push(ChatMsg::new(role, ChatContent::Text(text)));
        return Ok(());
    }
    let blocks: Vec<&'a RawValue> = serde_json::from_str(content.get())
        .map_err(|_| bad("content: must be a string or an array of blocks"))?;
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    let mut results = Vec::new();
    for (j, block) in blocks.into_iter().enumerate() {
        let bad =
            |what: &str| BodyError::field("messages", format!("messages.{i}.content.{j}: {what}"));
        let block: InBlock<'a> =
            serde_json::from_str(block.get()).map_err(|_| bad("must be an object"))?;
        let kind = block.kind.and_then(string).unwrap_or_default();
        match (role, &*kind) {
            (_, "text") => match block.text.and_then(string) {
                Some(text) => parts.push(ChatPart::Text { text }),
                None => return Err(bad("text: must be a string")),
            },
            ("user", "image") => parts.push(
                block
                    .source
                    .and_then(image_part)
                    .ok_or_else(|| bad("source: must be a base64 image or an image URL"))?,
            ),
            ("user", "tool_result") => {
                let Some(id) = block.tool_use_id.and_then(string) else {
                    return Err(bad("tool_use_id: Field required"));
                };
                let text = match block.content {
                    None => Cow::Borrowed(""),
                    Some(raw) => text_or_blocks(raw).map_err(|e| match e {
                        NotText::Shape => bad("content: must be a string or blocks"),
                        NotText::Block(_) => bad("a tool result may hold only text here"),
                    })?,
                };
                let mut msg = ChatMsg::new("tool", ChatContent::Text(text));
                msg.tool_call_id = Some(id);
                results.push(msg);
            }
            ("assistant", "tool_use") => {
                let (Some(id), Some(name)) =
                    (block.id.and_then(string), block.name.and_then(string))
                else {
                    return Err(bad("a tool_use block needs `id` and `name`"));
                };
                // The input goes on as the client wrote it.
                let input = block.input.map_or("{}", RawValue::get);
                calls.push(ChatCall::new(id, name, Cow::Borrowed(input)));
            }
            // Signed thinking is for the model that wrote it; an engine does not read it.
            (_, "thinking" | "redacted_thinking") => {}
            _ => {
                let kind = &kind[..kind.floor_char_boundary(40)];
                return Err(bad(&format!(
                    "`{kind}` blocks are not available on this model in a {role} message"
                )));
            }
        }
    }
    let texts = |parts: Vec<ChatPart<'a>>| parts.into_iter().filter_map(ChatPart::into_text);
    match role {
        "system" => {
            if !results.is_empty() {
                return Err(bad("a system message may hold only text"));
            }
            out.push(ChatMsg::new(
                "system",
                ChatContent::Text(joined(texts(parts))),
            ));
        }
        "assistant" => {
            let content = if parts.is_empty() {
                ChatContent::None
            } else {
                ChatContent::Text(joined(texts(parts)))
            };
            if !matches!(content, ChatContent::None) || !calls.is_empty() {
                let mut msg = ChatMsg::new("assistant", content);
                msg.tool_calls = calls;
                out.push(msg);
            }
        }
        _ => {
            out.extend(results);
            if !parts.is_empty() {
                out.push(ChatMsg::new("user", ChatContent::from_parts(parts)));
            }
        }
    }
    Ok(())
}

/// An image `source` as a chat image part (a data URL for base64 images).
fn image_part(source: &RawValue) -> Option<ChatPart<'_>> {
    #[derive(Deserialize)]
    struct Source<'a> {
        #[serde(rename = "type", borrow)]
        kind: Cow<'a, str>,
        #[serde(borrow, deserialize_with = "super::borrowed", default)]
        media_type: Option<Cow<'a, str>>,
        #[serde(borrow, deserialize_with = "super::borrowed", default)]
        data: Option<Cow<'a, str>>,
        #[serde(borrow, deserialize_with = "super::borrowed", default)]
        url: Option<Cow<'a, str>>,
    }
    let source: Source<'_> = serde_json::from_str(source.get()).ok()?;
    let url = match &*source.kind {
        "base64" => Cow::Owned(format!(
            "data:{};base64,{}",
            source.media_type?, source.data?
        )),
        "url" => source.url?,
        _ => return None,
    };
    Some(ChatPart::ImageUrl {
        image_url: ChatImage { url, detail: None },
    })
}

/// The top-level fields an Anthropic provider receives of a Messages request: what a
/// message needs, never `metadata` (its `user_id`) or anything unknown.
const NATIVE_FIELDS: &[&str] = &[
    "messages",
    "system",
    "max_tokens",
    "stop_sequences",
    "stream",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "service_tier",
];

/// The fields `count_tokens` takes.
const COUNT_FIELDS: &[&str] = &["messages", "system", "tools", "tool_choice", "thinking"];

/// The client's Messages request for an Anthropic provider, from its top-level `fields`:
/// allow-listed, with the provider's model name.
pub fn native_body(fields: &[Field<'_>], upstream_model: &str) -> Result<Bytes, BodyError> {
    allow_listed(fields, upstream_model, NATIVE_FIELDS)
}

/// The client's `count_tokens` request for an Anthropic provider.
pub fn count_body(body: &[u8], upstream_model: &str) -> Result<Bytes, BodyError> {
    allow_listed(&fields(body)?, upstream_model, COUNT_FIELDS)
}

fn allow_listed(
    f: &[Field<'_>],
    upstream_model: &str,
    allowed: &[&str],
) -> Result<Bytes, BodyError> {
    if field(f, "messages").is_none() {
        return Err(BodyError::field("messages", "messages: Field required"));
    }
    super::allow_listed(f, upstream_model, "", allowed)
}

fn stop_reason(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

/// The `usage` of a Message from billed counts: `input_tokens` excludes cache reads and
/// writes, which are reported apart (writes split by lifetime), as Anthropic does.
fn usage(counts: TokenCounts) -> UsageOut {
    let k = counts.kinds();
    UsageOut {
        input_tokens: k.uncached_input,
        cache_creation_input_tokens: k.cache_write_5m + k.cache_write_1h,
        cache_read_input_tokens: k.cached_input,
        cache_creation: CacheCreation {
            ephemeral_5m_input_tokens: k.cache_write_5m,
            ephemeral_1h_input_tokens: k.cache_write_1h,
        },
        output_tokens: counts.output,
    }
}

#[derive(serde::Serialize)]
struct UsageOut {
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    cache_creation: CacheCreation,
    output_tokens: u64,
}

#[derive(serde::Serialize)]
struct CacheCreation {
    ephemeral_5m_input_tokens: u64,
    ephemeral_1h_input_tokens: u64,
}

/// A content block of a Message answer, borrowing the chat answer.
enum Block<'a> {
    Thinking(&'a str),
    Text(&'a str),
    ToolUse {
        /// Empty when the upstream gave none: a fresh one is written.
        id: &'a str,
        name: &'a str,
        /// The call's arguments as the model wrote them when they are a JSON object.
        input: &'a str,
    },
}

/// A Message answer written in place (`JsonBuf`: no JSON tree, keys written as they are),
/// its content blocks as `content` yields them (`hint` bytes of text in all), its usage
/// carrying the billed counts and their cost.
fn write_message<'a>(
    model: &str,
    content: impl Iterator<Item = Block<'a>>,
    hint: usize,
    stop_reason: &str,
    counts: TokenCounts,
    charged: &Charged,
) -> Bytes {
    let mut j = super::JsonBuf::new(hint + model.len() + 512);
    j.raw("{\"id\":")
        .id("msg_")
        .raw(",\"type\":\"message\",\"role\":\"assistant\",\"model\":")
        .string(model)
        .raw(",\"content\":[");
    for (i, block) in content.enumerate() {
        if i > 0 {
            j.raw(",");
        }
        match block {
            Block::Thinking(t) => j
                .raw("{\"type\":\"thinking\",\"thinking\":")
                .string(t)
                .raw(",\"signature\":\"\"}"),
            Block::Text(t) => j.raw("{\"type\":\"text\",\"text\":").string(t).raw("}"),
            Block::ToolUse { id, name, input } => j
                .raw("{\"type\":\"tool_use\",\"id\":")
                .given_id(id, "toolu_")
                .raw(",\"name\":")
                .string(name)
                .raw(",\"input\":")
                .raw(input)
                .raw("}"),
        };
    }
    let u = usage(counts);
    j.raw("],\"stop_reason\":")
        .string(stop_reason)
        .raw(",\"stop_sequence\":null,\"usage\":{\"input_tokens\":")
        .number(u.input_tokens)
        .raw(",\"cache_creation_input_tokens\":")
        .number(u.cache_creation_input_tokens)
        .raw(",\"cache_read_input_tokens\":")
        .number(u.cache_read_input_tokens)
        .raw(",\"cache_creation\":{\"ephemeral_5m_input_tokens\":")
        .number(u.cache_creation.ephemeral_5m_input_tokens)
        .raw(",\"ephemeral_1h_input_tokens\":")
        .number(u.cache_creation.ephemeral_1h_input_tokens)
        .raw("},\"output_tokens\":")
        .number(u.output_tokens)
        .raw(",");
    crate::gateway::cost::put_fields(j.bytes_mut(), charged);
    j.raw("}}");
    j.finish()
}

/// A chat completion, read once by the gateway, as a Message, with the counts the
/// request was billed for (`Wire::from_chat` reads one from its bytes). Its blocks are
/// written as they are read off the answer, with no list of them built first.
pub(crate) fn answer(
    answer: super::ChatAnswer<'_>,
    model: &str,
    counts: TokenCounts,
    charged: &Charged,
) -> Option<Bytes> {
    let choice = answer.choice?;
    let m = &choice.message;
    let (thinking, text) = m.reasoning_and_text();
    let hint = thinking.map_or(0, str::len)
        + text.map_or(0, str::len)
        + m.tool_calls
            .iter()
            .map(|c| c.function.arguments.len() + 64)
            .sum::<usize>();
    let calls = m.tool_calls.iter().map(|call| Block::ToolUse {
        id: &call.id,
        name: &call.function.name,
        input: serde_json::from_str::<&RawValue>(&call.function.arguments)
            .ok()
            .filter(|v| v.get().starts_with('{'))
            .map_or("{}", RawValue::get),
    });
    let content = (thinking.map(Block::Thinking).into_iter())
        .chain(text.map(Block::Text))
        .chain(calls);
    Some(write_message(
        model,
        content,
        hint,
        stop_reason(choice.finish_reason.as_deref()),
        counts,
        charged,
    ))
}

/// The content block being streamed.
#[derive(PartialEq, Eq)]
enum Open {
    Thinking,
    Text,
    Tool(u32),
}

/// Chat chunks to Messages stream events (`message_start`, content blocks, `message_delta`,
/// `message_stop`).
pub struct Encoder {
    id: String,
    model: String,
    started: bool,
    /// Index of the next content block.
    next: u32,
    open: Option<Open>,
    finish_reason: Option<String>,
}

impl Encoder {
    pub fn new(model: &str) -> Self {
        Self {
            id: new_id("msg_"),
            model: model.to_owned(),
            started: false,
            next: 0,
            open: None,
            finish_reason: None,
        }
    }

    fn emit(event: &Value, out: &mut Vec<Bytes>) {
        let name = event["type"].as_str().unwrap_or("message");
        out.push(super::named_event(name, event.to_string().as_bytes()));
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        Self::emit(
            &json!({"type": "message_start", "message": {
                "id": self.id, "type": "message", "role": "assistant", "model": self.model,
                "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}),
            out,
        );
        Self::emit(&json!({"type": "ping"}), out);
    }

    fn close(&mut self, out: &mut Vec<Bytes>) {
        if self.open.take().is_some() {
            Self::emit(
                &json!({"type": "content_block_stop", "index": self.next - 1}),
                out,
            );
        }
    }

    fn open(&mut self, kind: Open, block: Value, out: &mut Vec<Bytes>) {
        self.close(out);
        Self::emit(
            &json!({"type": "content_block_start", "index": self.next, "content_block": block}),
            out,
        );
        self.next += 1;
        self.open = Some(kind);
    }

    /// A delta of the open block, written in place (the hot path of a stream).
    fn delta(&self, kind: &str, field: &str, piece: &str, out: &mut Vec<Bytes>) {
        let mut e = super::EventBuf::new("content_block_delta", piece.len() + 96);
        e.raw("{\"type\":\"content_block_delta\",\"index\":")
            .number(u64::from(self.next.saturating_sub(1)))
            .raw(",\"delta\":{\"type\":")
            .string(kind)
            .raw(",")
            .string(field)
            .raw(":")
            .string(piece)
            .raw("}}");
        out.push(e.finish());
    }

    pub fn on_chunk(&mut self, chunk: &Chunk<'_>, out: &mut Vec<Bytes>) {
        self.start(out);
        for choice in chunk.choices.iter().flatten().filter(|c| c.index == 0) {
            if let Some(d) = &choice.delta {
                if let Some(piece) = d.reasoning_content.as_deref().filter(|p| !p.is_empty()) {
                    if self.open != Some(Open::Thinking) {
                        self.open(
                            Open::Thinking,
                            json!({"type": "thinking", "thinking": "", "signature": ""}),
                            out,
                        );
                    }
                    self.delta("thinking_delta", "thinking", piece, out);
                }
                if let Some(piece) = d.content.as_deref().filter(|p| !p.is_empty()) {
                    if self.open != Some(Open::Text) {
                        self.open(Open::Text, json!({"type": "text", "text": ""}), out);
                    }
                    self.delta("text_delta", "text", piece, out);
                }
                for call in d.tool_calls.iter().flatten() {
                    let index = call.index.unwrap_or(0);
                    if self.open != Some(Open::Tool(index)) || call.id.is_some() {
                        let id = call
                            .id
                            .as_deref()
                            .map_or_else(|| new_id("toolu_"), str::to_owned);
                        let name = call
                            .function
                            .as_ref()
                            .and_then(|f| f.name.as_deref())
                            .unwrap_or_default();
                        self.open(
                            Open::Tool(index),
                            json!({"type": "tool_use", "id": id, "name": name, "input": {}}),
                            out,
                        );
                    }
                    if let Some(piece) = call
                        .function
                        .as_ref()
                        .and_then(|f| f.arguments.as_deref())
                        .filter(|p| !p.is_empty())
                    {
                        self.delta("input_json_delta", "partial_json", piece, out);
                    }
                }
            }
            if let Some(reason) = &choice.finish_reason {
                self.finish_reason = Some(reason.to_string());
            }
        }
    }

    pub fn finish(&mut self, counts: TokenCounts, charged: &Charged, out: &mut Vec<Bytes>) {
        self.start(out);
        self.close(out);
        let delta = json!({"type": "message_delta",
                "delta": {"stop_reason": stop_reason(self.finish_reason.as_deref()), "stop_sequence": null},
                "usage": usage(counts)})
        .to_string();
        let delta = crate::gateway::cost::annotate(delta.as_bytes(), &["usage"], charged)
            .unwrap_or_else(|| Bytes::from(delta));
        out.push(super::named_event("message_delta", &delta));
        Self::emit(&json!({"type": "message_stop"}), out);
    }

    pub fn fail(&mut self, status: u16, message: &str, out: &mut Vec<Bytes>) {
        self.start(out);
        Self::emit(&error_body(status, message), out);
    }
}

/// Anthropic's error `type` for an HTTP status, so its SDKs raise their own classes.
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 408 | 422 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        504 => "timeout_error",
        _ => "api_error",
    }
}

/// Anthropic's error body.
pub fn error_body(status: u16, message: &str) -> Value {
    json!({"type": "error", "error": {"type": error_type(status), "message": message}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: Value) -> Value {
        serde_json::from_slice(to_chat(body.to_string().as_bytes()).unwrap().as_bytes()).unwrap()
    }

    #[test]
    fn requests_translate_system_blocks_tools_results_and_thinking() {
        let got = chat(json!({
            "model": "claude-x", "max_tokens": 100, "metadata": {"user_id": "alice"},
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Look"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "sig"},
                    {"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "look", "input": {"q": 1}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "a cat"}]},
                    {"type": "text", "text": "thanks"}]}
            ],
            "tools": [{"name": "look", "description": "d", "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "stop_sequences": ["END"], "temperature": 0.1, "top_k": 5,
            "thinking": {"type": "enabled", "budget_tokens": 8000}, "stream": true
        }));
        assert_eq!(
            got,
            json!({
                "model": "claude-x",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [{"type": "text", "text": "Look"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}]},
                    {"role": "assistant", "content": "Checking.", "tool_calls": [
                        {"id": "toolu_1", "type": "function", "function": {"name": "look", "arguments": "{\"q\":1}"}}]},
                    {"role": "tool", "tool_call_id": "toolu_1", "content": "a cat"},
                    {"role": "user", "content": "thanks"}
                ],
                "max_tokens": 100, "stop": ["END"], "temperature": 0.1, "top_k": 5,
                "tools": [{"type": "function", "function": {"name": "look", "description": "d", "parameters": {"type": "object"}}}],
                "tool_choice": "required", "parallel_tool_calls": false,
                "reasoning_effort": "medium", "stream": true
            })
        );
    }

    #[test]
    fn a_body_read_in_one_pass_or_split_into_fields_translates_the_same() {
        let known = json!({
            "model": "m", "max_tokens": 9, "metadata": {"user_id": "alice"},
            "system": "Be brief.", "thinking": {"type": "enabled", "budget_tokens": 5000},
            "messages": [{"role": "user", "content": "hi"}], "stream": null
        });
        assert!(serde_json::from_str::<Top<'_>>(&known.to_string()).is_ok());
        // A field the one pass does not know sends the body through `fields`: same result.
        let mut unknown = known.clone();
        unknown["service_tier"] = json!("auto");
        assert!(serde_json::from_str::<Top<'_>>(&unknown.to_string()).is_err());
        assert_eq!(chat(known.clone()), chat(unknown));
        assert_eq!(
            chat(known),
            json!({"model": "m", "messages": [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hi"}], "max_tokens": 9, "reasoning_effort": "medium"})
        );
        // A key given twice is refused, as on every route, whichever of them is known.
        for dup in [
            r#"{"model":"m","max_tokens":9,"messages":[],"model":"n"}"#,
            r#"{"model":"m","max_tokens":9,"messages":[],"x":1,"x":2}"#,
            r#"{"model":"m","max_tokens":9,"messages":null,"messages":[]}"#,
        ] {
            let err = to_chat(dup.as_bytes()).unwrap_err();
            assert!(
                err.message.contains("more than once"),
                "{dup}: {}",
                err.message
            );
        }
        // `null` is absent, in either pass.
        let err = to_chat(br#"{"model":"m","max_tokens":null,"messages":[]}"#).unwrap_err();
        assert_eq!(err.message, "max_tokens: Field required");
        let err = to_chat(br#"{"model":"m","max_tokens":1,"messages":[],"x":0,"model":null}"#)
            .unwrap_err();
        assert!(err.message.contains("more than once"));
        let err = to_chat(br#"{"model":null,"max_tokens":1,"messages":[],"x":0}"#).unwrap_err();
        assert_eq!(err.message, "model: Field required");
    }

    #[test]
    fn system_messages_mid_conversation_stay_system_messages() {
        let got = chat(json!({"model": "m", "max_tokens": 5, "messages": [
            {"role": "user", "content": "hi"},
            {"role": "system", "content": [{"type": "text", "text": "# Environment"}]}]}));
        assert_eq!(
            got["messages"][1],
            json!({"role": "system", "content": "# Environment"})
        );
    }

    #[test]
    fn bad_requests_name_the_parameter_not_the_content() {
        for (body, param) in [
            (json!({"model": "m", "messages": []}), "max_tokens"),
            (json!({"max_tokens": 1, "messages": []}), "model"),
            (
                json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "document", "source": "SECRET"}]}]}),
                "messages",
            ),
            (
                json!({"model": "m", "max_tokens": 1, "messages": [], "tools": [{"type": "web_search_20250305", "name": "w"}]}),
                "tools",
            ),
            (
                json!({"model": "m", "max_tokens": 1, "messages": [], "thinking": {"type": "sometimes"}}),
                "thinking",
            ),
        ] {
            let err = to_chat(body.to_string().as_bytes()).unwrap_err();
            assert_eq!(err.param, Some(param), "{body}");
            assert!(!err.message.contains("SECRET"));
        }
    }

    #[test]
    fn a_message_that_is_no_object_is_named_by_its_place() {
        for (messages, message) in [
            (json!("SECRET"), "`messages` must be an array of messages"),
            (
                json!({"role": "SECRET"}),
                "`messages` must be an array of messages",
            ),
            (
                json!([{"role": "user", "content": "a"}, "SECRET"]),
                "messages.1: must be an object",
            ),
            (json!([7]), "messages.0: must be an object"),
            (
                json!([{"role": "user", "content": "a"}, {"role": ["SECRET"]}]),
                "messages.1: role: must be `user`, `assistant` or `system`",
            ),
        ] {
            let body = json!({"model": "m", "max_tokens": 1, "messages": messages});
            let err = to_chat(body.to_string().as_bytes()).unwrap_err();
            assert_eq!(err.param, Some("messages"), "{body}");
            assert_eq!(err.message, message, "{body}");
        }
    }

    #[test]
    fn system_and_tool_results_take_a_string_or_text_blocks_only() {
        let user = |content: Value| {
            json!({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t1", "content": content}]}]})
        };
        for (body, param, message) in [
            (
                json!({"model": "m", "max_tokens": 1, "messages": [], "system": 5}),
                "system",
                "system: must be a string or an array of text blocks",
            ),
            (
                json!({"model": "m", "max_tokens": 1, "messages": [],
                       "system": [{"type": "text", "text": "a"}, {"type": "image"}]}),
                "system",
                "system.1: only text blocks may be given",
            ),
            (
                user(json!(5)),
                "messages",
                "messages.0.content.0: content: must be a string or blocks",
            ),
            (
                user(json!([{"type": "image"}])),
                "messages",
                "messages.0.content.0: a tool result may hold only text here",
            ),
        ] {
            let err = to_chat(body.to_string().as_bytes()).unwrap_err();
            assert_eq!(
                (err.param, err.message.as_str()),
                (Some(param), message),
                "{body}"
            );
        }
        // Blocks are joined by newlines, whichever holds them.
        let body = json!({"model": "m", "max_tokens": 1,
            "system": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}]}]}]});
        let chat: Value =
            serde_json::from_slice(to_chat(body.to_string().as_bytes()).unwrap().as_bytes())
                .unwrap();
        assert_eq!(chat["messages"][0]["content"], "a\nb");
        assert_eq!(chat["messages"][1]["content"], "c\nd");
    }

    #[test]
    fn native_bodies_keep_cache_control_and_drop_metadata() {
        let body = json!({"model": "claude-x", "max_tokens": 5, "metadata": {"user_id": "alice"},
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}],
            "unknown": 1});
        let text = body.to_string();
        let out: Value =
            serde_json::from_slice(&native_body(&fields(text.as_bytes()).unwrap(), "up").unwrap())
                .unwrap();
        assert_eq!(
            out,
            json!({"model": "up", "max_tokens": 5,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}]}]})
        );
    }

    #[test]
    fn answers_become_messages_with_tool_use_and_billed_usage() {
        let chat = json!({"choices": [{"finish_reason": "tool_calls", "message": {"content": "Checking \"a\"\n\u{1}é.",
            "reasoning_content": "think", "tool_calls": [{"id": "c1", "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}]});
        let counts = TokenCounts {
            input: 10,
            cached_input: 4,
            output: 3,
            estimated: false,
            ..TokenCounts::default()
        };
        let charged = Charged {
            cost: crate::billing::Money::from_nanos(42),
            estimated: true,
        };
        let out: Value = serde_json::from_slice(
            &super::super::Wire::Messages
                .from_chat(chat.to_string().as_bytes(), "m", counts, &charged)
                .unwrap(),
        )
        .unwrap();
        // The whole Message, written in place: every field, text escaped, input as written.
        let id = out["id"].as_str().unwrap();
        assert!(id.starts_with("msg_"), "{id}");
        let mut rest = out.clone();
        rest.as_object_mut().unwrap().remove("id");
        rest.as_object_mut().unwrap().remove("usage");
        assert_eq!(
            rest,
            json!({"type": "message", "role": "assistant", "model": "m",
                "content": [{"type": "thinking", "thinking": "think", "signature": ""},
                            {"type": "text", "text": "Checking \"a\"\n\u{1}é."},
                            {"type": "tool_use", "id": "c1", "name": "f", "input": {"a": 1}}],
                "stop_reason": "tool_use", "stop_sequence": null})
        );
        assert_eq!(
            out["usage"],
            json!({"input_tokens": 6, "output_tokens": 3,
            "cache_read_input_tokens": 4, "cache_creation_input_tokens": 0,
            "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
            "cost": 0.000000042, "cost_usd": "0.000000042", "cost_estimated": true})
        );
    }

    #[test]
    fn chunks_stream_as_message_events() {
        let mut e = Encoder::new("m");
        let mut out = Vec::new();
        for chunk in [
            json!({"choices": [{"index": 0, "delta": {"reasoning_content": "hm"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": "Hi"}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}]}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}, "finish_reason": "tool_calls"}]}),
        ] {
            let bytes = chunk.to_string();
            e.on_chunk(&serde_json::from_str(&bytes).unwrap(), &mut out);
        }
        e.finish(
            TokenCounts {
                input: 5,
                cached_input: 0,
                output: 4,
                estimated: false,
                ..TokenCounts::default()
            },
            &Charged::default(),
            &mut out,
        );
        let names: Vec<String> = out
            .iter()
            .map(|b| {
                std::str::from_utf8(b)
                    .unwrap()
                    .lines()
                    .next()
                    .unwrap()
                    .trim_start_matches("event: ")
                    .to_owned()
            })
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        let last_delta = std::str::from_utf8(&out[11]).unwrap();
        assert!(
            last_delta.contains("\"stop_reason\":\"tool_use\"")
                && last_delta.contains("\"output_tokens\":4")
        );
    }
}
