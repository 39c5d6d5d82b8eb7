//! The OpenAI Responses API, stateless: requests to chat, chat answers and chunks back.
//!
//! Nothing is stored: `store` is never honoured as storage, and what needs stored state
//! (`previous_response_id`, `conversation`, `prompt`, `background`, item references) is
//! a 400 naming the parameter. Only function tools translate; hosted tools are a 400
//! naming `tools` unless the route's provider serves the Responses API natively, which
//! then gets the client's body, allow-listed, with `store: false` (see `native_body`).

use std::borrow::Cow;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value, json};

use super::{
    ChatCall, ChatContent, ChatImage, ChatMsg, ChatPart, ChatRequest, Chunk, joined, new_id, now_s,
    number, parse, string,
};
use crate::gateway::BodyError;
use crate::gateway::body::{Field, field, fields};
use crate::usage::{Charged, TokenCounts};

/// Parameters that need state kept between requests, which InstaGen never keeps.
const STATEFUL: &[(&str, &str)] = &[
    (
        "previous_response_id",
        "InstaGen stores no responses: send the whole conversation as `input` instead of `previous_response_id`",
    ),
    (
        "conversation",
        "InstaGen stores no conversations: send the whole conversation as `input`",
    ),
    (
        "prompt",
        "InstaGen stores no prompt templates: send `instructions` and `input`",
    ),
];

/// Refuses what needs server-side state; shared by the translated and the native paths.
fn refuse_stateful(f: &[Field<'_>]) -> Result<(), BodyError> {
    for (name, why) in STATEFUL {
        if field(f, name).is_some() {
            return Err(BodyError::field(name, *why));
        }
    }
    if field(f, "background").is_some_and(|v| v.get() == "true") {
        return Err(BodyError::field(
            "background",
            "background responses need stored state, which InstaGen never keeps",
        ));
    }
    Ok(())
}

/// A Responses request as a chat completion request.
pub fn to_chat(body: &[u8]) -> Result<super::ChatBody, BodyError> {
    let f = fields(body)?;
    refuse_stateful(&f)?;
    let model = match field(&f, "model") {
        Some(raw) => match string(raw) {
            Some(m) if !m.is_empty() => m,
            _ => {
                return Err(BodyError::field(
                    "model",
                    "`model` must be a non-empty string",
                ));
            }
        },
        None => {
            return Err(BodyError::field(
                "model",
                "you must provide a `model` parameter",
            ));
        }
    };
    let mut out = ChatRequest::new(model);
    if let Some(raw) = field(&f, "instructions") {
        let text = string(raw)
            .ok_or_else(|| BodyError::field("instructions", "`instructions` must be a string"))?;
        if !text.is_empty() {
            out.messages
                .push(ChatMsg::new("system", ChatContent::Text(text)));
        }
    }
    match field(&f, "input") {
        Some(raw) => match string(raw) {
            Some(s) => out
                .messages
                .push(ChatMsg::new("user", ChatContent::Text(s))),
            None => {
                let items: Vec<&RawValue> = parse(raw, "input", "a string or an array of items")?;
                out.messages.reserve(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    input_item(item, i, &mut out.messages)?;
                }
            }
        },
        None => {
            return Err(BodyError::field(
                "input",
                "you must provide an `input` parameter",
            ));
        }
    }
    if let Some(raw) = field(&f, "tools") {
        let list: Vec<InTool<'_>> = parse(raw, "tools", "an array of tools")?;
        out.tools.reserve(list.len());
        for (i, tool) in list.into_iter().enumerate() {
            // A namespace groups function tools (Codex's sub-agent tools): its members
            // are offered as they are.
            if tool.kind.as_deref() == Some("namespace") {
                for member in tool.tools.into_iter().flatten() {
                    out.tools.push(tool_to_chat(member, i, true)?);
                }
                continue;
            }
            out.tools.push(tool_to_chat(tool, i, false)?);
        }
    }
    if let Some(raw) = field(&f, "tool_choice") {
        let choice = match parse::<Value>(raw, "tool_choice", "a string or an object")? {
            Value::String(s) if matches!(s.as_str(), "auto" | "none" | "required") => {
                Value::String(s)
            }
            Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
                match o.get("name").and_then(Value::as_str) {
                    Some(name) => json!({"type": "function", "function": {"name": name}}),
                    None => {
                        return Err(BodyError::field(
                            "tool_choice",
                            "`tool_choice.name` is required",
                        ));
                    }
                }
            }
            _ => {
                return Err(BodyError::field(
                    "tool_choice",
                    "`tool_choice` must be `auto`, `none`, `required` or a function",
                ));
            }
        };
        out.tool_choice = Some(choice);
    }
    if let Some(raw) = field(&f, "parallel_tool_calls") {
        out.parallel_tool_calls = Some(parse(raw, "parallel_tool_calls", "a boolean")?);
    }
    if let Some(raw) = field(&f, "text") {
        #[derive(Deserialize)]
        struct Text {
            #[serde(default)]
            format: Option<Map<String, Value>>,
        }
        let text: Text = parse(raw, "text", "an object")?;
        if let Some(mut format) = text.format {
            match format.get("type").and_then(Value::as_str) {
                Some("text") | None => {}
                Some("json_object") => {
                    out.response_format = Some(json!({"type": "json_object"}));
                }
                Some("json_schema") => {
                    let mut schema = Map::new();
                    for key in ["name", "schema", "strict", "description"] {
                        if let Some(v) = format.remove(key) {
                            schema.insert(key.into(), v);
                        }
                    }
                    if !schema.contains_key("name") || !schema.contains_key("schema") {
                        return Err(BodyError::field(
                            "text",
                            "`text.format` of type `json_schema` needs `name` and `schema`",
                        ));
                    }
                    out.response_format =
                        Some(json!({"type": "json_schema", "json_schema": schema}));
                }
                Some(_) => {
                    return Err(BodyError::field(
                        "text",
                        "`text.format.type` must be `text`, `json_object` or `json_schema`",
                    ));
                }
            }
        }
    }
    if let Some(raw) = field(&f, "max_output_tokens") {
        out.max_tokens = Some(parse(raw, "max_output_tokens", "a positive integer")?);
    }
    if let Some(raw) = field(&f, "temperature") {
        out.temperature = Some(number(raw, "temperature")?);
    }
    if let Some(raw) = field(&f, "top_p") {
        out.top_p = Some(number(raw, "top_p")?);
    }
    if let Some(raw) = field(&f, "reasoning") {
        #[derive(Deserialize)]
        struct Reasoning {
            #[serde(default)]
            effort: Option<String>,
        }
        let r: Reasoning = parse(raw, "reasoning", "an object")?;
        match r.effort.as_deref() {
            None | Some("none") => {}
            Some("minimal" | "low") => out.reasoning_effort = Some("low"),
            Some("medium") => out.reasoning_effort = Some("medium"),
            Some("high") => out.reasoning_effort = Some("high"),
            Some(_) => {
                return Err(BodyError::field(
                    "reasoning",
                    "`reasoning.effort` must be `none`, `minimal`, `low`, `medium` or `high`",
                ));
            }
        }
    }
    if let Some(raw) = field(&f, "stream") {
        out.stream = Some(parse(raw, "stream", "a boolean")?);
    }
    Ok(out.body())
}

