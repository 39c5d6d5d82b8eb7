//! Structural JSON scanning: where an object's members lie, found without building what
//! is skipped.
//!
//! Every whole answer is searched for its `usage` object, and its cost is spliced in there.
//! serde's walk over the rest (`IgnoredAny`) cost ~5.7 k instructions for a short chat
//! answer and a typed parse of the usage object's members ~3 k more; this scan skips
//! strings with `memchr` and containers by counting brackets (docs/performance.md). Every
//! request body's nesting is checked the same way before it is parsed (`nested_deeper`).
//! Every chunk of a stream is read in one pass (`object`, `array`): the relay descends
//! into the parts it needs and skips the rest.
//!
//! It checks structure (strings, brackets, separators), not each token's grammar: a
//! document it accepts may still hold a malformed number or a stray bracket inside a
//! value. Such a value is passed through as the upstream wrote it, and the usage object
//! taken from it is parsed by serde, which refuses it.

use std::borrow::Cow;

/// Calls `each(key, value range)` for every member of the object that spans
/// `doc[start..end]` (whitespace around it allowed), in order. `None` when that range is
/// not one object.
pub fn members(
    doc: &[u8],
    (start, end): (usize, usize),
    mut each: impl FnMut(Key<'_>, (usize, usize)),
) -> Option<()> {
    let s = doc.get(..end)?;
    let close = object(s, start, |key, value| {
        let value_end = skip(s, value)?;
        each(key, (value, value_end));
        Some(value_end)
    })?;
    (space(s, close) == end).then_some(())
}

/// Where the value of the object's first member named `name` lies, the object opening at
/// `doc[0]` (whitespace before it allowed); what follows that member is not read. `None`
/// when no such member comes before the scan stops (the object ends, or is not one).
pub fn first_member(doc: &[u8], name: &str) -> Option<(usize, usize)> {
    let mut found = None;
    // Stopped (with `None`) at the member sought: the walk's own result is not wanted.
    let _ = object(doc, 0, |key, value| {
        let end = skip(doc, value)?;
        if key.is_one_of(&[name]) {
            found = Some((value, end));
            return None;
        }
        Some(end)
    });
    found
}

/// Where the value of the document's last top-level member named `name` lies, found from
/// the end without walking what comes before it: answers put `usage` last or nearly, after
/// the choices or content, which a walk from the start has to step through.
///
/// The last `name` in the text is taken as that member's key when it is quoted (the quote
/// before it not escaped), a `:` follows, and the members after its value close the
/// document: nothing but whitespace follows that `}`. In a document that is JSON, a key
/// whose object closes last is a member of the outermost object, and no later member has
/// that name (one spelled with escapes sends the caller back to the walk). `None` when any
/// of that does not hold, and the caller walks the object from the start (`members`).
pub fn last_member(doc: &[u8], name: &str) -> Option<(usize, usize)> {
    // From the end by the name's rarest letter (`g` of `usage`: the counts' keys before it
    // hold many a `u`); a reverse `memmem` cost ~650 instructions more on a short answer.
    let (offset, rare) = rarest_letter(name.as_bytes())?;
    let name_at = memchr::memrchr_iter(rare, doc)
        .filter_map(|i| i.checked_sub(offset))
        .find(|&i| doc[i..].starts_with(name.as_bytes()))?;
    let quote = name_at.checked_sub(1)?;
    let after = name_at + name.len();
    if doc[quote] != b'"' || doc.get(after) != Some(&b'"') || doc[..quote].ends_with(b"\\") {
        return None;
    }
    let colon = space(doc, after + 1);
    if *doc.get(colon)? != b':' {
        return None;
    }
    let value = space(doc, colon + 1);
    let value_end = skip(doc, value)?;
    let mut i = space(doc, value_end);
    loop {
        match *doc.get(i)? {
            b'}' => return only_space_from(doc, i + 1).then_some((value, value_end)),
            b',' => {
                let (key, value) = member_key(doc, space(doc, i + 1))?;
                if key.is_one_of(&[name]) {
                    return None;
                }
                i = space(doc, skip(doc, value)?);
            }
            _ => return None,
        }
    }
}

/// The byte of `name` that is searched for, and where it sits in `name`: its rarest
/// letter by English frequency (keys are English words), else its first byte.
fn rarest_letter(name: &[u8]) -> Option<(usize, u8)> {
    const COMMON_FIRST: &[u8] = b"etaoinshrdlcumwfgypbvkjxqz";
    let rarity = |b: u8| {
        COMMON_FIRST
            .iter()
            .position(|&c| c == b)
            .map_or(0, |r| r + 1)
    };
    name.iter()
        .copied()
        .enumerate()
        .max_by_key(|&(i, b)| (rarity(b), std::cmp::Reverse(i)))
}

/// Walks the object that opens at `s[at]` (whitespace before it allowed) in one pass:
/// `each(key, value start)` reads or skips each member's value and returns where it
/// ends. Returns just past the object's `}`; `None` when it is not one object.
pub fn object(
    s: &[u8],
    at: usize,
    mut each: impl FnMut(Key<'_>, usize) -> Option<usize>,
) -> Option<usize> {
    container(s, at, (b'{', b'}'), |i| {
        let (key, value) = member_key(s, i)?;
        each(key, value)
    })
}

/// The key of the member that starts at `s[i]`, and where its value starts (past the `:`
/// and whitespace); `None` when no key and `:` are there.
fn member_key(s: &[u8], i: usize) -> Option<(Key<'_>, usize)> {
    if *s.get(i)? != b'"' {
        return None;
    }
    let (key_end, escaped) = string_scan(s, i)?;
    let key = Key {
        raw: &s[i..key_end],
        escaped,
    };
    let colon = space(s, key_end);
    if *s.get(colon)? != b':' {
        return None;
    }
    Some((key, space(s, colon + 1)))
}

/// Walks the array that opens at `s[at]` (whitespace before it allowed) in one pass:
/// `each(element start)` reads or skips each element and returns where it ends. Returns
/// just past the array's `]`; `None` when it is not one array.
pub fn array(s: &[u8], at: usize, each: impl FnMut(usize) -> Option<usize>) -> Option<usize> {
    container(s, at, (b'[', b']'), each)
}

/// The comma-separated entries between `open` at `s[at]` and its `close`; `each(start)`
/// reads one entry (an object's member, key and all) and returns where it ends.
fn container(
    s: &[u8],
    at: usize,
    (open, close): (u8, u8),
    mut each: impl FnMut(usize) -> Option<usize>,
) -> Option<usize> {
    let mut i = space(s, at);
    if *s.get(i)? != open {
        return None;
    }
    i = space(s, i + 1);
    if *s.get(i)? == close {
        return Some(i + 1);
    }
    loop {
        i = space(s, each(i)?);
        match *s.get(i)? {
            b',' => i = space(s, i + 1),
            b if b == close => return Some(i + 1),
            _ => return None,
        }
    }
}

/// Whether nothing but whitespace follows `doc[at..]`.
pub fn only_space_from(doc: &[u8], at: usize) -> bool {
    space(doc, at) == doc.len()
}

/// Whether the value at `doc[at]` is `null`.
pub fn null_at(doc: &[u8], at: usize) -> bool {
    doc.get(at..at + 4) == Some(b"null")
}

/// The string value that starts at `doc[at]`, unescaped (borrowed unless the scan met an
/// escape in it), and just past its end. `None` when that value is not a string.
pub fn string_at(doc: &str, at: usize) -> Option<(Cow<'_, str>, usize)> {
    if doc.as_bytes().get(at) != Some(&b'"') {
        return None;
    }
    let (end, escaped) = string_scan(doc.as_bytes(), at)?;
    let value = match escaped {
        false => Cow::Borrowed(doc.get(at + 1..end - 1)?),
        true => Cow::Owned(serde_json::from_str::<String>(doc.get(at..end)?).ok()?),
    };
    Some((value, end))
}

/// A member's key as the scan found it.
#[derive(Clone, Copy)]
pub struct Key<'a> {
    raw: &'a [u8],
    escaped: bool,
}

impl<'a> Key<'a> {
    /// The key as written, quotes and escapes included.
    pub fn raw(self) -> &'a [u8] {
        self.raw
    }

    /// The key's name: borrowed unless it holds an escape, unescaped then
    /// (`"us\u0061ge"` is `usage`); empty when it does not parse.
    pub fn name(self) -> Cow<'a, [u8]> {
        if !self.escaped {
            let inner = self.raw.get(1..self.raw.len().saturating_sub(1));
            return Cow::Borrowed(inner.unwrap_or_default());
        }
        serde_json::from_slice::<String>(self.raw)
            .map_or(Cow::Borrowed(&[]), |name| Cow::Owned(name.into_bytes()))
    }

    /// Whether the key's name is one of `names`.
    pub fn is_one_of(self, names: &[&str]) -> bool {
        let name = self.name();
        names.iter().any(|n| *name == *n.as_bytes())
    }
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
    string_scan(s, i).map(|(end, _)| end)
}

