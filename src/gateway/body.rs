//! Request bodies: validate the few fields we act on, pass every other byte through untouched.
//!
//! The top-level object is split into `(key, raw JSON)` pairs that borrow the client's
//! bytes; only `model` and, for streams, `stream_options` are rewritten. Error messages
//! name fields and positions, never values, so no content reaches an error or a log.

use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::Endpoint;

/// What is wrong with a request body; each becomes a 400 naming the parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyError {
    pub message: String,
    pub param: Option<&'static str>,
}

impl BodyError {
    pub(crate) fn field(param: &'static str, message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            param: Some(param),
        }
    }
}

/// A request body split into raw top-level fields, plus the ones we act on.
pub struct Inspected<'a> {
    pub model: Cow<'a, str>,
    pub stream: bool,
    /// The client itself asked for `stream_options.include_usage`.
    pub client_wants_usage: bool,
    /// `max_completion_tokens` or `max_tokens`, when given (budget reservations use it).
    pub max_tokens: Option<u64>,
    /// Each value's JSON text, valid as parsed (or as serialized by a translation).
    fields: Vec<(Cow<'a, str>, &'a str)>,
    stream_options: Option<&'a str>,
    /// For a body a translation wrote (`Request::translated`): its text after the model's
    /// value, every other field as `rewrite` would write it, so that `rewrite` copies it
    /// whole instead of field by field.
    after_model: Option<&'a str>,
}

/// A JSON object's fields in order, values borrowed raw.
pub(crate) struct Fields<'a>(pub(crate) Vec<(Cow<'a, str>, &'a RawValue)>);

/// A JSON string borrowed from the document when it holds no escape (almost every key and
/// model name), owned otherwise. serde's own `Cow<str>` always allocates.
pub(crate) struct Text<'a>(pub(crate) Cow<'a, str>);

impl<'de> serde::Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                v: &'de str,
            ) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// `json` read as `T`, its UTF-8 checked once for the whole text: serde_json's slice reader
/// checks every string and key it meets on its own, which on a small object of numbers
/// (an upstream's `usage`) costs more than the numbers. `None` when it does not read.
pub(crate) fn read_json<'a, T: serde::Deserialize<'a>>(json: &'a [u8]) -> Option<T> {
    serde_json::from_str(std::str::from_utf8(json).ok()?).ok()
}

/// `raw` when it is a JSON string, borrowed unless it holds an escape.
pub(crate) fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    string_text(raw.get())
}

/// `text` (valid JSON) when it is a JSON string, borrowed unless it holds an escape.
fn string_text(text: &str) -> Option<Cow<'_, str>> {
    // Anything else is known by its first byte, without building serde's error.
    if !text.starts_with('"') {
        return None;
    }
    // A raw value is valid JSON, so a string without an escape is its text in quotes.
    if text.len() >= 2 && !text.contains('\\') {
        return Some(Cow::Borrowed(&text[1..text.len() - 1]));
    }
    serde_json::from_str::<Text<'_>>(text).ok().map(|t| t.0)
}

impl<'de> serde::Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                    let value: &'de RawValue = map.next_value()?;
                    out.push((key, value));
                }
                Ok(Fields(out))
            }
        }
        d.deserialize_map(V)
    }
}

fn syntax_error(e: &serde_json::Error) -> BodyError {
    let message = match e.classify() {
        serde_json::error::Category::Data => "the request body must be a JSON object".to_owned(),
        _ => format!(
            "the request body is not valid JSON (error at line {} column {})",
            e.line(),
            e.column()
        ),
    };
    BodyError {
        message,
        param: None,
    }
}

use super::minimize;

fn is_array(raw: &str) -> bool {
    raw.starts_with('[')
}

/// Form fields a third party receives for a transcription (the file name is replaced too).
pub const TRANSCRIPTION_FIELDS: &[&str] = &[
    "file",
    "language",
    "prompt",
    "response_format",
    "temperature",
    "timestamp_granularities[]",
    "chunking_strategy",
    "include[]",
];

/// A parsed request: a JSON body, or a multipart upload.
pub enum Request<'a> {
    Json(Inspected<'a>),
    Form(super::multipart::Form<'a>, &'a str),
}