/// A Responses tool as the client sent it, borrowed (its schema is never parsed).
#[derive(Deserialize)]
struct InTool<'a> {
    #[serde(rename = "type", borrow, deserialize_with = "super::borrowed", default)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "super::borrowed", default)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow, deserialize_with = "super::borrowed", default)]
    description: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    parameters: Option<&'a RawValue>,
    #[serde(default)]
    strict: Option<bool>,
    /// A namespace's member tools.
    #[serde(borrow, default)]
    tools: Option<Vec<InTool<'a>>>,
}

fn tool_to_chat(
    tool: InTool<'_>,
    i: usize,
    member: bool,
) -> Result<super::ChatTool<'_>, BodyError> {
    match tool.kind.as_deref() {
        Some("function") => {}
        None if member => {}
        Some(kind) => {
            let kind = &kind[..kind.floor_char_boundary(40)];
            return Err(BodyError::field(
                "tools",
                format!(
                    "tools[{i}]: the hosted tool `{kind}` is not available on this model; only `function` tools are"
                ),
            ));
        }
        None => {
            return Err(BodyError::field(
                "tools",
                format!("tools[{i}].type is required"),
            ));
        }
    }
    let Some(name) = tool.name else {
        return Err(BodyError::field(
            "tools",
            format!("tools[{i}].name is required"),
        ));
    };
    Ok(super::ChatTool::new(
        name,
        tool.description,
        tool.parameters,
        tool.strict,
    ))
}

/// An `input` item or content part, each field kept raw until it is read.
#[derive(Deserialize)]
struct InItem<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    role: Option<&'a RawValue>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    call_id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    arguments: Option<&'a RawValue>,
    #[serde(borrow, default)]
    output: Option<&'a RawValue>,
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
    #[serde(borrow, default)]
    refusal: Option<&'a RawValue>,
    #[serde(borrow, default)]
    image_url: Option<&'a RawValue>,
    #[serde(borrow, default)]
    detail: Option<&'a RawValue>,
}

