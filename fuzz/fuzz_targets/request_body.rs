//! Request bodies: inspection never panics, and whatever it accepts rewrites to valid JSON
//! for first and third parties alike.
#![no_main]

use instagen::gateway::{Endpoint, inspect};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for endpoint in [Endpoint::Chat, Endpoint::Completions, Endpoint::Embeddings] {
        let Ok(inspected) = inspect(endpoint, data) else {
            continue;
        };
        for (stream, minimise) in [(false, None), (true, None), (true, Some(endpoint))] {
            if let Ok(out) = inspected.rewrite("upstream", stream, minimise) {
                let v: serde_json::Value =
                    serde_json::from_slice(&out).expect("a rewrite is valid JSON");
                assert_eq!(v["model"], "upstream");
            }
        }
    }
});