impl<'a> Request<'a> {
    pub fn parse(
        endpoint: Endpoint,
        content_type: Option<&str>,
        body: &'a [u8],
    ) -> Result<Self, BodyError> {
        if endpoint != Endpoint::Transcriptions {
            return inspect(endpoint, body).map(Request::Json);
        }
        let form = super::multipart::parse(content_type, body)?;
        let model = match form.text("model") {
            Some(m) if !m.is_empty() => m,
            _ => {
                return Err(BodyError::field(
                    "model",
                    "you must provide a `model` form field",
                ));
            }
        };
        if form.file().is_none_or(|f| f.filename.is_none()) {
            return Err(BodyError::field(
                "file",
                "you must upload the audio as a `file` form field",
            ));
        }
        if form.text("stream") == Some("true") {
            return Err(BodyError::field(
                "stream",
                "streamed transcriptions are not supported",
            ));
        }
        Ok(Request::Form(form, model))
    }

    /// What routing reads of a request going out in the client's own format
    /// (`wire::Skeleton`): no chat body is written or read for it.
    pub fn routing_only(model: &'a str, stream: bool, max_tokens: Option<u64>) -> Self {
        Request::Json(Inspected {
            model: Cow::Borrowed(model),
            stream,
            client_wants_usage: false,
            max_tokens,
            fields: Vec::new(),
            stream_options: None,
            after_model: None,
        })
    }

    /// A translation's chat request (see `wire::ChatBody`), its fields taken as written:
    /// it was serialized here, so it is not parsed again.
    pub fn translated(
        endpoint: Endpoint,
        chat: &'a super::wire::ChatBody,
    ) -> Result<Self, BodyError> {
        let mut inspected = inspect_fields(endpoint, chat.fields().collect())?;
        inspected.after_model = chat.after_model();
        Ok(Request::Json(inspected))
    }

    pub fn model(&self) -> &str {
        match self {
            Request::Json(i) => &i.model,
            Request::Form(_, model) => model,
        }
    }

    pub fn stream(&self) -> bool {
        matches!(self, Request::Json(i) if i.stream)
    }

    pub fn client_wants_usage(&self) -> bool {
        matches!(self, Request::Json(i) if i.client_wants_usage)
    }

    pub fn max_tokens(&self) -> Option<u64> {
        match self {
            Request::Json(i) => i.max_tokens,
            Request::Form(..) => None,
        }
    }
}

/// One top-level field of a JSON object: its key and its value's raw JSON.
pub type Field<'a> = (Cow<'a, str>, &'a RawValue);

/// A JSON object's top-level fields as `(key, raw JSON)` pairs borrowing the body; a
/// body that gives a key twice is refused (we would act on one, an upstream on the other).
pub fn fields(body: &[u8]) -> Result<Vec<Field<'_>>, BodyError> {
    if body.is_empty() {
        return Err(BodyError {
            message: "the request body is empty; send a JSON object".to_owned(),
            param: None,
        });
    }
    // UTF-8 is checked once for the whole body, so the raw values need no check each
    // (serde_json's slice reader checks every string and raw value it borrows); a body
    // that is not UTF-8 is read as bytes, for serde_json's error and its position.
    let read = match std::str::from_utf8(body) {
        Ok(text) => serde_json::from_str::<Fields<'_>>(text),
        Err(_) => serde_json::from_slice::<Fields<'_>>(body),
    };
    let Fields(fields) = read.map_err(|e| syntax_error(&e))?;
    for (i, (key, _)) in fields.iter().enumerate() {
        if fields[..i].iter().any(|(k, _)| k == key) {
            return Err(BodyError {
                message: format!(
                    "the request body gives the key `{}` more than once",
                    &key[..key.floor_char_boundary(64)]
                ),
                param: None,
            });
        }
    }
    Ok(fields)
}

/// A top-level field's raw JSON among `fields`; `null` counts as absent.
pub fn field<'a>(fields: &[Field<'a>], name: &str) -> Option<&'a RawValue> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| *v)
        .filter(|v| v.get() != "null")
}

/// Parses and validates a request body for `endpoint`.
pub fn inspect(endpoint: Endpoint, body: &[u8]) -> Result<Inspected<'_>, BodyError> {
    // The same allocation, each value's text taken out of its `RawValue`.
    let fields = fields(body)?
        .into_iter()
        .map(|(k, v)| (k, v.get()))
        .collect();
    inspect_fields(endpoint, fields)
}