/// One `input` item as chat messages (appended to `messages`).
fn input_item<'a>(
    item: &'a RawValue,
    i: usize,
    messages: &mut Vec<ChatMsg<'a>>,
) -> Result<(), BodyError> {
    let bad = |what: &str| BodyError::field("input", format!("input[{i}]: {what}"));
    let item: InItem<'a> =
        serde_json::from_str(item.get()).map_err(|_| bad("an item must be an object"))?;
    let kind = match item.kind.and_then(string) {
        Some(k) => k,
        None if item.role.is_some() => Cow::Borrowed("message"),
        None => return Err(bad("`type` is required")),
    };
    match &*kind {
        "message" => {
            let role = match item.role.and_then(string).as_deref() {
                Some("system" | "developer") => "system",
                Some("user") => "user",
                Some("assistant") => "assistant",
                _ => return Err(bad("`role` must be user, assistant, system or developer")),
            };
            let not_content = || bad("`content` must be a string or an array of parts");
            let raw = item.content.ok_or_else(not_content)?;
            let content = match string(raw) {
                Some(s) => ChatContent::Text(s),
                None => {
                    let parts: Vec<&'a RawValue> =
                        serde_json::from_str(raw.get()).map_err(|_| not_content())?;
                    let mut out = Vec::with_capacity(parts.len());
                    for (j, part) in parts.into_iter().enumerate() {
                        out.push(content_part(part, i, j)?);
                    }
                    ChatContent::from_parts(out)
                }
            };
            if role != "user" && !matches!(content, ChatContent::Text(_)) {
                return Err(bad("only a user message may hold images"));
            }
            messages.push(ChatMsg::new(role, content));
        }
        "function_call" => {
            let (Some(call_id), Some(name)) =
                (item.call_id.and_then(string), item.name.and_then(string))
            else {
                return Err(bad("a `function_call` needs `call_id` and `name`"));
            };
            let arguments = item
                .arguments
                .and_then(string)
                .unwrap_or(Cow::Borrowed("{}"));
            let call = ChatCall::new(call_id, name, arguments);
            // Calls of one turn follow their assistant text: they join that message.
            match messages.last_mut() {
                Some(last) if last.role == "assistant" => last.tool_calls.push(call),
                _ => {
                    let mut msg = ChatMsg::new("assistant", ChatContent::None);
                    msg.tool_calls.push(call);
                    messages.push(msg);
                }
            }
        }
        "function_call_output" => {
            let Some(call_id) = item.call_id.and_then(string) else {
                return Err(bad("a `function_call_output` needs `call_id`"));
            };
            let not_output = || bad("`output` must be a string or an array of parts");
            let raw = item.output.ok_or_else(not_output)?;
            let output = match string(raw) {
                Some(s) => s,
                None => {
                    let parts: Vec<&'a RawValue> =
                        serde_json::from_str(raw.get()).map_err(|_| not_output())?;
                    let mut texts = Vec::with_capacity(parts.len());
                    for (j, part) in parts.into_iter().enumerate() {
                        match content_part(part, i, j)? {
                            ChatPart::Text { text } => texts.push(text),
                            ChatPart::ImageUrl { .. } => {
                                return Err(bad("a function output may hold only text"));
                            }
                        }
                    }
                    joined(texts)
                }
            };
            let mut msg = ChatMsg::new("tool", ChatContent::Text(output));
            msg.tool_call_id = Some(call_id);
            messages.push(msg);
        }
        // Reasoning a client sends back is for the model that wrote it; a translated
        // route's engine does not read it.
        "reasoning" => {}
        "item_reference" => {
            return Err(bad(
                "InstaGen stores no items: send the item itself, not a reference",
            ));
        }
        other => {
            let other = &other[..other.floor_char_boundary(40)];
            return Err(bad(&format!(
                "items of type `{other}` are not available on this model"
            )));
        }
    }
    Ok(())
}

fn content_part(part: &RawValue, i: usize, j: usize) -> Result<ChatPart<'_>, BodyError> {
    let bad = |what: &str| BodyError::field("input", format!("input[{i}].content[{j}]: {what}"));
    let part: InItem<'_> =
        serde_json::from_str(part.get()).map_err(|_| bad("a content part must be an object"))?;
    match part.kind.and_then(string).as_deref() {
        Some("input_text" | "output_text" | "text") => match part.text.and_then(string) {
            Some(text) => Ok(ChatPart::Text { text }),
            None => Err(bad("`text` must be a string")),
        },
        Some("refusal") => match part.refusal.and_then(string) {
            Some(text) => Ok(ChatPart::Text { text }),
            None => Err(bad("`refusal` must be a string")),
        },
        Some("input_image") => match part.image_url.and_then(string) {
            Some(url) => Ok(ChatPart::ImageUrl {
                image_url: ChatImage {
                    url,
                    detail: part.detail.and_then(string),
                },
            }),
            None => Err(bad(
                "an image must be given as `image_url` (InstaGen stores no files)",
            )),
        },
        Some("input_file") => Err(bad("files are not available on this model; send the text")),
        _ => Err(bad(
            "parts must be `input_text`, `output_text` or `input_image`",
        )),
    }
}

