//! Token counting for upstreams that report no usage (the count is then marked `estimated`).
//!
//! Uses the o200k BPE vocabulary compiled into the binary (no download), in a compact
//! form of our own (`o200k.rs`). Text passes through here in memory only and is never
//! kept. The first use builds the tables (~0.1 s, ~4 MiB); `warm` does it at start.

mod o200k;

use std::sync::OnceLock;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::gateway::Endpoint;

static BPE: OnceLock<Option<o200k::O200k>> = OnceLock::new();

fn bpe() -> Option<&'static o200k::O200k> {
    BPE.get_or_init(|| match o200k::O200k::load() {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::error!(error = %e, "the token counter's vocabulary did not load; counting ~4 bytes a token");
            None
        }
    })
    .as_ref()
}

/// Builds the vocabulary now rather than on the first request that needs it.
pub fn warm() {
    let _ = bpe();
}

/// Tokens in `text`; falls back to ~4 bytes per token if the vocabulary failed to load.
pub fn count(text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    match bpe() {
        Some(b) => b.count(text),
        None => (text.len() as u64).div_ceil(4),
    }
}

/// Per-message overhead of the chat format (role markers), as OpenAI documents it.
const TOKENS_PER_MESSAGE: u64 = 3;
/// Every reply is primed with `<|start|>assistant<|message|>`.
const TOKENS_REPLY_PRIMING: u64 = 3;

/// A chat request's prompt; also a Messages (`system`) or Responses (`instructions`,
/// `input`) request's, which a request going out natively is estimated from.
#[derive(Deserialize)]
struct ChatIn<'a> {
    #[serde(borrow, default)]
    messages: Vec<&'a RawValue>,
    #[serde(borrow, default)]
    system: Option<&'a RawValue>,
    #[serde(borrow, default)]
    instructions: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct PromptIn<'a> {
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
}

/// Sums the tokens of every string inside a JSON value (numbers in arrays count one each:
/// pre-tokenised prompts).
fn count_json(raw: &RawValue) -> u64 {
    match serde_json::from_str::<serde_json::Value>(raw.get()) {
        Ok(v) => count_value(&v),
        Err(_) => 0,
    }
}

fn count_value(v: &serde_json::Value) -> u64 {
    use serde_json::Value;
    match v {
        Value::String(s) => count(s),
        Value::Number(_) => 1,
        Value::Array(items) => items.iter().map(count_value).sum(),
        Value::Object(map) => map
            .iter()
            // Media and files are not text: an image's base64 is no prompt tokens.
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "type" | "image_url" | "input_audio" | "file" | "file_data" | "source"
                )
            })
            .map(|(_, v)| count_value(v))
            .sum(),
        _ => 0,
    }
}

/// Estimates the prompt tokens of a request body.
pub fn estimate_input(endpoint: Endpoint, body: &[u8]) -> u64 {
    match endpoint {
        Endpoint::Chat => match serde_json::from_slice::<ChatIn<'_>>(body) {
            Ok(chat) => {
                let messages: u64 = chat
                    .messages
                    .iter()
                    .map(|m| TOKENS_PER_MESSAGE + count_json(m))
                    .sum();
                let other: u64 = [chat.system, chat.instructions, chat.input, chat.tools]
                    .into_iter()
                    .flatten()
                    .map(count_json)
                    .sum();
                messages + TOKENS_REPLY_PRIMING + other
            }
            Err(_) => 0,
        },
        // An audio upload is not text; its tokens are known only from the upstream.
        Endpoint::Transcriptions => 0,
        Endpoint::Completions | Endpoint::Embeddings => {
            match serde_json::from_slice::<PromptIn<'_>>(body) {
                Ok(p) => p.prompt.or(p.input).map_or(0, count_json),
                Err(_) => 0,
            }
        }
    }
}

#[derive(Deserialize)]
struct Out<'a> {
    #[serde(borrow, default)]
    choices: Vec<Choice<'a>>,
}

#[derive(Deserialize)]
struct Choice<'a> {
    #[serde(borrow, default)]
    message: Option<Message<'a>>,
    #[serde(borrow, default)]
    text: Option<&'a RawValue>,
}

/// The generated parts of a chat message (the `role` marker is not output).
#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    reasoning_content: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tool_calls: Option<&'a RawValue>,
}

/// Estimates the completion tokens of a non-stream response body.
pub fn estimate_output(body: &[u8]) -> u64 {
    match serde_json::from_slice::<Out<'_>>(body) {
        Ok(out) => out
            .choices
            .iter()
            .map(|c| {
                let message = c.message.as_ref().map_or(0, |m| {
                    [m.content, m.reasoning_content, m.tool_calls]
                        .into_iter()
                        .flatten()
                        .map(count_json)
                        .sum()
                });
                message + c.text.map_or(0, count_json)
            })
            .sum(),
        Err(_) => 0,
    }
}

/// Estimates the output tokens of a transcript: the `text` of a JSON answer, or the whole
/// body of a plain-text, SRT or VTT one.
pub fn estimate_transcript(body: &[u8]) -> u64 {
    #[derive(Deserialize)]
    struct Transcript<'a> {
        #[serde(borrow)]
        text: std::borrow::Cow<'a, str>,
    }
    match serde_json::from_slice::<Transcript<'_>>(body) {
        Ok(t) => count(&t.text),
        Err(_) => count(&String::from_utf8_lossy(body)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_real_text() {
        assert_eq!(count(""), 0);
        assert!(count("Hello world") >= 2);
    }

    #[test]
    fn chat_input_counts_messages_and_overhead() {
        let body = br#"{"model":"m","messages":[{"role":"user","content":"Hello world"}]}"#;
        let n = estimate_input(Endpoint::Chat, body);
        assert_eq!(
            n,
            TOKENS_PER_MESSAGE + count("user") + count("Hello world") + TOKENS_REPLY_PRIMING
        );
    }

    #[test]
    fn a_native_messages_or_responses_body_is_estimated_from_its_own_prompt_fields() {
        let text = count("Be brief.") + count("Hello world");
        // Messages: `system` beside the messages; an image's base64 is not text.
        let messages = br#"{"model":"m","max_tokens":5,"system":"Be brief.","messages":[{"role":"user","content":[{"type":"text","text":"Hello world"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"}}]}]}"#;
        assert_eq!(
            estimate_input(Endpoint::Chat, messages),
            TOKENS_PER_MESSAGE + count("user") + text + TOKENS_REPLY_PRIMING
        );
        // Responses: `instructions` and `input`, a string or items.
        let responses = br#"{"model":"m","instructions":"Be brief.","input":"Hello world"}"#;
        assert_eq!(
            estimate_input(Endpoint::Chat, responses),
            text + TOKENS_REPLY_PRIMING
        );
        let items = br#"{"model":"m","instructions":"Be brief.","input":[{"role":"user","content":[{"type":"input_text","text":"Hello world"}]}]}"#;
        assert_eq!(
            estimate_input(Endpoint::Chat, items),
            count("user") + text + TOKENS_REPLY_PRIMING
        );
    }

    #[test]
    fn completion_output_counts_choices() {
        let body = br#"{"choices":[{"text":" Paris.","index":0}]}"#;
        assert_eq!(estimate_output(body), count(" Paris."));
    }
}
