//! The cost a client sees in its answer: the `x-instagen-cost-usd` header of a whole
//! answer, and `cost`, `cost_usd` and `cost_estimated` added to the usage object it
//! receives (a body's, or a stream's final usage chunk or event).
//!
//! The fields are spliced into the serialized JSON: the rest of the document goes out
//! byte for byte, and the amount is written from integer nano-dollars, never a float.
//! `cost` is a JSON number (as OpenRouter's `usage.cost`) and `cost_usd` the same amount
//! as a string, for clients whose JSON numbers are floats.

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use bytes::{BufMut, Bytes, BytesMut};

use super::scan;
use crate::usage::Charged;

pub static COST_HEADER: HeaderName = HeaderName::from_static("x-instagen-cost-usd");
pub static ESTIMATED_HEADER: HeaderName = HeaderName::from_static("x-instagen-cost-estimated");

/// The keys this module writes; an upstream's own (say OpenRouter's `cost`, what it
/// charged us) are dropped so the client sees one amount, ours.
const KEYS: [&str; 3] = ["cost", "cost_usd", "cost_estimated"];

/// The cost headers of a whole answer.
pub fn set_headers(headers: &mut HeaderMap, charged: &Charged) {
    if let Ok(v) = HeaderValue::from_str(charged.cost.text().as_str()) {
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

/// `doc` with the cost fields in its object at `span` (found by `value_span`); `None`
/// when that value is not an object. Everything else goes out byte for byte: the fields
/// are written after the object's last member. An upstream's own cost keys (or keys
/// spelled with escapes, which might be them) send it member by member instead, the
/// upstream's keys left out.
pub fn annotate_at(doc: &[u8], (start, end): (usize, usize), charged: &Charged) -> Option<Bytes> {
    let object = doc.get(start..end)?;
    if !(object.starts_with(b"{") && object.ends_with(b"}")) {
        return None;
    }
    if may_hold_our_keys(object) {
        return annotate_members(doc, (start, end), charged);
    }
    // The last member's end: whitespace before the `}` is left out.
    let last = object[..object.len() - 1]
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .map_or(start + 1, |i| start + i + 1);
    let mut out = BytesMut::with_capacity(doc.len() + 96);
    out.put_slice(&doc[..last]);
    if last > start + 1 {
        out.put_u8(b',');
    }
    put_fields(&mut out, charged);
    out.put_u8(b'}');
    out.put_slice(&doc[end..]);
    Some(out.freeze())
}

/// Whether an object's text might hold a key this module writes: `cost` anywhere in it,
/// or an escape (a key may spell it with one).
fn may_hold_our_keys(object: &[u8]) -> bool {
    memchr::memchr(b'\\', object).is_some()
        || memchr::memchr_iter(b'c', object).any(|i| object[i..].starts_with(b"cost"))
}

/// `doc` with the cost fields in its object at `span`, member by member: the object's
/// members go out as they came but for the cost keys this module writes, and the
/// whitespace between them.
fn annotate_members(doc: &[u8], (start, end): (usize, usize), charged: &Charged) -> Option<Bytes> {
    let mut out = BytesMut::with_capacity(doc.len() + 96);
    out.put_slice(doc.get(..start)?);
    out.put_u8(b'{');
    scan::members(doc, (start, end), |key, (from, to)| {
        if !key.is_one_of(&KEYS) {
            out.put_slice(key.raw());
            out.put_u8(b':');
            out.put_slice(&doc[from..to]);
            out.put_u8(b',');
        }
    })?;
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

/// Where the value at `path` lies in `doc` (any JSON value), as a byte range; `doc` and
/// each object on the way must be one JSON object (see `scan`).
pub fn value_span(doc: &[u8], path: &[&str]) -> Option<(usize, usize)> {
    if let [name] = path
        && let Some(span) = scan::last_member(doc, name)
    {
        return Some(span);
    }
    let mut span = (0, doc.len());
    for name in path {
        let mut found = None;
        scan::members(doc, span, |key, value| {
            if key.is_one_of(&[name]) {
                found = Some(value);
            }
        })?;
        span = found?;
    }
    Some(span)
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
            r#"{"id":"x","usage":{"prompt_tokens":3, "completion_tokens":2,"cost":0.001234500,"cost_usd":"0.001234500","cost_estimated":false},"z":[1]}"#
        );
        // Whitespace before the object's close is left out; an empty object gets no comma.
        let out = annotate(b"{\"usage\":{\"a\":1 \n}}", &["usage"], &charged(1, true)).unwrap();
        assert_eq!(
            &out[..],
            br#"{"usage":{"a":1,"cost":0.000000001,"cost_usd":"0.000000001","cost_estimated":true}}"#
        );
        let out = annotate(b"{\"usage\": { } }", &["usage"], &charged(1, true)).unwrap();
        assert_eq!(
            &out[..],
            br#"{"usage": {"cost":0.000000001,"cost_usd":"0.000000001","cost_estimated":true} }"#
        );
    }

    #[test]
    fn keys_near_ours_are_kept_and_ours_replaced() {
        let doc = br#"{"usage":{"cost_details":{"x":1},"cost":2,"cache_read":3}}"#;
        let out = annotate(doc, &["usage"], &charged(4, false)).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"usage":{"cost_details":{"x":1},"cache_read":3,"cost":0.000000004,"cost_usd":"0.000000004","cost_estimated":false}}"#
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
    fn the_last_usage_of_a_document_is_the_one_found() {
        let doc = br#"{"usage":{"a":1}, "x":"\"usage\":{}", "usage" : {"b":2} }"#;
        let (start, end) = value_span(doc, &["usage"]).unwrap();
        assert_eq!(&doc[start..end], br#"{"b":2}"#);
        let out = annotate(doc, &["usage"], &charged(3, false)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["usage"]["b"], 2);
        assert_eq!(v["usage"]["cost_usd"], "0.000000003");
    }

    #[test]
    fn an_escaped_cost_key_of_the_upstream_is_dropped_too() {
        let doc = br#"{"usage":{"co\u0073t":9,"n":1}}"#;
        let out = annotate(doc, &["usage"], &charged(3, false)).unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"usage":{"n":1,"cost":0.000000003,"cost_usd":"0.000000003","cost_estimated":false}}"#
        );
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
