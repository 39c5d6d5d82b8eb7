//! Structural JSON scanning: where an object's members lie, found without building what
//! is skipped.
//!
//! Every whole answer is searched for its `usage` object, and its cost is spliced in there.
//! serde's walk over the rest (`IgnoredAny`) cost ~5.7 k instructions for a short chat
//! answer and a typed parse of the usage object's members ~3 k more; this scan skips
//! strings with `memchr` and containers by counting brackets (docs/performance.md). Every
//! request body's nesting is checked the same way before it is parsed (`nested_deeper`).
//!
//! It checks structure (strings, brackets, separators), not each token's grammar: a
//! document it accepts may still hold a malformed number or a stray bracket inside a
//! value. Such a value is passed through as the upstream wrote it, and the usage object
//! taken from it is parsed by serde, which refuses it.

use std::borrow::Cow;

/// Calls `each(raw key, value range)` for every member of the object that spans
/// `doc[start..end]` (whitespace around it allowed), in order. The raw key is the key as
/// written, quotes and escapes included. `None` when that range is not one object.
pub fn members(
    doc: &[u8],
    (start, end): (usize, usize),
    mut each: impl FnMut(&[u8], (usize, usize)),
) -> Option<()> {
    let s = doc.get(..end)?;
    let mut i = space(s, start);
    if *s.get(i)? != b'{' {
        return None;
    }
    i = space(s, i + 1);
    if *s.get(i)? == b'}' {
        return (space(s, i + 1) == end).then_some(());
    }
    loop {
        if *s.get(i)? != b'"' {
            return None;
        }
        let key_start = i;
        let key_end = string_end(s, i)?;
        i = space(s, key_end);
        if *s.get(i)? != b':' {
            return None;
        }
        let value = space(s, i + 1);
        let value_end = value_end(s, value)?;
        each(&s[key_start..key_end], (value, value_end));
        i = space(s, value_end);
        match *s.get(i)? {
            b',' => i = space(s, i + 1),
            b'}' => return (space(s, i + 1) == end).then_some(()),
            _ => return None,
        }
    }
}

/// Whether a raw key (quotes included) is `name`, unescaping it only when it holds an
/// escape (`"us\u0061ge"` is `usage`).
pub fn key_is(raw: &[u8], name: &str) -> bool {
    key_in(raw, &[name])
}

/// Whether a raw key (quotes included) is one of `names`; looked at for an escape once.
pub fn key_in(raw: &[u8], names: &[&str]) -> bool {
    let inner = raw.get(1..raw.len().saturating_sub(1)).unwrap_or_default();
    if !inner.contains(&b'\\') {
        return names.iter().any(|name| inner == name.as_bytes());
    }
    serde_json::from_slice::<Cow<'_, str>>(raw).is_ok_and(|key| names.contains(&&*key))
}

/// Whether `body` opens more than `max` arrays and objects at once, strings skipped (a
/// body that is not JSON is left for its parse to refuse). Every request body is checked
/// before it is parsed; strings, most of a prompt's bytes, go by `memchr`.
pub fn nested_deeper(body: &[u8], max: usize) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    loop {
        while let Some(&b) = body.get(i)
            && !STRUCTURAL[usize::from(b)]
        {
            i += 1;
        }
        match body.get(i) {
            None => return false,
            Some(b'"') => match string_end(body, i) {
                Some(end) => i = end,
                None => return false,
            },
            Some(b'{' | b'[') => {
                depth += 1;
                if depth > max {
                    return true;
                }
                i += 1;
            }
            Some(_) => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
        }
    }
}

/// The first byte at or after `i` that is not JSON whitespace.
fn space(s: &[u8], mut i: usize) -> usize {
    while let Some(b' ' | b'\t' | b'\n' | b'\r') = s.get(i) {
        i += 1;
    }
    i
}

/// Just past the string that opens at `s[i]` (a `"`), skipping escaped characters.
fn string_end(s: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        let k = j + memchr::memchr2(b'"', b'\\', s.get(j..)?)?;
        if s[k] == b'"' {
            return Some(k + 1);
        }
        j = k + 2;
    }
}

/// The bytes that matter inside a container: string quotes and brackets.
const STRUCTURAL: [bool; 256] = {
    let mut table = [false; 256];
    table[b'"' as usize] = true;
    table[b'{' as usize] = true;
    table[b'}' as usize] = true;
    table[b'[' as usize] = true;
    table[b']' as usize] = true;
    table
};