/// Validates a request's top-level fields (each value's JSON text) for `endpoint`.
fn inspect_fields<'a>(
    endpoint: Endpoint,
    fields: Vec<(Cow<'a, str>, &'a str)>,
) -> Result<Inspected<'a>, BodyError> {
    let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| *v);

    let model = match get("model") {
        Some(raw) => match string_text(raw) {
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
    let stream = match get("stream") {
        None | Some("null") | Some("false") => false,
        Some("true") => true,
        Some(_) => return Err(BodyError::field("stream", "`stream` must be a boolean")),
    };
    match endpoint {
        Endpoint::Chat => match get("messages") {
            Some(m) if is_array(m) => {}
            Some(_) => {
                return Err(BodyError::field(
                    "messages",
                    "`messages` must be an array of message objects",
                ));
            }
            None => {
                return Err(BodyError::field(
                    "messages",
                    "you must provide a `messages` parameter",
                ));
            }
        },
        Endpoint::Completions => {
            if get("prompt").is_none() {
                return Err(BodyError::field(
                    "prompt",
                    "you must provide a `prompt` parameter",
                ));
            }
        }
        Endpoint::Embeddings => {
            if get("input").is_none() {
                return Err(BodyError::field(
                    "input",
                    "you must provide an `input` parameter",
                ));
            }
        }
        Endpoint::Transcriptions => {
            return Err(BodyError::field(
                "file",
                "transcriptions are multipart/form-data uploads",
            ));
        }
    }
    let stream_options = get("stream_options").filter(|r| *r != "null");
    let client_wants_usage = match stream_options {
        Some(raw) => {
            if !raw.starts_with('{') {
                return Err(BodyError::field(
                    "stream_options",
                    "`stream_options` must be an object",
                ));
            }
            #[derive(serde::Deserialize)]
            struct Opts {
                #[serde(default)]
                include_usage: Option<bool>,
            }
            serde_json::from_str::<Opts>(raw)
                .map_err(|_| {
                    BodyError::field(
                        "stream_options",
                        "`stream_options.include_usage` must be a boolean",
                    )
                })?
                .include_usage
                .unwrap_or(false)
        }
        None => false,
    };
    let max_tokens = get("max_completion_tokens")
        .or_else(|| get("max_tokens"))
        .and_then(|r| r.parse::<u64>().ok());
    Ok(Inspected {
        model,
        stream,
        client_wants_usage,
        max_tokens,
        fields,
        stream_options,
        after_model: None,
    })
}

impl<'a> Inspected<'a> {
    /// Whether the request gives the top-level field `name` at all (`null` included).
    pub fn has(&self, name: &str) -> bool {
        self.fields.iter().any(|(k, _)| k == name)
    }

    /// A top-level field's JSON text (the last one wins, as in `inspect`); `null` counts
    /// as absent.
    pub fn field(&self, name: &str) -> Option<&'a str> {
        self.fields
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| *v)
            .filter(|v| *v != "null")
    }

    /// The body for the upstream: `model` replaced, and for streams
    /// `stream_options.include_usage` forced on (other stream options kept). For a third
    /// party (`minimise` = its endpoint) only allow-listed fields go out: no `user`,
    /// `metadata`, `store`, `safety_identifier` or anything unknown.
    pub fn rewrite(
        &self,
        upstream_model: &str,
        stream: bool,
        minimise: Option<Endpoint>,
    ) -> Result<Bytes, BodyError> {
        let size: usize = self.fields.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
        let hint = size + upstream_model.len() + 64;
        let mut out = crate::bodybuf::BodyBuf::new(hint, hint.saturating_mul(2));
        out.extend_from_slice(b"{\"model\":");
        write_json_str(&mut out, upstream_model);
        // A translation's body: its fields follow the model as they would be written here
        // (it has no `stream_options` to merge), so they go out in one copy.
        if let (None, None, Some(rest)) = (minimise, self.stream_options, self.after_model) {
            let fields = match stream {
                true => rest.strip_suffix('}'),
                false => Some(rest),
            };
            if let Some(fields) = fields {
                out.extend_from_slice(fields.as_bytes());
                if stream {
                    out.extend_from_slice(b",\"stream_options\":{\"include_usage\":true}}");
                }
                return Ok(out.freeze());
            }
        }
        for (key, value) in &self.fields {
            if key == "model" || (stream && key == "stream_options") {
                continue;
            }
            let Some(endpoint) = minimise else {
                out.push(b',');
                write_json_str(&mut out, key);
                out.push(b':');
                out.extend_from_slice(value.as_bytes());
                continue;
            };
            // A third party: allow-listed fields only, each pruned to what it needs.
            let Some((name, shape)) = allowed(endpoint, key) else {
                continue;
            };
            let pruned = minimize::minimise(value, shape).map_err(|e| match e {
                minimize::MinimiseError::Duplicate(k) => {
                    BodyError::field(name, format!("`{name}` gives the key `{k}` more than once"))
                }
                minimize::MinimiseError::Invalid => {
                    BodyError::field(name, format!("`{name}` is not valid JSON"))
                }
            })?;
            out.push(b',');
            write_json_str(&mut out, key);
            out.push(b':');
            serde_json::to_writer(&mut out, &pruned)
                .map_err(|_| BodyError::field(name, format!("`{name}` is not valid JSON")))?;
        }
        if stream {
            out.extend_from_slice(b",\"stream_options\":");
            match self.stream_options {
                // A third party learns only that we want the usage.
                Some(_) if minimise.is_some() => out.extend_from_slice(b"{\"include_usage\":true}"),
                Some(raw) => {
                    let mut opts: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_str(raw).map_err(|_| {
                            BodyError::field("stream_options", "`stream_options` must be an object")
                        })?;
                    opts.insert("include_usage".to_owned(), serde_json::Value::Bool(true));
                    serde_json::to_writer(&mut out, &opts).map_err(|_| {
                        BodyError::field("stream_options", "`stream_options` must be an object")
                    })?;
                }
                None => out.extend_from_slice(b"{\"include_usage\":true}"),
            }
        }
        out.push(b'}');
        Ok(out.freeze())
    }
}

