//! JSON strings written byte for byte as serde_json writes them, copied whole when no byte
//! in them needs escaping (ids, names, labels and most text), so serde_json's escape loop
//! runs only for the strings that need it.

/// Whether serde_json writes `s` between its quotes as it is: it holds no control byte,
/// quote or backslash (serde_json escapes nothing else, non-ASCII text and DEL included).
pub fn is_plain(s: &str) -> bool {
    // Folded without an early exit, so the check runs over many bytes at once.
    s.bytes().fold(true, |plain, b| {
        plain & (b >= 0x20) & (b != b'"') & (b != b'\\')
    })
}

/// Writes `s` as a JSON string, byte for byte what `serde_json::to_writer(out, s)` writes.
pub fn write_str<W: std::io::Write + ?Sized>(out: &mut W, s: &str) -> std::io::Result<()> {
    if is_plain(s) {
        out.write_all(b"\"")?;
        out.write_all(s.as_bytes())?;
        out.write_all(b"\"")
    } else {
        serde_json::to_writer(out, s).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn written(s: &str) -> Vec<u8> {
        let mut out = Vec::new();
        write_str(&mut out, s).unwrap();
        out
    }

    #[test]
    fn plain_strings_are_copied_and_the_rest_escaped_as_serde_json_does() {
        for s in [
            "",
            "gpt-4o-mini",
            "h\u{e9}llo \u{1f600}",
            "\u{7f}",
            "a\"b",
            "a\\b",
            "line\nbreak",
            "\u{0}\u{1f}",
            "</script>",
        ] {
            assert_eq!(written(s), serde_json::to_vec(s).unwrap(), "{s:?}");
        }
        assert!(is_plain("h\u{e9}llo \u{7f}"));
        assert!(!is_plain("tab\there"));
    }

    proptest! {
        #[test]
        fn a_string_is_written_as_serde_json_writes_it(s in "(\\PC|[\\x00-\\x1f\"\\\\\u{7f}])*") {
            prop_assert_eq!(written(&s), serde_json::to_vec(&s).unwrap());
        }
    }
}