/// A request for a provider that serves the Responses API itself: the client's fields
/// that a response needs (no `metadata`, `user`, `safety_identifier`, `prompt_cache_key`
/// or anything unknown), the upstream's model name, and `store: false`, always.
pub fn native_body(f: &[Field<'_>], upstream_model: &str) -> Result<Bytes, BodyError> {
    const ALLOWED: &[&str] = &[
        "input",
        "instructions",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "max_tool_calls",
        "text",
        "max_output_tokens",
        "temperature",
        "top_p",
        "top_logprobs",
        "reasoning",
        "include",
        "stream",
        "truncation",
        "service_tier",
    ];
    refuse_stateful(f)?;
    super::allow_listed(f, upstream_model, ",\"store\":false", ALLOWED)
}

/// The `usage` object of a Responses answer from billed counts.
fn usage(counts: TokenCounts) -> Value {
    json!({
        "input_tokens": counts.input,
        "input_tokens_details": {"cached_tokens": counts.cached_input},
        "output_tokens": counts.output,
        "output_tokens_details": {"reasoning_tokens": counts.kinds().reasoning},
        "total_tokens": counts.input.saturating_add(counts.output),
    })
}

fn response_object(id: &str, model: &str, created_at: u64, status: &str, output: Value) -> Value {
    json!({
        "id": id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": null,
        "incomplete_details": null,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "tool_choice": "auto",
        "tools": [],
        "store": false,
        "usage": null,
    })
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"type": "reasoning", "id": id, "summary": [],
           "content": [{"type": "reasoning_text", "text": text}]})
}

fn call_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name,
           "arguments": arguments, "status": status})
}

/// Marks a response cut by its token limit.
fn set_status(response: &mut Value, finish_reason: Option<&str>) {
    if finish_reason == Some("length") {
        response["status"] = "incomplete".into();
        response["incomplete_details"] = json!({"reason": "max_output_tokens"});
    }
}

/// An output item of a Responses answer, borrowing the chat answer.
enum Item<'a> {
    Reasoning(&'a str),
    Message(&'a str),
    FunctionCall {
        /// Empty when the upstream gave none: a fresh one is written.
        call_id: &'a str,
        name: &'a str,
        arguments: &'a str,
    },
}

/// A chat completion, read once by the gateway, as a Responses object, with the counts the
/// request was billed for (`Wire::from_chat` reads one from its bytes). Its items are
/// written as they are read off the answer, with no list of them built first.
pub(crate) fn answer(
    answer: super::ChatAnswer<'_>,
    model: &str,
    counts: TokenCounts,
    charged: &Charged,
) -> Option<Bytes> {
    let choice = answer.choice?;
    let m = &choice.message;
    let (reasoning, text) = m.reasoning_and_text();
    let hint = reasoning.map_or(0, |t| t.len() + 128)
        + text.map_or(0, |t| t.len() + 128)
        + m.tool_calls
            .iter()
            .map(|c| c.function.arguments.len() + 160)
            .sum::<usize>();
    let calls = m.tool_calls.iter().map(|call| Item::FunctionCall {
        call_id: &call.id,
        name: &call.function.name,
        arguments: &call.function.arguments,
    });
    let output = (reasoning.map(Item::Reasoning).into_iter())
        .chain(text.map(Item::Message))
        .chain(calls);
    let incomplete = choice.finish_reason.as_deref() == Some("length");
    Some(write_response(
        model, output, hint, incomplete, counts, charged,
    ))
}

/// A Responses object written in place (`JsonBuf`: no JSON tree, keys written as they
/// are), its output items as `output` yields them (`hint` bytes in all), its usage carrying
/// the billed counts and their cost.
fn write_response<'a>(
    model: &str,
    output: impl Iterator<Item = Item<'a>>,
    hint: usize,
    incomplete: bool,
    counts: TokenCounts,
    charged: &Charged,
) -> Bytes {
    let mut j = super::JsonBuf::new(hint + model.len() + 512);
    j.raw("{\"id\":")
        .id("resp_")
        .raw(",\"object\":\"response\",\"created_at\":")
        .number(now_s());
    if incomplete {
        j.raw(",\"status\":\"incomplete\",\"error\":null,\"incomplete_details\":{\"reason\":\"max_output_tokens\"}");
    } else {
        j.raw(",\"status\":\"completed\",\"error\":null,\"incomplete_details\":null");
    }
    j.raw(",\"model\":").string(model).raw(",\"output\":[");
    for (i, item) in output.enumerate() {
        if i > 0 {
            j.raw(",");
        }
        match item {
            Item::Reasoning(t) => j
                .raw("{\"type\":\"reasoning\",\"id\":")
                .id("rs_")
                .raw(",\"summary\":[],\"content\":[{\"type\":\"reasoning_text\",\"text\":")
                .string(t)
                .raw("}]}"),
            Item::Message(t) => j
                .raw("{\"type\":\"message\",\"id\":")
                .id("msg_")
                .raw(",\"status\":\"completed\",\"role\":\"assistant\",\"content\":[{\"type\":\"output_text\",\"text\":")
                .string(t)
                .raw(",\"annotations\":[]}]}"),
            Item::FunctionCall {
                call_id,
                name,
                arguments,
            } => j
                .raw("{\"type\":\"function_call\",\"id\":")
                .id("fc_")
                .raw(",\"call_id\":")
                .given_id(call_id, "call_")
                .raw(",\"name\":")
                .string(name)
                .raw(",\"arguments\":")
                .string(arguments)
                .raw(",\"status\":\"completed\"}"),
        };
    }
    j.raw("],\"parallel_tool_calls\":true,\"tool_choice\":\"auto\",\"tools\":[],\"store\":false,\"usage\":{\"input_tokens\":")
        .number(counts.input)
        .raw(",\"input_tokens_details\":{\"cached_tokens\":")
        .number(counts.cached_input)
        .raw("},\"output_tokens\":")
        .number(counts.output)
        .raw(",\"output_tokens_details\":{\"reasoning_tokens\":")
        .number(counts.kinds().reasoning)
        .raw("},\"total_tokens\":")
        .number(counts.input.saturating_add(counts.output))
        .raw(",");
    crate::gateway::cost::put_fields(j.bytes_mut(), charged);
    j.raw("}}");
    j.finish()
}

