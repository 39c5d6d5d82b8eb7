//! SSE parsing: never panics, and yields the same events however the bytes are split.
#![no_main]

use instagen::gateway::sse::SseParser;
use libfuzzer_sys::fuzz_target;

fn events(pieces: &[&[u8]]) -> Vec<Vec<u8>> {
    let mut p = SseParser::new();
    let mut out = Vec::new();
    for piece in pieces {
        if p.push(piece).is_err() {
            return out;
        }
        while let Some(d) = p.next_data() {
            out.push(d.to_vec());
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let (split, body) = match data.split_first() {
        Some((s, rest)) => (usize::from(*s).max(1), rest),
        None => return,
    };
    let whole = events(&[body]);
    let pieces: Vec<&[u8]> = body.chunks(split).collect();
    assert_eq!(events(&pieces), whole, "splitting changed the events");
});
