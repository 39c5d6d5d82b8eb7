//! What the relay reads of one chat chunk, found by the structural scan (`gateway::scan`).
//!
//! Every upstream event of a stream passes here, so it is read in one pass that builds
//! nothing the relay does not need. On the bench's content chunk this takes ~176 ns where
//! the typed serde parse it replaced took ~280–310 ns (`cargo bench --bench hot_path --
//! sse/chunk`; docs/performance.md). A client that wants another format still gets the
//! typed parse, for its encoder.

use crate::gateway::UpstreamUsage;
use crate::gateway::scan::{array, null_at, object, only_space_from, skip, string_at};

/// One chunk's facts: the stream's identity, usage, error, end and content.
#[derive(Debug, Default)]
pub struct Facts<'a> {
    /// `id`, `model` and `created` as written (raw JSON), for a usage chunk of our own.
    pub id: Option<&'a str>,
    pub model: Option<&'a str>,
    pub created: Option<&'a str>,
    /// A `usage` object that parses; `null` or a malformed one is none.
    pub usage: Option<UpstreamUsage>,
    /// `choices` holds at least one choice.
    pub choices: bool,
    /// An `error` member other than `null`: an in-band upstream error.
    pub error: bool,
    /// A choice gave a `finish_reason`.
    pub finish: bool,
    /// The chunk carried text (content, reasoning, a tool call's name or arguments).
    pub content: bool,
}

/// Reads `doc` (one chunk's JSON) and appends every piece of text it carries to `text`, in
/// the order written. `None`, with `text` as it was, when `doc` is not one JSON object or a
/// part the relay reads is malformed.
pub fn read<'a>(doc: &'a str, text: &mut String) -> Option<Facts<'a>> {
    let mark = text.len();
    let facts = scan(doc, text);
    if facts.is_none() {
        text.truncate(mark);
    }
    facts
}

fn scan<'a>(doc: &'a str, text: &mut String) -> Option<Facts<'a>> {
    let s = doc.as_bytes();
    let mut facts = Facts::default();
    let close = object(s, 0, |key, at| {
        let name = key.name();
        if *name == *b"choices" && !null_at(s, at) {
            return array(s, at, |choice| {
                facts.choices = true;
                read_choice(doc, choice, text, &mut facts)
            });
        }
        let end = skip(s, at)?;
        let value = raw(doc, (at, end));
        match &*name {
            b"usage" => facts.usage = UpstreamUsage::read(value.as_bytes()),
            b"error" => facts.error = value != "null",
            b"id" => facts.id = Some(value),
            b"model" => facts.model = Some(value),
            b"created" => facts.created = Some(value),
            _ => {}
        }
        Some(end)
    })?;
    only_space_from(s, close).then_some(facts)
}

/// One element of `choices`: its end, its text and its delta's. Returns where it ends.
fn read_choice(doc: &str, at: usize, text: &mut String, facts: &mut Facts<'_>) -> Option<usize> {
    let s = doc.as_bytes();
    object(s, at, |key, at| match &*key.name() {
        b"finish_reason" => {
            facts.finish |= !null_at(s, at);
            skip(s, at)
        }
        b"text" => piece(doc, at, text, facts),
        b"delta" if !null_at(s, at) => read_delta(doc, at, text, facts),
        _ => skip(s, at),
    })
}

/// A choice's `delta`: content, reasoning (`reasoning_content` as vLLM, SGLang and
/// llama.cpp name it, `reasoning` in newer vLLM) and tool calls' names and arguments.
fn read_delta(doc: &str, at: usize, text: &mut String, facts: &mut Facts<'_>) -> Option<usize> {
    let s = doc.as_bytes();
    object(s, at, |key, at| match &*key.name() {
        b"content" | b"reasoning_content" | b"reasoning" => piece(doc, at, text, facts),
        b"tool_calls" if !null_at(s, at) => array(s, at, |call| read_call(doc, call, text, facts)),
        _ => skip(s, at),
    })
}

/// One tool call of a delta: its function's name and arguments.
fn read_call(doc: &str, at: usize, text: &mut String, facts: &mut Facts<'_>) -> Option<usize> {
    let s = doc.as_bytes();
    object(s, at, |key, at| match &*key.name() {
        b"function" if !null_at(s, at) => object(s, at, |key, at| match &*key.name() {
            b"name" | b"arguments" => piece(doc, at, text, facts),
            _ => skip(s, at),
        }),
        _ => skip(s, at),
    })
}

/// A text value at `doc[at]` (`null` is none), appended to `text`; returns where it ends.
/// `None` when it is not a string.
fn piece(doc: &str, at: usize, text: &mut String, facts: &mut Facts<'_>) -> Option<usize> {
    if null_at(doc.as_bytes(), at) {
        return skip(doc.as_bytes(), at);
    }
    let (value, end) = string_at(doc, at)?;
    facts.content |= !value.is_empty();
    text.push_str(&value);
    Some(end)
}