/// The output item being streamed.
enum Open {
    Reasoning {
        id: String,
        text: String,
    },
    Message {
        id: String,
        text: String,
    },
    Call {
        index: u32,
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// Chat chunks to Responses stream events, each with its `sequence_number`.
pub struct Encoder {
    id: String,
    model: String,
    created_at: u64,
    seq: u64,
    started: bool,
    /// Items already closed, for the final response object.
    done: Vec<Value>,
    open: Option<Open>,
    finish_reason: Option<String>,
}

impl Encoder {
    pub fn new(model: &str) -> Self {
        Self {
            id: new_id("resp_"),
            model: model.to_owned(),
            created_at: now_s(),
            seq: 0,
            started: false,
            done: Vec::new(),
            open: None,
            finish_reason: None,
        }
    }

    fn emit(&mut self, mut event: Value, out: &mut Vec<Bytes>) {
        event["sequence_number"] = self.seq.into();
        self.seq += 1;
        let name = event["type"].as_str().unwrap_or("message").to_owned();
        out.push(super::named_event(&name, event.to_string().as_bytes()));
    }

    fn response(&self, status: &str) -> Value {
        response_object(
            &self.id,
            &self.model,
            self.created_at,
            status,
            Value::Array(self.done.clone()),
        )
    }

    fn start(&mut self, out: &mut Vec<Bytes>) {
        if self.started {
            return;
        }
        self.started = true;
        let response = self.response("in_progress");
        self.emit(
            json!({"type": "response.created", "response": response}),
            out,
        );
        let response = self.response("in_progress");
        self.emit(
            json!({"type": "response.in_progress", "response": response}),
            out,
        );
    }

    fn output_index(&self) -> usize {
        self.done.len()
    }

    /// Closes the open item: its `.done` events, and it joins the finished output.
    fn close(&mut self, out: &mut Vec<Bytes>) {
        let Some(open) = self.open.take() else { return };
        let index = self.output_index();
        let item = match open {
            Open::Reasoning { id, text } => {
                self.emit(
                    json!({"type": "response.reasoning_text.done", "item_id": id,
                                 "output_index": index, "content_index": 0, "text": text}),
                    out,
                );
                reasoning_item(&id, &text)
            }
            Open::Message { id, text } => {
                self.emit(
                    json!({"type": "response.output_text.done", "item_id": id,
                                 "output_index": index, "content_index": 0, "text": text,
                                 "logprobs": []}),
                    out,
                );
                self.emit(
                    json!({"type": "response.content_part.done", "item_id": id,
                                 "output_index": index, "content_index": 0,
                                 "part": {"type": "output_text", "text": text, "annotations": []}}),
                    out,
                );
                message_item(&id, &text, "completed")
            }
            Open::Call {
                id,
                call_id,
                name,
                arguments,
                ..
            } => {
                self.emit(
                    json!({"type": "response.function_call_arguments.done", "item_id": id,
                                 "output_index": index, "arguments": arguments}),
                    out,
                );
                call_item(&id, &call_id, &name, &arguments, "completed")
            }
        };
        self.emit(
            json!({"type": "response.output_item.done", "output_index": index, "item": item}),
            out,
        );
        self.done.push(item);
    }

    fn open_reasoning(&mut self, out: &mut Vec<Bytes>) {
        if !matches!(self.open, Some(Open::Reasoning { .. })) {
            self.close(out);
            let id = new_id("rs_");
            let index = self.output_index();
            self.emit(
                json!({"type": "response.output_item.added", "output_index": index,
                             "item": {"type": "reasoning", "id": id, "summary": []}}),
                out,
            );
            self.open = Some(Open::Reasoning {
                id,
                text: String::new(),
            });
        }
    }

    pub fn on_chunk(&mut self, chunk: &Chunk<'_>, out: &mut Vec<Bytes>) {
        self.start(out);
        for choice in chunk.choices.iter().flatten().filter(|c| c.index == 0) {
            if let Some(d) = &choice.delta {
                if let Some(piece) = d.reasoning_content.as_deref().filter(|p| !p.is_empty()) {
                    self.open_reasoning(out);
                    if let Some(Open::Reasoning { text, .. }) = &mut self.open {
                        text.push_str(piece);
                    }
                    self.delta_event("response.reasoning_text.delta", piece, true, out);
                }
                if let Some(piece) = d.content.as_deref().filter(|p| !p.is_empty()) {
                    if !matches!(self.open, Some(Open::Message { .. })) {
                        self.close(out);
                        let id = new_id("msg_");
                        let index = self.output_index();
                        self.emit(json!({"type": "response.output_item.added", "output_index": index,
                                         "item": {"type": "message", "id": id, "status": "in_progress",
                                                  "role": "assistant", "content": []}}), out);
                        self.emit(json!({"type": "response.content_part.added", "item_id": id,
                                         "output_index": index, "content_index": 0,
                                         "part": {"type": "output_text", "text": "", "annotations": []}}), out);
                        self.open = Some(Open::Message {
                            id,
                            text: String::new(),
                        });
                    }
                    if let Some(Open::Message { text, .. }) = &mut self.open {
                        text.push_str(piece);
                    }
                    self.delta_event("response.output_text.delta", piece, true, out);
                }
                for call in d.tool_calls.iter().flatten() {
                    let index = call.index.unwrap_or(0);
                    let continues = matches!(&self.open, Some(Open::Call { index: i, .. }) if *i == index)
                        && call.id.is_none();
                    if !continues {
                        self.close(out);
                        let id = new_id("fc_");
                        let call_id = call
                            .id
                            .as_deref()
                            .map_or_else(|| new_id("call_"), str::to_owned);
                        let name = call
                            .function
                            .as_ref()
                            .and_then(|f| f.name.as_deref())
                            .unwrap_or_default()
                            .to_owned();
                        let output_index = self.output_index();
                        self.emit(json!({"type": "response.output_item.added", "output_index": output_index,
                                         "item": call_item(&id, &call_id, &name, "", "in_progress")}), out);
                        self.open = Some(Open::Call {
                            index,
                            id,
                            call_id,
                            name,
                            arguments: String::new(),
                        });
                    }
                    if let Some(piece) = call
                        .function
                        .as_ref()
                        .and_then(|f| f.arguments.as_deref())
                        .filter(|p| !p.is_empty())
                    {
                        if let Some(Open::Call { arguments, .. }) = &mut self.open {
                            arguments.push_str(piece);
                        }
                        self.delta_event(
                            "response.function_call_arguments.delta",
                            piece,
                            false,
                            out,
                        );
                    }
                }
            }
            if let Some(reason) = &choice.finish_reason {
                self.finish_reason = Some(reason.to_string());
            }
        }
    }

    /// A delta of the open item, written in place (the hot path of a stream).
    fn delta_event(&mut self, kind: &str, piece: &str, in_content: bool, out: &mut Vec<Bytes>) {
        let id = match &self.open {
            Some(Open::Reasoning { id, .. } | Open::Message { id, .. } | Open::Call { id, .. }) => {
                id.as_str()
            }
            None => "",
        };
        let mut e = super::EventBuf::new(kind, kind.len() + id.len() + piece.len() + 128);
        e.raw("{\"type\":")
            .string(kind)
            .raw(",\"item_id\":")
            .string(id)
            .raw(",\"output_index\":")
            .number(self.done.len() as u64);
        if in_content {
            e.raw(",\"content_index\":0");
        }
        e.raw(",\"delta\":").string(piece);
        if kind == "response.output_text.delta" {
            e.raw(",\"logprobs\":[]");
        }
        e.raw(",\"sequence_number\":").number(self.seq).raw("}");
        self.seq += 1;
        out.push(e.finish());
    }

    pub fn finish(&mut self, counts: TokenCounts, charged: &Charged, out: &mut Vec<Bytes>) {
        self.start(out);
        self.close(out);
        let mut response = self.response("completed");
        set_status(&mut response, self.finish_reason.as_deref());
        response["usage"] = usage(counts);
        let kind = if response["status"] == "incomplete" {
            "response.incomplete"
        } else {
            "response.completed"
        };
        let mut event = json!({"type": kind, "response": response, "sequence_number": self.seq});
        self.seq += 1;
        let data = event.take().to_string();
        let data = crate::gateway::cost::annotate(data.as_bytes(), &["response", "usage"], charged)
            .unwrap_or_else(|| Bytes::from(data));
        out.push(super::named_event(kind, &data));
    }

    pub fn fail(&mut self, code: &str, message: &str, out: &mut Vec<Bytes>) {
        self.start(out);
        let mut response = self.response("failed");
        response["error"] = json!({"code": code, "message": message});
        self.emit(
            json!({"type": "response.failed", "response": response}),
            out,
        );
    }
}

/// A native Responses stream read for metering: its events as chat chunks (text deltas,
/// and the final usage then `[DONE]`; a failure as an in-band error).
#[derive(Default)]
pub struct UpstreamTranslator;

#[derive(Deserialize)]
struct NativeEvent<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    delta: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    response: Option<NativeResponse>,
}

#[derive(Deserialize)]
struct NativeResponse {
    #[serde(default)]
    usage: Option<crate::gateway::UpstreamUsage>,
    #[serde(default)]
    incomplete_details: Option<Value>,
}

impl UpstreamTranslator {
    pub fn on_event(&mut self, data: &[u8], out: &mut Vec<Bytes>) {
        let Ok(event) = serde_json::from_slice::<NativeEvent<'_>>(data) else {
            return;
        };
        let chunk = |delta: Value, finish: Option<&str>| {
            Bytes::from(
                json!({"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
                    .to_string(),
            )
        };
        match event.kind.as_ref() {
            "response.output_text.delta" | "response.refusal.delta" => {
                if let Some(d) = event.delta {
                    out.push(chunk(json!({"content": d}), None));
                }
            }
            "response.reasoning_text.delta" | "response.reasoning_summary_text.delta" => {
                if let Some(d) = event.delta {
                    out.push(chunk(json!({"reasoning_content": d}), None));
                }
            }
            "response.function_call_arguments.delta" => {
                if let Some(d) = event.delta {
                    out.push(chunk(
                        json!({"tool_calls": [{"index": 0, "function": {"arguments": d}}]}),
                        None,
                    ));
                }
            }
            "response.completed" | "response.incomplete" => {
                let response = event.response;
                let finish = match response
                    .as_ref()
                    .and_then(|r| r.incomplete_details.as_ref())
                {
                    Some(Value::Object(_)) => "length",
                    _ => "stop",
                };
                out.push(chunk(json!({}), Some(finish)));
                if let Some(u) = response.and_then(|r| r.usage) {
                    let c = u.counts();
                    let usage = json!({"prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens,
                        "prompt_tokens_details": {"cached_tokens": c.cached_input,
                            "cache_write_tokens": c.cache_write_5m + c.cache_write_1h,
                            "cache_write_1h_tokens": c.cache_write_1h},
                        "completion_tokens_details": {"reasoning_tokens": c.reasoning}});
                    out.push(Bytes::from(
                        json!({"choices": [], "usage": usage}).to_string(),
                    ));
                }
                out.push(Bytes::from_static(b"[DONE]"));
            }
            "response.failed" | "error" => {
                out.push(Bytes::from_static(
                    br#"{"error":{"message":"the upstream reported an error during the stream","type":"upstream_error"}}"#,
                ));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: Value) -> Value {
        serde_json::from_slice(to_chat(body.to_string().as_bytes()).unwrap().as_bytes()).unwrap()
    }

    #[test]
    fn requests_translate_instructions_items_tools_and_formats() {
        let got = chat(json!({
            "model": "m", "instructions": "Be brief.", "store": true, "metadata": {"u": "alice"},
            "input": [
                {"role": "user", "content": [{"type": "input_text", "text": "Weather?"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAA"}]},
                {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "x"},
                {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
                {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": "{\"city\":\"Oslo\"}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"}
            ],
            "tools": [{"type": "function", "name": "weather", "parameters": {"type": "object"}, "strict": true}],
            "tool_choice": {"type": "function", "name": "weather"},
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}, "strict": true}},
            "max_output_tokens": 50, "temperature": 0.2, "reasoning": {"effort": "minimal"}, "stream": true
        }));
        assert_eq!(
            got,
            json!({
                "model": "m",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAA"}}]},
                    {"role": "assistant", "content": "Checking.", "tool_calls": [
                        {"id": "c1", "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
                    {"role": "tool", "tool_call_id": "c1", "content": "sunny"}
                ],
                "tools": [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}, "strict": true}}],
                "tool_choice": {"type": "function", "function": {"name": "weather"}},
                "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": {"type": "object"}, "strict": true}},
                "max_tokens": 50, "temperature": 0.2, "reasoning_effort": "low", "stream": true
            })
        );
    }

    #[test]
    fn namespaced_tools_are_offered_as_their_functions() {
        let got = chat(
            json!({"model": "m", "input": "x", "tools": [{"type": "namespace", "name": "agents",
            "tools": [{"type": "function", "name": "spawn_agent", "parameters": {"type": "object"}},
                      {"name": "wait_agent", "parameters": {"type": "object"}}]}]}),
        );
        let names: Vec<&str> = got["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["spawn_agent", "wait_agent"]);
    }

    #[test]
    fn stateful_and_hosted_parameters_are_refused_by_name() {
        for (body, param) in [
            (
                json!({"model": "m", "input": "x", "previous_response_id": "resp_1"}),
                "previous_response_id",
            ),
            (
                json!({"model": "m", "input": "x", "conversation": "conv_1"}),
                "conversation",
            ),
            (
                json!({"model": "m", "input": "x", "background": true}),
                "background",
            ),
            (
                json!({"model": "m", "input": "x", "tools": [{"type": "web_search"}]}),
                "tools",
            ),
            (
                json!({"model": "m", "input": [{"type": "item_reference", "id": "SECRET"}]}),
                "input",
            ),
            (json!({"model": "m"}), "input"),
        ] {
            let err = to_chat(body.to_string().as_bytes()).unwrap_err();
            assert_eq!(err.param, Some(param), "{body}");
            assert!(!err.message.contains("SECRET"));
        }
    }

    #[test]
    fn native_bodies_never_store_and_drop_identifiers() {
        let body = json!({"model": "m", "input": "hi", "store": true, "user": "alice", "metadata": {"a": 1},
                          "safety_identifier": "s", "include": ["reasoning.encrypted_content"]});
        let text = body.to_string();
        let out: Value =
            serde_json::from_slice(&native_body(&fields(text.as_bytes()).unwrap(), "up").unwrap())
                .unwrap();
        assert_eq!(
            out,
            json!({"model": "up", "store": false, "input": "hi", "include": ["reasoning.encrypted_content"]})
        );
    }

    #[test]
    fn answers_become_responses_with_calls_and_billed_usage() {
        let chat = json!({"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me check.",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}}]});
        let counts = TokenCounts {
            input: 10,
            cached_input: 4,
            output: 3,
            estimated: false,
            ..TokenCounts::default()
        };
        let charged = Charged {
            cost: crate::billing::Money::from_nanos(1_234_000),
            estimated: false,
        };
        let bytes = super::super::Wire::Responses
            .from_chat(chat.to_string().as_bytes(), "m", counts, &charged)
            .unwrap();
        let out: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(out["usage"]["cost_usd"], "0.001234000");
        assert_eq!(out["usage"]["cost_estimated"], false);
        assert_eq!(out["object"], "response");
        assert_eq!(out["status"], "completed");
        assert_eq!(out["output"][0]["content"][0]["text"], "Let me check.");
        assert_eq!(out["output"][1]["type"], "function_call");
        assert_eq!(out["output"][1]["call_id"], "call_1");
        assert_eq!(out["usage"]["input_tokens"], 10);
        assert_eq!(out["usage"]["input_tokens_details"]["cached_tokens"], 4);
        assert_eq!(out["usage"]["total_tokens"], 13);
    }