/// Just past the string that opens at `s[i]` (a `"`), and whether it holds an escape.
fn string_scan(s: &[u8], i: usize) -> Option<(usize, bool)> {
    let mut j = i + 1;
    let mut escaped = false;
    loop {
        let k = j + memchr::memchr2(b'"', b'\\', s.get(j..)?)?;
        if s[k] == b'"' {
            return Some((k + 1, escaped));
        }
        escaped = true;
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

/// Just past the value that starts at `s[i]`, skipped without reading it.
pub fn skip(s: &[u8], i: usize) -> Option<usize> {
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
            let key: String = serde_json::from_slice(key.raw()).unwrap();
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

    /// The elements as text, or `None` (the scan's view of an array).
    fn scanned_elements(doc: &str) -> Option<Vec<String>> {
        let mut out = Vec::new();
        let close = array(doc.as_bytes(), 0, |at| {
            let end = skip(doc.as_bytes(), at)?;
            out.push(doc[at..end].to_owned());
            Some(end)
        })?;
        only_space_from(doc.as_bytes(), close).then_some(out)
    }

    #[test]
    fn array_elements_are_found_in_order_as_written() {
        let doc = r#" [ 1 , "a]\"" ,{"b":[2,"]"]}, [], null ] "#;
        assert_eq!(
            scanned_elements(doc).unwrap(),
            ["1", r#""a]\"""#, r#"{"b":[2,"]"]}"#, "[]", "null"]
        );
        assert_eq!(scanned_elements("[]").unwrap(), Vec::<String>::new());
        for doc in [
            "", "{}", "[", "[1", "[1,]", "[,1]", "[1 2]", "[1] x", "[\"a]",
        ] {
            assert!(scanned_elements(doc).is_none(), "{doc:?}");
        }
    }

    #[test]
    fn a_string_value_is_unescaped_and_anything_else_is_not_a_string() {
        let doc = r#"["plain","a\nb\u00e9\"",1,null,{"x":"y"}]"#;
        let mut spans = Vec::new();
        array(doc.as_bytes(), 0, |at| {
            let end = skip(doc.as_bytes(), at)?;
            spans.push((at, end));
            Some(end)
        })
        .unwrap();
        let strings: Vec<_> = spans
            .iter()
            .map(|&(at, end)| {
                let (value, value_end) = string_at(doc, at)?;
                assert_eq!(value_end, end);
                Some(value)
            })
            .collect();
        assert!(matches!(strings[0], Some(Cow::Borrowed("plain"))));
        assert_eq!(strings[1].as_deref(), Some("a\nb\u{e9}\""));
        assert!(strings[2..].iter().all(Option::is_none));
    }

    #[test]
    fn an_escaped_key_is_compared_unescaped() {
        let doc = br#"{"usage":1,"us\u0061ge":2,"usage2":3,"us\"age":4,"\u00e9":5,"\ud800":6}"#;
        let mut keys = Vec::new();
        members(doc, (0, doc.len()), |key, _| {
            keys.push((key.is_one_of(&["usage"]), key.name().into_owned()));
        })
        .unwrap();
        let names = [
            &b"usage"[..],
            b"usage",
            b"usage2",
            b"us\"age",
            "é".as_bytes(),
            b"",
        ];
        assert_eq!(
            keys.iter().map(|(is, _)| *is).collect::<Vec<_>>(),
            [true, true, false, false, false, false]
        );
        assert_eq!(
            keys.iter().map(|(_, name)| &name[..]).collect::<Vec<_>>(),
            names
        );
    }

    #[test]
    fn the_first_member_named_is_found_and_nothing_after_it_read() {
        let doc = br#" {"messages":[{"model":"inner"}],"model":"m\"x","model":"second", oops"#;
        let (start, end) = first_member(doc, "model").expect("found");
        assert_eq!(&doc[start..end], br#""m\"x""#);
        // Keys with escapes count; an object without the member, or no object, has none.
        let escaped = br#"{"mod\u0065l":"m"}"#;
        assert_eq!(first_member(escaped, "model"), Some((14, 17)));
        assert_eq!(first_member(br#"{"max_tokens":5}"#, "model"), None);
        assert_eq!(first_member(br#"["model","m"]"#, "model"), None);
        assert_eq!(first_member(br#"{"a":"unterminated"#, "model"), None);
    }

    /// The last top-level member named `name`, walked from the start: `last_member`'s
    /// reference.
    fn walked_last(doc: &[u8], name: &str) -> Option<(usize, usize)> {
        let mut found = None;
        members(doc, (0, doc.len()), |key, value| {
            if key.is_one_of(&[name]) {
                found = Some(value);
            }
        })?;
        found
    }

    #[test]
    fn a_name_is_searched_for_by_its_rarest_letter() {
        assert_eq!(rarest_letter(b"usage"), Some((3, b'g')));
        assert_eq!(rarest_letter(b"model"), Some((0, b'm')));
        assert_eq!(rarest_letter(b"_1"), Some((0, b'_')));
        assert_eq!(rarest_letter(b""), None);
    }

    #[test]
    fn the_last_member_is_found_from_the_end_or_left_to_the_walk() {
        fn found(doc: &str) -> Option<&str> {
            last_member(doc.as_bytes(), "usage").map(|(s, e)| &doc[s..e])
        }
        // Last, or followed by other members: found from the end.
        assert_eq!(
            found(r#"{"choices":[{"usage":1}],"usage":{"n":1}}"#),
            Some(r#"{"n":1}"#)
        );
        assert_eq!(
            found(r#"{"usage":{"a":1}, "usage" : {"b":2} , "fp":"x","n":null } "#),
            Some(r#"{"b":2}"#)
        );
        // Anything the end does not settle is left to the walk (`None` here).
        for doc in [
            r#"{"usage":{"a":1},"note":"no usage"}"#,
            r#"{"usage":{"a":1},"x":{"usage":{"b":2}}}"#,
            r#"{"usage":{"a":1},"x":[{"usage":{"b":2}}]}"#,
            r#"{"usage":{"a":1},"x":"\"usage\":{}"}"#,
            r#"{"usage":{"a":1},"us\u0061ge":{"b":2}}"#,
            r#"[{"usage":{}}]"#,
            r#"{"usage":{}} x"#,
            r#"{"usage":{}"#,
            r#"{"a":"usage"}"#,
        ] {
            assert_eq!(found(doc), None, "{doc}");
        }
        // where the walk finds them
        let doc = br#"{"usage":{"a":1},"x":{"usage":{"b":2}}}"#;
        assert_eq!(walked_last(doc, "usage"), Some((9, 16)));
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
        fn on_valid_arrays_the_element_scan_agrees_with_serde(
            items in proptest::collection::vec(json(), 0..8),
            pretty in any::<bool>(),
        ) {
            let array = serde_json::Value::Array(items);
            let doc = match pretty {
                true => serde_json::to_string_pretty(&array).unwrap(),
                false => serde_json::to_string(&array).unwrap(),
            };
            let parsed = serde_json::from_str::<Vec<&RawValue>>(&doc)
                .unwrap()
                .iter()
                .map(|raw| raw.get().to_owned())
                .collect::<Vec<_>>();
            prop_assert_eq!(scanned_elements(&doc), Some(parsed));
        }

        #[test]
        fn any_string_reads_back_as_written(text in "(?s).{0,24}") {
            let doc = serde_json::to_string(&text).unwrap();
            let read = string_at(&doc, 0);
            prop_assert_eq!(read.as_ref().map(|(value, _)| &**value), Some(text.as_str()));
            prop_assert_eq!(read.map(|(_, end)| end), Some(doc.len()));
        }

        #[test]
        fn a_member_found_from_the_end_is_the_one_the_walk_finds(
            members in proptest::collection::vec(
                (r#"usage|us\\u0061ge|note|[a-z]{1,3}"#, json()),
                0..6,
            ),
            pretty in any::<bool>(),
        ) {
            let text = |v: &serde_json::Value| match pretty {
                true => serde_json::to_string_pretty(v).unwrap(),
                false => serde_json::to_string(v).unwrap(),
            };
            let doc = format!(
                "{{{}}}",
                members
                    .iter()
                    .map(|(key, value)| format!("\"{key}\": {}", text(value)))
                    .collect::<Vec<_>>()
                    .join(",\n")
            );
            let walked = walked_last(doc.as_bytes(), "usage");
            if let Some(span) = last_member(doc.as_bytes(), "usage") {
                prop_assert_eq!(Some(span), walked);
            }
            // The common shape, `usage` last: always found from the end.
            let head = match members.is_empty() {
                true => "{".to_owned(),
                false => format!("{},", &doc[..doc.len() - 1]),
            };
            let last = format!("{head}\"usage\":{{\"n\":1}}}}");
            let (start, end) = last_member(last.as_bytes(), "usage").expect("found");
            prop_assert_eq!(&last[start..end], r#"{"n":1}"#);
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