/// The value at `span` as written (the scan's spans fall on ASCII delimiters).
fn raw(doc: &str, (from, to): (usize, usize)) -> &str {
    doc.get(from..to).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(doc: &str) -> (Option<Facts<'_>>, String) {
        let mut text = String::from("before|");
        let facts = read(doc, &mut text);
        (facts, text)
    }

    #[test]
    fn a_content_chunk_gives_its_text_and_identity() {
        let doc = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"content":"Hi\n"},"logprobs":null,"finish_reason":null}]}"#;
        let (facts, text) = facts(doc);
        let facts = facts.unwrap();
        assert_eq!(text, "before|Hi\n");
        assert!(facts.content && facts.choices);
        assert!(!facts.finish && !facts.error && facts.usage.is_none());
        assert_eq!(
            (facts.id, facts.model, facts.created),
            (Some(r#""chatcmpl-1""#), Some(r#""m""#), Some("7"))
        );
    }

    #[test]
    fn reasoning_tool_calls_and_completion_text_all_count_as_content() {
        let doc = r#"{"choices":[{"delta":{"reasoning":"think ","tool_calls":[{"index":0,"id":"c","function":{"name":"get","arguments":"{\"a\":1}"}},{"function":null}]}},{"text":" done","finish_reason":"stop"}]}"#;
        let (facts, text) = facts(doc);
        let facts = facts.unwrap();
        assert_eq!(text, "before|think get{\"a\":1} done");
        assert!(facts.content && facts.finish);
        let (facts, text) = self::facts(r#"{"choices":[{"delta":{"reasoning_content":"r"}}]}"#);
        assert!(facts.unwrap().content);
        assert_eq!(text, "before|r");
    }

    #[test]
    fn a_usage_chunk_has_usage_and_no_choices() {
        let doc = r#"{"id":"x","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#;
        let (facts, text) = facts(doc);
        let facts = facts.unwrap();
        assert!(!facts.choices && !facts.content);
        let usage = facts.usage.unwrap();
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens),
            (Some(9), Some(3))
        );
        assert_eq!(text, "before|");
        for doc in [r#"{"usage":null}"#, r#"{"usage":{"prompt_tokens":"nine"}}"#] {
            assert!(self::facts(doc).0.unwrap().usage.is_none(), "{doc}");
        }
    }

    #[test]
    fn an_error_member_is_an_error_unless_null() {
        assert!(
            facts(r#"{"error":{"message":"overloaded"}}"#)
                .0
                .unwrap()
                .error
        );
        assert!(!facts(r#"{"error":null,"choices":null}"#).0.unwrap().error);
    }

    #[test]
    fn empty_and_null_pieces_are_not_content() {
        let doc = r#"{"choices":[{"delta":{"role":"assistant","content":""}},{"delta":null},{"delta":{"content":null}}]}"#;
        let (facts, text) = facts(doc);
        let facts = facts.unwrap();
        assert!(facts.choices && !facts.content && !facts.finish);
        assert_eq!(text, "before|");
    }

    #[test]
    fn a_malformed_chunk_gives_nothing_and_leaves_the_text_as_it_was() {
        for doc in [
            "",
            "[DONE]",
            r#"{"choices":[{"delta":{"content":"kept?"}}"#,
            r#"{"choices":[{"delta":{"content":"kept?"}},7]}"#,
            r#"{"choices":[{"delta":{"content":"kept?"}},{"text":1}]}"#,
            r#"{"choices":[{"delta":{"content":"kept?","tool_calls":{}}}]}"#,
            r#"{"choices":"none"}"#,
        ] {
            let (facts, text) = facts(doc);
            assert!(facts.is_none(), "{doc}");
            assert_eq!(text, "before|", "{doc}");
        }
    }

    /// The text of every `data:` chunk of an SSE capture, as the scan reads it and as
    /// serde reads `field` of the first choice; whether a chunk gave a finish or a usage.
    fn read_capture(capture: &str, field: &[&str]) -> (String, String, bool, bool) {
        let (mut scanned, mut parsed) = (String::new(), String::new());
        let (mut finish, mut usage) = (false, false);
        for data in capture
            .lines()
            .filter_map(|line| line.strip_prefix("data: "))
        {
            if data == "[DONE]" {
                continue;
            }
            let facts = read(data, &mut scanned).unwrap();
            finish |= facts.finish;
            usage |= facts.usage.is_some();
            let mut value = &serde_json::from_str::<serde_json::Value>(data).unwrap()["choices"][0];
            for name in field {
                value = &value[name];
            }
            parsed.push_str(value.as_str().unwrap_or_default());
        }
        (scanned, parsed, finish, usage)
    }

    #[test]
    fn a_real_engine_stream_reads_as_its_text() {
        // llama-cpp-python sends no usage chunk even when asked (tests/fixtures/README.md).
        let chat = include_str!("../../../tests/fixtures/chat-stream-include-usage.sse");
        let (scanned, parsed, finish, usage) = read_capture(chat, &["delta", "content"]);
        assert!(!parsed.is_empty());
        assert_eq!(scanned, parsed);
        assert!(finish && !usage);
        let completion = include_str!("../../../tests/fixtures/completion-stream.sse");
        let (scanned, parsed, finish, _) = read_capture(completion, &["text"]);
        assert!(!parsed.is_empty());
        assert_eq!(scanned, parsed);
        assert!(finish);
    }
}