/// Just past the value that starts at `s[i]`.
fn value_end(s: &[u8], i: usize) -> Option<usize> {
    match *s.get(i)? {
        b'"' => string_end(s, i),
        b'{' | b'[' => {
            let (mut depth, mut j) = (0usize, i);
            loop {
                while !STRUCTURAL[usize::from(*s.get(j)?)] {
                    j += 1;
                }
                match s[j] {
                    b'"' => {
                        j = string_end(s, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        b',' | b'}' | b']' | b':' => None,
        // A number, `true`, `false` or `null`: up to the next delimiter.
        _ => {
            let rest = &s[i..];
            let len = rest
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
                .unwrap_or(rest.len());
            Some(i + len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
    use serde_json::value::RawValue;

    /// The members as (key, value) text, or `None` (the scan's view of `doc`).
    fn scanned(doc: &str) -> Option<Vec<(String, String)>> {
        let mut out = Vec::new();
        members(doc.as_bytes(), (0, doc.len()), |key, (from, to)| {
            let key: String = serde_json::from_slice(key).unwrap();
            out.push((key, doc[from..to].to_owned()));
        })?;
        Some(out)
    }

    /// The same through serde: the reference the scan must agree with on valid JSON.
    fn parsed(doc: &str) -> Option<Vec<(String, String)>> {
        struct All;
        impl<'de> DeserializeSeed<'de> for All {
            type Value = Vec<(String, String)>;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_map(self)
            }
        }
        impl<'de> Visitor<'de> for All {
            type Value = Vec<(String, String)>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value = map.next_value::<&'de RawValue>()?;
                    out.push((key, value.get().to_owned()));
                }
                Ok(out)
            }
        }
        let mut de = serde_json::Deserializer::from_str(doc);
        let out = All.deserialize(&mut de).ok()?;
        de.end().ok()?;
        Some(out)
    }

    #[test]
    fn members_are_found_in_order_with_their_values_as_written() {
        let doc =
            r#" { "id" : "x\"}" , "n":-1.5e3,"usage":{"a":[1,{"b":"]"}]},"t":true,"z":null } "#;
        assert_eq!(
            scanned(doc).unwrap(),
            [
                ("id", r#""x\"}""#),
                ("n", "-1.5e3"),
                ("usage", r#"{"a":[1,{"b":"]"}]}"#),
                ("t", "true"),
                ("z", "null"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        assert_eq!(scanned("{}").unwrap(), []);
    }

    #[test]
    fn what_is_not_one_object_is_refused() {
        for doc in [
            "",
            "[1]",
            "\"usage\"",
            "{",
            "{\"a\":1",
            "{\"a\":1,}",
            "{\"a\"}",
            "{\"a\":}",
            "{a:1}",
            "{\"a\":1} x",
            "{\"a\":1}{}",
            "{\"a\":\"unterminated}",
            "{\"a\":[1,2}",
            "{\"a\":\"\\",
        ] {
            assert!(scanned(doc).is_none(), "{doc:?}");
        }
    }

    #[test]
    fn an_escaped_key_is_compared_unescaped() {
        assert!(key_is(br#""usage""#, "usage"));
        assert!(key_is(br#""us\u0061ge""#, "usage"));
        assert!(!key_is(br#""usage2""#, "usage"));
        assert!(!key_is(br#""us\"age""#, "usage"));
        assert!(!key_is(b"\"", "usage"));
    }

    /// Any JSON value, with keys that collide, hold escapes and nest.
    fn json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            (-1e6f64..1e6).prop_map(serde_json::Value::from),
            "[a-z\"\\\\{}\\[\\],: é\n]{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                proptest::collection::vec(("usage|cost|a\"b|[a-z]{1,3}", inner), 0..6)
                    .prop_map(|members| serde_json::Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// The byte-by-byte depth check the scan replaced: its reference.
    fn nested_deeper_bytewise(body: &[u8], max: usize) -> bool {
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        for &b in body {
            if in_string {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_string = true,
                b'{' | b'[' => {
                    depth += 1;
                    if depth > max {
                        return true;
                    }
                }
                b'}' | b']' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        false
    }

    #[test]
    fn depth_counts_brackets_outside_strings_only() {
        assert!(!nested_deeper(br#"{"a":"[[[[[[","b":[{}]}"#, 3));
        assert!(nested_deeper(br#"{"a":[[1]]}"#, 2));
        assert!(!nested_deeper(br#"{"a":"\"[[[[","b":1}"#, 1));
        assert!(!nested_deeper(b"{\"unterminated [[[[", 1));
        assert!(!nested_deeper(b"]]]][", 1));
    }

    proptest! {
        #[test]
        fn the_depth_check_agrees_with_a_byte_loop(
            body in "[\\[\\]{}\"\\\\a ]{0,40}",
            max in 0usize..6,
        ) {
            prop_assert_eq!(
                nested_deeper(body.as_bytes(), max),
                nested_deeper_bytewise(body.as_bytes(), max)
            );
        }

        #[test]
        fn on_valid_json_the_scan_agrees_with_serde(
            members in proptest::collection::vec(("usage|cost|[a-z]{1,3}", json()), 0..8),
            pretty in any::<bool>(),
        ) {
            let object = serde_json::Value::Object(members.into_iter().collect());
            let doc = match pretty {
                true => serde_json::to_string_pretty(&object).unwrap(),
                false => serde_json::to_string(&object).unwrap(),
            };
            prop_assert_eq!(scanned(&doc), parsed(&doc));
        }
    }
}
