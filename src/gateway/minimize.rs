//! What a third-party provider may receive of a request: an allow-list at every level.
//!
//! A provider marked `third_party` gets only the fields a request needs — at the top and
//! inside messages, content parts, tool calls, tools and response formats (stream options
//! shrink to `include_usage`, in `body.rs`)
//! — so a `user`, a `metadata`, or an unknown field nested anywhere never leaves. The
//! body is re-read strictly: a key given twice at any level is refused (the gateway and
//! the provider must not read two different requests). Self-hosted engines get the
//! client's fields as sent (`body.rs`), without this cost. Not for: top-level field
//! selection per endpoint (`body.rs` decides which top-level fields exist).

use std::cell::RefCell;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The shape of an allowed value: anything (a string, a number, a JSON schema, a token
/// map), or an object whose listed fields are kept (an array applies it to each element;
/// a string or number passes as it is, as `content` may be a string or a list of parts).
pub(crate) enum Shape {
    Any,
    Fields(&'static [(&'static str, &'static Shape)]),
}

use Shape::{Any, Fields};

static ANY: Shape = Any;
static FUNCTION_CALL: Shape = Fields(&[("name", &ANY), ("arguments", &ANY)]);
static TOOL_CALL: Shape = Fields(&[("id", &ANY), ("type", &ANY), ("function", &FUNCTION_CALL)]);
static IMAGE_URL: Shape = Fields(&[("url", &ANY), ("detail", &ANY)]);
static INPUT_AUDIO: Shape = Fields(&[("data", &ANY), ("format", &ANY)]);
static FILE: Shape = Fields(&[("file_data", &ANY), ("file_id", &ANY)]);
static PART: Shape = Fields(&[
    ("type", &ANY),
    ("text", &ANY),
    ("refusal", &ANY),
    ("image_url", &IMAGE_URL),
    ("input_audio", &INPUT_AUDIO),
    ("file", &FILE),
]);
pub(crate) static MESSAGE: Shape = Fields(&[
    ("role", &ANY),
    ("content", &PART),
    ("name", &ANY),
    ("refusal", &ANY),
    ("tool_calls", &TOOL_CALL),
    ("tool_call_id", &ANY),
    ("function_call", &FUNCTION_CALL),
]);
static FUNCTION_DEF: Shape = Fields(&[
    ("name", &ANY),
    ("description", &ANY),
    ("parameters", &ANY),
    ("strict", &ANY),
]);
pub(crate) static TOOL: Shape = Fields(&[("type", &ANY), ("function", &FUNCTION_DEF)]);
static NAME_ONLY: Shape = Fields(&[("name", &ANY)]);
pub(crate) static TOOL_CHOICE: Shape = Fields(&[("type", &ANY), ("function", &NAME_ONLY)]);
static JSON_SCHEMA: Shape = Fields(&[
    ("name", &ANY),
    ("description", &ANY),
    ("schema", &ANY),
    ("strict", &ANY),
]);
pub(crate) static RESPONSE_FORMAT: Shape = Fields(&[("type", &ANY), ("json_schema", &JSON_SCHEMA)]);
pub(crate) static PREDICTION: Shape = Fields(&[("type", &ANY), ("content", &PART)]);
pub(crate) static AUDIO: Shape = Fields(&[("voice", &ANY), ("format", &ANY)]);
pub(crate) static OPAQUE: Shape = Any;

/// Re-reads `raw` strictly and keeps what `shape` allows.
pub(crate) fn minimise(raw: &str, shape: &Shape) -> Result<Value, MinimiseError> {
    let duplicate = RefCell::new(None);
    let mut de = serde_json::Deserializer::from_str(raw);
    let value = Strict(&duplicate)
        .deserialize(&mut de)
        .and_then(|v| de.end().map(|()| v));
    match (value, duplicate.into_inner()) {
        (_, Some(key)) => Err(MinimiseError::Duplicate(key)),
        (Ok(v), None) => Ok(prune(v, shape)),
        (Err(_), None) => Err(MinimiseError::Invalid),
    }
}

#[derive(Debug)]
pub(crate) enum MinimiseError {
    /// The key (cut to 64 bytes) given twice in one object.
    Duplicate(String),
    Invalid,
}

fn prune(value: Value, shape: &Shape) -> Value {
    match (value, shape) {
        (v, Any) => v,
        (Value::Array(items), shape) => {
            Value::Array(items.into_iter().map(|v| prune(v, shape)).collect())
        }
        (Value::Object(map), Fields(fields)) => {
            let mut kept = Map::with_capacity(map.len().min(fields.len()));
            for (key, v) in map {
                if let Some((_, inner)) = fields.iter().find(|(name, _)| *name == key) {
                    kept.insert(key, prune(v, inner));
                }
            }
            Value::Object(kept)
        }
        (v, Fields(_)) => v,
    }
}

/// Reads a JSON value refusing duplicate keys at every depth; the first duplicate's key
/// (cut to 64 bytes) is left in the cell, as data, for the caller.
#[derive(Clone, Copy)]
struct Strict<'a>(&'a RefCell<Option<String>>);

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let v = map.next_value_seed(self)?;
            if out.contains_key(&key) {
                let cut = key[..key.floor_char_boundary(64)].to_owned();
                self.0.replace(Some(cut));
                return Err(de::Error::custom("duplicate key"));
            }
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_fields_outside_the_allow_list_never_leave() {
        let messages = json!([
            {"role": "user", "content": "hi", "zzz": "secret", "user_id": 7},
            {"role": "user", "content": [
                {"type": "text", "text": "look", "cache_control": {"x": 1}, "zzz": 1},
                {"type": "image_url", "image_url": {"url": "data:..", "detail": "low", "zzz": 1}}
            ]},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}", "zzz": 1}, "zzz": 1}
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "42", "metadata": {"who": "me"}}
        ]);
        let out = minimise(&messages.to_string(), &MESSAGE).unwrap();
        let text = out.to_string();
        for leaked in ["zzz", "user_id", "cache_control", "metadata", "secret"] {
            assert!(!text.contains(leaked), "{leaked} leaked: {text}");
        }
        assert_eq!(out[1]["content"][1]["image_url"]["detail"], "low");
        assert_eq!(out[2]["tool_calls"][0]["function"]["name"], "f");
        assert_eq!(out[3]["tool_call_id"], "c1");
        // A tool's JSON schema passes whole: it is the request's meaning.
        let tools = json!([{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"zzz": {"type": "string"}}}}, "zzz": 1}]);
        let out = minimise(&tools.to_string(), &TOOL).unwrap();
        assert!(out[0].get("zzz").is_none());
        assert!(out[0]["function"]["parameters"]["properties"]["zzz"].is_object());
    }

    #[test]
    fn a_key_given_twice_at_any_depth_is_refused() {
        let err =
            minimise(r#"[{"role":"user","content":"a","content":"b"}]"#, &MESSAGE).unwrap_err();
        assert!(
            matches!(err, MinimiseError::Duplicate(ref k) if k == "content"),
            "{err:?}"
        );
        assert!(minimise(r#"{"a":{"b":1,"b":2}}"#, &OPAQUE).is_err());
        assert!(minimise(r#"{"a":{"b":1,"c":2}}"#, &OPAQUE).is_ok());
    }
}
