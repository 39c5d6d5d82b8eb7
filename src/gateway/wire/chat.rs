//! The chat completion request a translation writes: typed, borrowing the client's text
//! and tool schemas, and written out by hand in one pass (strings copied whole unless they
//! need escaping), with where each top-level field's value lies for routing to read.

use std::borrow::Cow;
use std::ops::Range;

use serde_json::value::RawValue;

use super::{JsonBuf, joined};

/// JSON written into the body.
type Out = JsonBuf<Vec<u8>>;

impl Out {
    fn boolean(&mut self, b: bool) -> &mut Self {
        self.raw(if b { "true" } else { "false" })
    }

    /// A JSON tree (the rare `response_format` or `tool_choice`), written by serde_json.
    fn value(&mut self, v: &serde_json::Value) -> &mut Self {
        // Writing into memory cannot fail.
        let _ = serde_json::to_writer(&mut self.0, v);
        self
    }

    /// `[…]`, each item written by `each`.
    fn list<T>(&mut self, items: &[T], each: impl Fn(&mut Self, &T)) -> &mut Self {
        self.raw("[");
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.raw(",");
            }
            each(self, item);
        }
        self.raw("]")
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

    /// The request's JSON body, with where each top-level field's value lies in it: fields
    /// in a fixed order, the model first, those not set left out. Byte for byte what
    /// serde_json wrote from these types' derived `Serialize` (the test `written_by_hand`
    /// holds it to it); by hand, a plain string is copied whole instead of going through
    /// serde_json's escape loop a byte at a time.
    pub(crate) fn body(&self) -> ChatBody {
        let text: usize = self.messages.iter().map(ChatMsg::size_hint).sum();
        let mut w = BodyWriter {
            out: JsonBuf(Vec::with_capacity(256 + text)),
            fields: Vec::with_capacity(8),
        };
        w.field("model", |o| o.string(&self.model));
        w.field("messages", |o| o.list(&self.messages, ChatMsg::write));
        if let Some(n) = self.max_tokens {
            w.field("max_tokens", |o| o.number(n));
        }
        if !self.stop.is_empty() {
            w.field("stop", |o| {
                o.list(&self.stop, |o, s| {
                    o.string(s);
                })
            });
        }
        for (name, number) in [
            ("temperature", self.temperature),
            ("top_p", self.top_p),
            ("top_k", self.top_k),
        ] {
            if let Some(raw) = number {
                w.field(name, |o| o.raw(raw.get()));
            }
        }
        if let Some(v) = &self.response_format {
            w.field("response_format", |o| o.value(v));
        }
        if let Some(v) = &self.tool_choice {
            w.field("tool_choice", |o| o.value(v));
        }
        if let Some(b) = self.parallel_tool_calls {
            w.field("parallel_tool_calls", |o| o.boolean(b));
        }
        if let Some(effort) = self.reasoning_effort {
            w.field("reasoning_effort", |o| o.string(effort));
        }
        if let Some(b) = self.stream {
            w.field("stream", |o| o.boolean(b));
        }
        if !self.tools.is_empty() {
            w.field("tools", |o| o.list(&self.tools, ChatTool::write));
        }
        w.out.raw("}");
        // Every byte written came from a `str` or is ASCII: the check never fails, and
        // costs one pass over the body.
        let text = String::from_utf8(w.out.0).unwrap_or_default();
        ChatBody {
            text,
            fields: w.fields,
        }
    }
}

/// Writes a `ChatBody`, a top-level field at a time.
struct BodyWriter {
    out: Out,
    fields: Vec<(&'static str, Range<usize>)>,
}

impl BodyWriter {
    fn field(&mut self, name: &'static str, value: impl FnOnce(&mut Out) -> &mut Out) {
        let open = if self.fields.is_empty() { "{\"" } else { ",\"" };
        self.out.raw(open).raw(name).raw("\":");
        let start = self.out.0.len();
        value(&mut self.out);
        self.fields.push((name, start..self.out.0.len()));
    }
}

/// A translated chat request: its JSON body and, for each top-level field, where its
/// value lies in it. Routing reads the fields from here instead of parsing the body again
/// (`Request::translated`).
pub struct ChatBody {
    /// Always `{"model":…}` and valid JSON (`ChatRequest::body`).
    text: String,
    fields: Vec<(&'static str, Range<usize>)>,
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
    pub fn into_bytes(self) -> bytes::Bytes {
        bytes::Bytes::from(self.text)
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
        // Each range ends where a value's writing stopped: on a char boundary.
        self.fields
            .iter()
            .filter_map(|(name, range)| Some((Cow::Borrowed(*name), self.text.get(range.clone())?)))
    }
}

/// One chat message as a translation writes it, borrowing the client's text.
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct ChatMsg<'a> {
    pub role: &'static str,
    pub content: ChatContent<'a>,
    #[cfg_attr(test, serde(skip_serializing_if = "Vec::is_empty"))]
    pub tool_calls: Vec<ChatCall<'a>>,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
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