/// The fields a third-party provider needs for each endpoint, with the shape each may
/// have (see `minimize.rs`); everything else stays here.
fn allowed(endpoint: Endpoint, key: &str) -> Option<(&'static str, &'static minimize::Shape)> {
    use minimize::{AUDIO, MESSAGE, OPAQUE, PREDICTION, RESPONSE_FORMAT, Shape, TOOL, TOOL_CHOICE};
    const COMMON: &[(&str, &Shape)] = &[
        ("stream", &OPAQUE),
        ("temperature", &OPAQUE),
        ("top_p", &OPAQUE),
        ("n", &OPAQUE),
        ("stop", &OPAQUE),
        ("max_tokens", &OPAQUE),
        ("presence_penalty", &OPAQUE),
        ("frequency_penalty", &OPAQUE),
        ("logit_bias", &OPAQUE),
        ("logprobs", &OPAQUE),
        ("seed", &OPAQUE),
    ];
    const CHAT: &[(&str, &Shape)] = &[
        ("messages", &MESSAGE),
        ("max_completion_tokens", &OPAQUE),
        ("top_logprobs", &OPAQUE),
        ("response_format", &RESPONSE_FORMAT),
        ("tools", &TOOL),
        ("tool_choice", &TOOL_CHOICE),
        ("parallel_tool_calls", &OPAQUE),
        ("reasoning_effort", &OPAQUE),
        ("modalities", &OPAQUE),
        ("audio", &AUDIO),
        ("prediction", &PREDICTION),
    ];
    const COMPLETIONS: &[(&str, &Shape)] = &[
        ("prompt", &OPAQUE),
        ("suffix", &OPAQUE),
        ("echo", &OPAQUE),
        ("best_of", &OPAQUE),
    ];
    const EMBEDDINGS: &[(&str, &Shape)] = &[
        ("input", &OPAQUE),
        ("encoding_format", &OPAQUE),
        ("dimensions", &OPAQUE),
    ];
    let lists: &[&[(&str, &Shape)]] = match endpoint {
        Endpoint::Chat => &[COMMON, CHAT],
        Endpoint::Completions => &[COMMON, COMPLETIONS],
        Endpoint::Embeddings => &[EMBEDDINGS],
        Endpoint::Transcriptions => &[],
    };
    lists
        .iter()
        .flat_map(|l| l.iter())
        .find(|(name, _)| *name == key)
        .map(|(name, shape)| (*name, *shape))
}

