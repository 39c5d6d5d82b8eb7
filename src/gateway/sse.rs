//! Server-Sent Events: an incremental parser for upstream streams, and the framing of
//! the events we send.
//!
//! Bytes arrive in arbitrary pieces; complete events come out as their `data` payload,
//! sliced from the received buffer without copying when an event has one data line.

use bytes::{BufMut, Bytes, BytesMut};

/// The event that ends an OpenAI stream.
pub const DONE: &[u8] = b"data: [DONE]\n\n";

/// One `data:` event carrying `data`.
pub fn frame(data: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(data.len() + 8);
    b.put_slice(b"data: ");
    b.put_slice(data);
    b.put_slice(b"\n\n");
    b.freeze()
}

/// An upstream that never ends an event within this many bytes is broken.
pub const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

#[derive(Default)]
pub struct SseParser {
    buf: BytesMut,
    /// Where to resume looking for an event boundary.
    scanned: usize,
}

#[derive(Debug, PartialEq, Eq)]
pub struct EventTooLarge;

impl SseParser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, chunk: &[u8]) -> Result<(), EventTooLarge> {
        self.buf.extend_from_slice(chunk);
        if self.buf.len() > MAX_EVENT_BYTES {
            return Err(EventTooLarge);
        }
        Ok(())
    }

    /// The data of the next complete event that has any; `None` until more bytes arrive.
    pub fn next_data(&mut self) -> Option<Bytes> {
        self.next_event().map(|e| e.data)
    }

    /// The next complete event that has data; `None` until more bytes arrive.
    pub fn next_event(&mut self) -> Option<Event> {
        loop {
            let (end, sep) = self.boundary()?;
            let block = self.buf.split_to(end + sep).freeze();
            self.scanned = 0;
            if let Some((data, whole)) = data_of(&block, end) {
                let framed = (whole && sep == 2).then_some(block);
                return Some(Event { data, framed });
            }
        }
    }

    /// Finds the first blank line: returns (event length, separator length).
    fn boundary(&mut self) -> Option<(usize, usize)> {
        let b = &self.buf[..];
        let mut i = self.scanned;
        while let Some(p) = b.get(i..).and_then(|rest| memchr::memchr(b'\n', rest)) {
            let n = i + p;
            match (b.get(n + 1), b.get(n + 2)) {
                (Some(b'\n'), _) => return Some((n, 2)),
                (Some(b'\r'), Some(b'\n')) => return Some((n, 3)),
                _ => i = n + 1,
            }
        }
        // Re-scan the last two bytes next time: a separator may straddle pieces.
        self.scanned = b.len().saturating_sub(2);
        None
    }
}

/// One event: its data, and the event as received when it is exactly the framing `frame`
/// would give that data (`data: <data>\n\n`), so an event passed on unchanged needs no copy.
pub struct Event {
    pub data: Bytes,
    pub framed: Option<Bytes>,
}

/// Joins the `data:` lines of the event `block[..end]` (one leading space stripped from
/// each); the flag says the event is that one `data: ` line and nothing else.
fn data_of(block: &Bytes, end: usize) -> Option<(Bytes, bool)> {
    let mut single: Option<Bytes> = None;
    let mut joined: Option<Vec<u8>> = None;
    let mut start = 0;
    let bytes = &block[..end];
    while start <= bytes.len() {
        let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |p| start + p);
        let mut line_end = end;
        if line_end > start && bytes[line_end - 1] == b'\r' {
            line_end -= 1;
        }
        let line = &bytes[start..line_end];
        if let Some(rest) = line.strip_prefix(b"data:") {
            let offset = start + 5 + usize::from(rest.first() == Some(&b' '));
            let value = block.slice(offset..line_end);
            match (&mut single, &mut joined) {
                (None, None) => single = Some(value),
                (Some(first), None) => {
                    let mut v = first.to_vec();
                    v.push(b'\n');
                    v.extend_from_slice(&value);
                    joined = Some(v);
                }
                (_, Some(v)) => {
                    v.push(b'\n');
                    v.extend_from_slice(&value);
                }
            }
        }
        start = end + 1;
    }
    match joined {
        Some(v) => Some((Bytes::from(v), false)),
        None => {
            let data = single?;
            let whole = bytes.starts_with(b"data: ") && data.len() + 6 == bytes.len();
            Some((data, whole))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(parser: &mut SseParser) -> Vec<String> {
        std::iter::from_fn(|| parser.next_data())
            .map(|b| String::from_utf8(b.to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn parses_the_real_llama_cpp_capture() {
        let text = include_str!("../../tests/fixtures/chat-stream-include-usage.sse");
        let mut p = SseParser::new();
        p.push(text.as_bytes()).unwrap();
        let events = all(&mut p);
        assert_eq!(events.last().unwrap(), "[DONE]");
        assert!(events[0].contains("\"role\": \"assistant\""));
        assert!(events.len() > 3);
    }

    #[test]
    fn events_split_across_pieces_at_every_byte() {
        let text = "data: {\"a\":1}\n\ndata: {\"b\":2}\r\n\r\n: comment\n\nevent: x\ndata: l1\ndata: l2\n\ndata: [DONE]\n\n";
        for split in 0..text.len() {
            let mut p = SseParser::new();
            p.push(&text.as_bytes()[..split]).unwrap();
            let mut got = all(&mut p);
            p.push(&text.as_bytes()[split..]).unwrap();
            got.extend(all(&mut p));
            assert_eq!(
                got,
                vec!["{\"a\":1}", "{\"b\":2}", "l1\nl2", "[DONE]"],
                "split at {split}"
            );
        }
    }

    #[test]
    fn an_event_is_passed_on_as_received_only_when_that_is_its_framing() {
        let text = "data: {\"a\":1}\n\ndata:{\"b\":2}\n\ndata: {\"c\":3}\r\n\r\ndata: x\r\n\nevent: y\ndata: z\n\ndata: l1\ndata: l2\n\ndata:  two spaces\n\n";
        let mut p = SseParser::new();
        p.push(text.as_bytes()).unwrap();
        let events: Vec<Event> = std::iter::from_fn(|| p.next_event()).collect();
        let framed: Vec<bool> = events.iter().map(|e| e.framed.is_some()).collect();
        assert_eq!(framed, [true, false, false, false, false, false, true]);
        for e in &events {
            if let Some(f) = &e.framed {
                assert_eq!(f, &frame(&e.data));
            }
        }
    }

    #[test]
    fn refuses_unbounded_events() {
        let mut p = SseParser::new();
        assert_eq!(p.push(&vec![b'x'; MAX_EVENT_BYTES + 1]), Err(EventTooLarge));
    }
}