    /// About how many bytes the message's text takes, to size the body once.
    fn size_hint(&self) -> usize {
        let text = match &self.content {
            ChatContent::Text(t) => t.len(),
            ChatContent::None | ChatContent::Parts(_) => 0,
        };
        let calls: usize = self
            .tool_calls
            .iter()
            .map(|c| c.function.arguments.len() + 96)
            .sum();
        text + calls + 48
    }

    fn write(out: &mut Out, m: &Self) {
        out.raw("{\"role\":").string(m.role).raw(",\"content\":");
        match &m.content {
            ChatContent::None => out.raw("null"),
            ChatContent::Text(text) => out.string(text),
            ChatContent::Parts(parts) => out.list(parts, ChatPart::write),
        };
        if !m.tool_calls.is_empty() {
            out.raw(",\"tool_calls\":")
                .list(&m.tool_calls, ChatCall::write);
        }
        if let Some(id) = &m.tool_call_id {
            out.raw(",\"tool_call_id\":").string(id);
        }
        out.raw("}");
    }
}

/// A chat message's `content`: none (an assistant turn of tool calls alone), text, or
/// parts.
#[cfg_attr(test, derive(serde::Serialize), serde(untagged))]
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
#[cfg_attr(
    test,
    derive(serde::Serialize),
    serde(tag = "type", rename_all = "snake_case")
)]
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

    fn write(out: &mut Out, part: &Self) {
        match part {
            ChatPart::Text { text } => {
                out.raw("{\"type\":\"text\",\"text\":").string(text);
            }
            ChatPart::ImageUrl { image_url } => {
                out.raw("{\"type\":\"image_url\",\"image_url\":{\"url\":")
                    .string(&image_url.url);
                if let Some(detail) = &image_url.detail {
                    out.raw(",\"detail\":").string(detail);
                }
                out.raw("}");
            }
        }
        out.raw("}");
    }
}

#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct ChatImage<'a> {
    pub url: Cow<'a, str>,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    pub detail: Option<Cow<'a, str>>,
}

/// An assistant's tool call, as a chat request carries it.
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct ChatCall<'a> {
    pub id: Cow<'a, str>,
    #[cfg_attr(test, serde(rename = "type"))]
    kind: &'static str,
    function: ChatCallFunction<'a>,
}

#[cfg_attr(test, derive(serde::Serialize))]
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

    fn write(out: &mut Out, call: &Self) {
        out.raw("{\"id\":")
            .string(&call.id)
            .raw(",\"type\":")
            .string(call.kind)
            .raw(",\"function\":{\"name\":")
            .string(&call.function.name)
            .raw(",\"arguments\":")
            .string(&call.function.arguments)
            .raw("}}");
    }
}

/// A chat tool definition borrowing the client's schema, which is passed on unparsed.
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct ChatTool<'a> {
    #[cfg_attr(test, serde(rename = "type"))]
    kind: &'static str,
    function: ChatToolFunction<'a>,
}

#[cfg_attr(test, derive(serde::Serialize))]
struct ChatToolFunction<'a> {
    name: Cow<'a, str>,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    description: Option<Cow<'a, str>>,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
    parameters: Option<&'a RawValue>,
    #[cfg_attr(test, serde(skip_serializing_if = "Option::is_none"))]
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

    fn write(out: &mut Out, tool: &Self) {
        let f = &tool.function;
        out.raw("{\"type\":")
            .string(tool.kind)
            .raw(",\"function\":{\"name\":")
            .string(&f.name);
        if let Some(description) = &f.description {
            out.raw(",\"description\":").string(description);
        }
        if let Some(parameters) = f.parameters {
            out.raw(",\"parameters\":").raw(parameters.get());
        }
        if let Some(strict) = f.strict {
            out.raw(",\"strict\":").boolean(strict);
        }
        out.raw("}}");
    }
}

