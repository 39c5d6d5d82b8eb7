//! The Anthropic translation: requests, answers and stream events never panic, and what
//! comes out is valid JSON.
#![no_main]

use instagen::gateway::anthropic_translation::{
    StreamTranslator, translate_request, translate_response,
};
use instagen::gateway::{Endpoint, inspect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(inspected) = inspect(Endpoint::Chat, data)
        && let Ok(out) = translate_request(&inspected, "claude", true, 1024)
    {
        let _: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON request");
    }
    if let Some(out) = translate_response(data) {
        let _: serde_json::Value = serde_json::from_slice(&out).expect("valid JSON answer");
    }
    let mut t = StreamTranslator::default();
    let mut out = Vec::new();
    for line in data.split(|b| *b == b'\n') {
        t.on_event(line, &mut out);
    }
    for chunk in out {
        if chunk.as_ref() != b"[DONE]" {
            let _: serde_json::Value = serde_json::from_slice(&chunk).expect("valid JSON chunk");
        }
    }
});
