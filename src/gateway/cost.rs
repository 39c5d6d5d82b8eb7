//! The cost a client sees in its answer: the `x-instagen-cost-usd` header of a whole
//! answer, and `cost`, `cost_usd` and `cost_estimated` added to the usage object it
//! receives (a body's, or a stream's final usage chunk or event).
//!
//! The fields are spliced into the serialized JSON: the rest of the document goes out
//! byte for byte, and the amount is written from integer nano-dollars, never a float.
//! `cost` is a JSON number (as OpenRouter's `usage.cost`) and `cost_usd` the same amount
//! as a string, for clients whose JSON numbers are floats.

use std::borrow::Cow;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::{BufMut, Bytes, BytesMut};

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::body::{Fields, Text};
use crate::usage::Charged;

pub static COST_HEADER: HeaderName = HeaderName::from_static("x-instagen-cost-usd");
pub static ESTIMATED_HEADER: HeaderName = HeaderName::from_static("x-instagen-cost-estimated");

/// The keys this module writes; an upstream's own (say OpenRouter's `cost`, what it
/// charged us) are dropped so the client sees one amount, ours.
const KEYS: [&str; 3] = ["cost", "cost_usd", "cost_estimated"];

/// The cost headers of a whole answer.
pub fn set_headers(headers: &mut HeaderMap, charged: &Charged) {
    if let Ok(v) = HeaderValue::from_str(&charged.cost.to_string()) {
        headers.insert(COST_HEADER.clone(), v);
    }
    headers.insert(
        ESTIMATED_HEADER.clone(),
        HeaderValue::from_static(if charged.estimated { "true" } else { "false" }),
    );
}

/// `doc` with the cost fields in the object at `path` (`["usage"]`, `["response", "usage"]`);
/// `None` when `doc` has no object there, and the caller sends `doc` as it is.
pub fn annotate(doc: &[u8], path: &[&str], charged: &Charged) -> Option<Bytes> {
    annotate_at(doc, object_span(doc, path)?, charged)
}

/// `doc` with the cost fields in its object at `span` (found by `object_span`).
pub fn annotate_at(doc: &[u8], (start, end): (usize, usize), charged: &Charged) -> Option<Bytes> {
    let object = doc.get(start..end)?;
    let Fields(fields) = serde_json::from_slice::<Fields<'_>>(object).ok()?;
    let mut out = BytesMut::with_capacity(doc.len() + 96);
    out.put_slice(&doc[..start]);
    out.put_u8(b'{');
    for (key, value) in fields.iter().filter(|(k, _)| !KEYS.contains(&k.as_ref())) {
        // A borrowed key had no escape, so its text is its JSON; an owned one is escaped
        // again. Values go out exactly as they came.
        match key {
            Cow::Borrowed(k) => {
                out.put_u8(b'"');
                out.put_slice(k.as_bytes());
                out.put_u8(b'"');
            }
            Cow::Owned(k) => out.put_slice(serde_json::to_string(k).ok()?.as_bytes()),
        }
        out.put_u8(b':');
        out.put_slice(value.get().as_bytes());
        out.put_u8(b',');
    }
    put_fields(&mut out, charged);
    out.put_u8(b'}');
    out.put_slice(&doc[end..]);
    Some(out.freeze())
}

/// The cost fields, `"cost":…,"cost_usd":"…","cost_estimated":…`, as the last members
/// of a usage object being written (translations write them this way, with no splice).
pub fn put_fields(out: &mut impl BufMut, charged: &Charged) {
    let text = charged.cost.text();
    let amount = text.as_str();
    out.put_slice(b"\"cost\":");
    out.put_slice(amount.as_bytes());
    out.put_slice(b",\"cost_usd\":\"");
    out.put_slice(amount.as_bytes());
    out.put_slice(b"\",\"cost_estimated\":");
    out.put_slice(if charged.estimated { b"true" } else { b"false" });
}