fn write_json_str(out: &mut crate::bodybuf::BodyBuf, s: &str) {
    // Writing a &str into a BodyBuf cannot fail.
    let _ = crate::json::write_str(out, s);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn a_body_that_is_not_utf8_is_refused_with_where_it_breaks() {
        let err = fields(b"{\"model\":\"m\xff\"}").unwrap_err();
        assert_eq!(
            err.message,
            "the request body is not valid JSON (error at line 1 column 12)"
        );
        let err = fields(b"\xff{}").unwrap_err();
        assert!(
            err.message
                .starts_with("the request body is not valid JSON")
        );
        // Valid UTF-8 reads as before, raw values borrowed from the body.
        let body = "{\"model\":\"m\u{e9}\",\"n\":[1, 2]}".as_bytes();
        let f = fields(body).unwrap();
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].1.get(), "\"m\u{e9}\"");
        assert_eq!(f[1].1.get(), "[1, 2]");
    }

    #[test]
    fn strings_borrow_unless_escaped_and_anything_else_is_none() {
        let raw = |s: &str| serde_json::from_str::<Box<RawValue>>(s).unwrap();
        let plain = raw(r#""héllo world""#);
        assert!(matches!(string(&plain), Some(Cow::Borrowed("héllo world"))));
        assert!(matches!(string(&raw(r#""""#)), Some(Cow::Borrowed(""))));
        let escaped = raw(r#""a\"b\n\u00e9""#);
        assert_eq!(string(&escaped).as_deref(), Some("a\"b\né"));
        for other in ["1", "null", "true", "[\"a\"]", "{\"a\":\"b\"}"] {
            assert_eq!(string(&raw(other)), None, "{other}");
        }
        // The translations read optional raw fields as absent when `null`.
        #[derive(serde::Deserialize)]
        struct Field<'a> {
            #[serde(borrow, default)]
            a: Option<&'a RawValue>,
        }
        let null: Field<'_> = serde_json::from_str(r#"{"a": null}"#).unwrap();
        assert!(null.a.is_none());
    }

    fn rewrite(body: &str, stream: bool) -> Value {
        let i = inspect(Endpoint::Chat, body.as_bytes()).unwrap();
        serde_json::from_slice(&i.rewrite("up/model", stream, None).unwrap()).unwrap()
    }

    #[test]
    fn every_parameter_passes_through_and_model_is_mapped() {
        let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"tool_choice":"auto","response_format":{"type":"json_object"},"n":2,"logprobs":true,"seed":7,"stop":["x"],"temperature":0.5}"#;
        let out = rewrite(body, false);
        let mut expected: Value = serde_json::from_str(body).unwrap();
        expected["model"] = json!("up/model");
        assert_eq!(out, expected);
    }

    #[test]
    fn streams_always_ask_upstream_for_usage_and_keep_other_options() {
        let out = rewrite(r#"{"model":"m","messages":[],"stream":true}"#, true);
        assert_eq!(out["stream_options"], json!({"include_usage": true}));
        let i = inspect(Endpoint::Chat, br#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":false,"x":1}}"#).unwrap();
        assert!(!i.client_wants_usage);
        let out: Value = serde_json::from_slice(&i.rewrite("u", true, None).unwrap()).unwrap();
        assert_eq!(
            out["stream_options"],
            json!({"include_usage": true, "x": 1})
        );
    }

    #[test]
    fn client_usage_request_is_remembered() {
        let i = inspect(
            Endpoint::Chat,
            br#"{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert!(i.client_wants_usage && i.stream);
    }

    #[test]
    fn invalid_bodies_name_the_parameter_not_the_value() {
        let cases: &[(&str, Option<&str>)] = &[
            ("{not json", None),
            ("[1,2]", None),
            (r#"{"messages":[]}"#, Some("model")),
            (r#"{"model":42,"messages":[]}"#, Some("model")),
            (r#"{"model":"m"}"#, Some("messages")),
            (
                r#"{"model":"m","messages":"SECRET-CANARY"}"#,
                Some("messages"),
            ),
            (
                r#"{"model":"m","messages":[],"stream":"yes"}"#,
                Some("stream"),
            ),
        ];
        for (body, param) in cases {
            let err = inspect(Endpoint::Chat, body.as_bytes()).err().unwrap();
            assert_eq!(err.param, *param, "{body}");
            assert!(!err.message.contains("SECRET-CANARY"));
        }
    }

    #[test]
    fn completions_and_embeddings_require_their_inputs() {
        assert_eq!(
            inspect(Endpoint::Completions, br#"{"model":"m"}"#)
                .err()
                .unwrap()
                .param,
            Some("prompt")
        );
        assert_eq!(
            inspect(Endpoint::Embeddings, br#"{"model":"m"}"#)
                .err()
                .unwrap()
                .param,
            Some("input")
        );
        assert!(inspect(Endpoint::Embeddings, br#"{"model":"m","input":"x"}"#).is_ok());
    }
}