#[cfg(test)]
mod written_by_hand {
    //! `ChatRequest::body` writes, byte for byte, what serde_json wrote from the types'
    //! derived `Serialize` a field at a time (the writer it replaced, kept here as the
    //! oracle), and records the same field ranges, on generated requests whose strings
    //! need escaping or not.

    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// The replaced writer: each top-level field by serde_json.
    fn by_serde(r: &ChatRequest<'_>) -> (String, Vec<(&'static str, Range<usize>)>) {
        let mut text = Vec::new();
        let mut fields = Vec::new();
        let mut put = |name: &'static str, value: &dyn erased::Value| {
            text.push(if fields.is_empty() { b'{' } else { b',' });
            text.extend_from_slice(format!("\"{name}\":").as_bytes());
            let start = text.len();
            value.write(&mut text);
            fields.push((name, start..text.len()));
        };
        put("model", &r.model);
        put("messages", &r.messages);
        if let Some(n) = &r.max_tokens {
            put("max_tokens", n);
        }
        if !r.stop.is_empty() {
            put("stop", &r.stop);
        }
        for (name, v) in [
            ("temperature", r.temperature),
            ("top_p", r.top_p),
            ("top_k", r.top_k),
        ] {
            if let Some(v) = v {
                put(name, &v);
            }
        }
        if let Some(v) = &r.response_format {
            put("response_format", v);
        }
        if let Some(v) = &r.tool_choice {
            put("tool_choice", v);
        }
        if let Some(v) = &r.parallel_tool_calls {
            put("parallel_tool_calls", v);
        }
        if let Some(v) = &r.reasoning_effort {
            put("reasoning_effort", v);
        }
        if let Some(v) = &r.stream {
            put("stream", v);
        }
        if !r.tools.is_empty() {
            put("tools", &r.tools);
        }
        text.push(b'}');
        (String::from_utf8(text).unwrap(), fields)
    }

    mod erased {
        /// A value serde_json writes, behind a trait object.
        pub trait Value {
            fn write(&self, out: &mut Vec<u8>);
        }

        impl<T: serde::Serialize> Value for T {
            fn write(&self, out: &mut Vec<u8>) {
                serde_json::to_writer(out, self).unwrap();
            }
        }
    }

    /// What a generated request owns, for a `ChatRequest` to borrow.
    #[derive(Debug, Clone)]
    struct Owned {
        model: String,
        messages: Vec<Msg>,
        max_tokens: Option<u64>,
        stop: Vec<String>,
        numbers: [Option<String>; 3],
        response_format: Option<serde_json::Value>,
        tool_choice: Option<serde_json::Value>,
        parallel_tool_calls: Option<bool>,
        reasoning_effort: Option<&'static str>,
        stream: Option<bool>,
        tools: Vec<Tool>,
    }

    #[derive(Debug, Clone)]
    struct Msg {
        role: &'static str,
        content: Content,
        calls: Vec<(String, String, String)>,
        call_id: Option<String>,
    }

    #[derive(Debug, Clone)]
    enum Content {
        None,
        Text(String),
        Parts(Vec<Part>),
    }

    #[derive(Debug, Clone)]
    enum Part {
        Text(String),
        Image(String, Option<String>),
    }

    #[derive(Debug, Clone)]
    struct Tool {
        name: String,
        description: Option<String>,
        parameters: Option<String>,
        strict: Option<bool>,
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => "[a-zA-Z0-9 ,.?!-]{0,24}",
            1 => "(\\PC|[\\x00-\\x1f\"\\\\\u{7f}])*",
        ]
    }

    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<i64>().prop_map(|n| n.to_string()),
            (-10.0f64..10.0).prop_map(|f| f.to_string()),
            Just("1e-3".to_string()),
            Just("0.70".to_string()),
        ]
    }

    fn schema() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("{}".to_string()),
            Just(r#"{"type":"object","properties":{"city":{"type":"string"}}}"#.to_string()),
            Just("{ \"type\" : \"object\",\n  \"required\": [\"a\"] }".to_string()),
        ]
    }

    fn part() -> impl Strategy<Value = Part> {
        prop_oneof![
            text().prop_map(Part::Text),
            (text(), proptest::option::of(text())).prop_map(|(u, d)| Part::Image(u, d)),
        ]
    }

    fn content() -> impl Strategy<Value = Content> {
        prop_oneof![
            Just(Content::None),
            text().prop_map(Content::Text),
            proptest::collection::vec(part(), 0..3).prop_map(Content::Parts),
        ]
    }

    prop_compose! {
        fn msg()(
            role in prop::sample::select(vec!["system", "user", "assistant", "tool"]),
            content in content(),
            calls in proptest::collection::vec((text(), text(), text()), 0..3),
            call_id in proptest::option::of(text()),
        ) -> Msg {
            Msg { role, content, calls, call_id }
        }
    }

    prop_compose! {
        fn tool()(
            name in text(),
            description in proptest::option::of(text()),
            parameters in proptest::option::of(schema()),
            strict in proptest::option::of(any::<bool>()),
        ) -> Tool {
            Tool { name, description, parameters, strict }
        }
    }

    fn tree() -> impl Strategy<Value = serde_json::Value> {
        prop_oneof![
            Just(json!("auto")),
            Just(json!({"type": "function", "function": {"name": "f\"x"}})),
            Just(json!({"type": "json_object"})),
        ]
    }

    prop_compose! {
        fn owned()(
            model in text(),
            messages in proptest::collection::vec(msg(), 0..5),
            max_tokens in proptest::option::of(any::<u64>()),
            stop in proptest::collection::vec(text(), 0..3),
            numbers in [
                proptest::option::of(number()),
                proptest::option::of(number()),
                proptest::option::of(number()),
            ],
            response_format in proptest::option::of(tree()),
            tool_choice in proptest::option::of(tree()),
            parallel_tool_calls in proptest::option::of(any::<bool>()),
            reasoning_effort in proptest::option::of(prop::sample::select(vec!["low", "medium", "high"])),
            stream in proptest::option::of(any::<bool>()),
            tools in proptest::collection::vec(tool(), 0..3),
        ) -> Owned {
            Owned {
                model,
                messages,
                max_tokens,
                stop,
                numbers,
                response_format,
                tool_choice,
                parallel_tool_calls,
                reasoning_effort,
                stream,
                tools,
            }
        }
    }

    fn raw(text: &Option<String>) -> Option<Box<RawValue>> {
        text.as_ref()
            .map(|t| RawValue::from_string(t.clone()).unwrap())
    }

    fn request<'a>(
        o: &'a Owned,
        numbers: &'a [Option<Box<RawValue>>; 3],
        schemas: &'a [Option<Box<RawValue>>],
    ) -> ChatRequest<'a> {
        let mut r = ChatRequest::new(Cow::Borrowed(&o.model));
        r.messages = o
            .messages
            .iter()
            .map(|m| {
                let content = match &m.content {
                    Content::None => ChatContent::None,
                    Content::Text(t) => ChatContent::Text(Cow::Borrowed(t)),
                    Content::Parts(parts) => ChatContent::Parts(
                        parts
                            .iter()
                            .map(|p| match p {
                                Part::Text(t) => ChatPart::Text {
                                    text: Cow::Borrowed(t),
                                },
                                Part::Image(url, detail) => ChatPart::ImageUrl {
                                    image_url: ChatImage {
                                        url: Cow::Borrowed(url),
                                        detail: detail.as_deref().map(Cow::Borrowed),
                                    },
                                },
                            })
                            .collect(),
                    ),
                };
                let mut msg = ChatMsg::new(m.role, content);
                msg.tool_calls = m
                    .calls
                    .iter()
                    .map(|(id, name, args)| {
                        ChatCall::new(Cow::Borrowed(id), Cow::Borrowed(name), Cow::Borrowed(args))
                    })
                    .collect();
                msg.tool_call_id = m.call_id.as_deref().map(Cow::Borrowed);
                msg
            })
            .collect();
        r.max_tokens = o.max_tokens;
        r.stop = o.stop.clone();
        r.temperature = numbers[0].as_deref();
        r.top_p = numbers[1].as_deref();
        r.top_k = numbers[2].as_deref();
        r.response_format = o.response_format.clone();
        r.tool_choice = o.tool_choice.clone();
        r.parallel_tool_calls = o.parallel_tool_calls;
        r.reasoning_effort = o.reasoning_effort;
        r.stream = o.stream;
        r.tools = o
            .tools
            .iter()
            .zip(schemas)
            .map(|(t, schema)| {
                ChatTool::new(
                    Cow::Borrowed(&t.name),
                    t.description.as_deref().map(Cow::Borrowed),
                    schema.as_deref(),
                    t.strict,
                )
            })
            .collect();
        r
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        #[test]
        fn the_body_is_written_as_serde_wrote_it(o in owned()) {
            let numbers = [raw(&o.numbers[0]), raw(&o.numbers[1]), raw(&o.numbers[2])];
            let schemas: Vec<_> = o.tools.iter().map(|t| raw(&t.parameters)).collect();
            let r = request(&o, &numbers, &schemas);
            let body = r.body();
            let (text, fields) = by_serde(&r);
            prop_assert_eq!(&body.text, &text);
            prop_assert_eq!(&body.fields, &fields);
            serde_json::from_str::<serde_json::Value>(&body.text).unwrap();
        }
    }
}