    #[test]
    fn answers_are_written_whole_with_escaped_text_and_a_cut_one_is_incomplete() {
        let chat = json!({"choices": [{"finish_reason": "length", "message": {
            "content": "say \"hi\"\n\u{1}é", "reasoning_content": "hm",
            "tool_calls": [{"function": {"name": "f", "arguments": "{\"a\":\"b\"}"}}]}}]});
        let counts = TokenCounts {
            input: 7,
            output: 5,
            ..TokenCounts::default()
        };
        let bytes = super::super::Wire::Responses
            .from_chat(
                chat.to_string().as_bytes(),
                "m",
                counts,
                &Charged::default(),
            )
            .unwrap();
        let mut out: Value = serde_json::from_slice(&bytes).unwrap();
        // Ids are fresh; everything else is fixed.
        let ids = [
            out["id"].take(),
            out["output"][0]["id"].take(),
            out["output"][1]["id"].take(),
            out["output"][2]["id"].take(),
            out["output"][2]["call_id"].take(),
        ];
        for (id, prefix) in ids.iter().zip(["resp_", "rs_", "msg_", "fc_", "call_"]) {
            assert!(id.as_str().unwrap().starts_with(prefix), "{id}");
        }
        assert!(out["created_at"].take().as_u64().unwrap() > 1_700_000_000);
        assert_eq!(
            out,
            json!({"id": null, "object": "response", "created_at": null, "status": "incomplete",
                "error": null, "incomplete_details": {"reason": "max_output_tokens"}, "model": "m",
                "output": [
                    {"type": "reasoning", "id": null, "summary": [],
                     "content": [{"type": "reasoning_text", "text": "hm"}]},
                    {"type": "message", "id": null, "status": "completed", "role": "assistant",
                     "content": [{"type": "output_text", "text": "say \"hi\"\n\u{1}é", "annotations": []}]},
                    {"type": "function_call", "id": null, "call_id": null, "name": "f",
                     "arguments": "{\"a\":\"b\"}", "status": "completed"}],
                "parallel_tool_calls": true, "tool_choice": "auto", "tools": [], "store": false,
                "usage": {"input_tokens": 7, "input_tokens_details": {"cached_tokens": 0},
                    "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 0},
                    "total_tokens": 12, "cost": 0.0, "cost_usd": "0.000000000",
                    "cost_estimated": false}})
        );
    }

    fn events(out: &[Bytes]) -> Vec<Value> {
        out.iter()
            .map(|b| {
                let s = std::str::from_utf8(b).unwrap();
                let data = s.lines().find_map(|l| l.strip_prefix("data: ")).unwrap();
                serde_json::from_str(data).unwrap()
            })
            .collect()
    }

    #[test]
    fn chunks_stream_as_ordered_response_events() {
        let mut e = Encoder::new("m");
        let mut out = Vec::new();
        for chunk in [
            json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}]}),
            json!({"choices": [{"index": 0, "delta": {"content": " there"}}]}),
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "f", "arguments": ""}}]}}]}),
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
        let ev = events(&out);
        let kinds: Vec<&str> = ev.iter().map(|v| v["type"].as_str().unwrap()).collect();
        assert_eq!(
            kinds,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        assert!(
            ev.iter()
                .enumerate()
                .all(|(i, v)| v["sequence_number"] == i as u64)
        );
        let done = ev.last().unwrap();
        assert_eq!(
            done["response"]["output"][0]["content"][0]["text"],
            "Hi there"
        );
        assert_eq!(done["response"]["output"][1]["arguments"], "{}");
        assert_eq!(done["response"]["usage"]["output_tokens"], 4);
    }
}