/// Where the object at `path` lies in `doc`, as a byte range; the last field of a name
/// wins, as in the JSON parsers clients use. One pass over each level, allocating nothing
/// for the fields it skips.
fn object_span(doc: &[u8], path: &[&str]) -> Option<(usize, usize)> {
    let (start, end) = value_span(doc, path)?;
    doc[start..end].starts_with(b"{").then_some((start, end))
}

/// Where the value at `path` lies in `doc` (any JSON value), as a byte range.
pub fn value_span(doc: &[u8], path: &[&str]) -> Option<(usize, usize)> {
    let (mut start, mut end) = (0, doc.len());
    for name in path {
        let here = &doc[start..end];
        let raw = last_field(here, name)?.get();
        // A borrowed raw value is a slice of the document it was read from.
        let offset = (raw.as_ptr() as usize).checked_sub(here.as_ptr() as usize)?;
        if offset + raw.len() > here.len() {
            return None;
        }
        start += offset;
        end = start + raw.len();
    }
    Some((start, end))
}

/// The last field called `name` of the JSON object `doc`; `None` when `doc` is not an
/// object or has no such field.
fn last_field<'a>(doc: &'a [u8], name: &str) -> Option<&'a RawValue> {
    struct Find<'n>(&'n str);
    impl<'de> DeserializeSeed<'de> for Find<'_> {
        type Value = Option<&'de RawValue>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_map(self)
        }
    }
    impl<'de> Visitor<'de> for Find<'_> {
        type Value = Option<&'de RawValue>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut found = None;
            while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                if key == self.0 {
                    found = Some(map.next_value::<&'de RawValue>()?);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(doc);
    let found = Find(name).deserialize(&mut de).ok()?;
    de.end().ok()?;
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::billing::Money;

    fn charged(nanos: i64, estimated: bool) -> Charged {
        Charged {
            cost: Money::from_nanos(nanos),
            estimated,
        }
    }

    #[test]
    fn the_cost_joins_the_usage_object_and_nothing_else_changes() {
        let doc = br#"{"id":"x","usage":{"prompt_tokens":3, "completion_tokens":2},"z":[1]}"#;
        let out = annotate(doc, &["usage"], &charged(1_234_500, false)).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":2,"cost":0.001234500,"cost_usd":"0.001234500","cost_estimated":false},"z":[1]}"#
        );
    }

    #[test]
    fn a_nested_usage_is_found_and_an_upstreams_own_cost_is_replaced() {
        let doc = br#"{"type":"response.completed","response":{"usage":{"cost":9.5,"input_tokens":1}},"usage":{}}"#;
        let out = annotate(doc, &["response", "usage"], &charged(7, true)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["response"]["usage"]["cost_usd"], "0.000000007");
        assert_eq!(v["response"]["usage"]["cost"].to_string(), "7e-9");
        assert_eq!(v["response"]["usage"]["cost_estimated"], true);
        assert_eq!(v["response"]["usage"]["input_tokens"], 1);
        assert_eq!(v["usage"], serde_json::json!({}));
    }

    #[test]
    fn usage_keys_with_escapes_are_written_back_as_valid_json() {
        let doc = br#"{"usage":{"a\"b":1,"caf\u00e9":2,"plain":3}}"#;
        let out = annotate(doc, &["usage"], &charged(5, false)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["usage"]["a\"b"], 1);
        assert_eq!(v["usage"]["café"], 2);
        assert_eq!(v["usage"]["plain"], 3);
        assert_eq!(v["usage"]["cost_usd"], "0.000000005");
    }

    #[test]
    fn a_document_without_usage_is_left_alone() {
        for doc in [
            &br#"{"usage":null}"#[..],
            br#"{"a":1}"#,
            b"not json",
            br#"[1]"#,
        ] {
            assert!(annotate(doc, &["usage"], &charged(1, false)).is_none());
        }
        let out = annotate(br#"{"usage":{}}"#, &["usage"], &charged(0, false)).unwrap();
        assert_eq!(
            &out[..],
            br#"{"usage":{"cost":0.000000000,"cost_usd":"0.000000000","cost_estimated":false}}"#
        );
    }
}
