//! Relays an upstream SSE stream to the client, chunk by chunk, metering as it flows.
//!
//! Each upstream event is forwarded as soon as it is complete. The usage chunk we
//! asked the upstream for is passed on only if the client asked for it too. When the
//! upstream finishes, the record is committed *before* the final `data: [DONE]`; if the
//! upstream fails mid-stream the client gets an SSE error event and the stream ends;
//! if the client goes away, `Drop` records what was generated so far and dropping the
//! upstream response closes that connection, cancelling the generation.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::Stream;
use tokio::time::{Instant, Sleep};

use super::provider::EventTranslator;
use super::sse::{DONE, SseParser, frame};
use super::wire::{Chunk, Wire};
use super::{Endpoint, cost};
use crate::usage::{Meter, TokenCounts, tokens};

pub mod chunk;

pub struct Relay {
    upstream: super::provider::ByteStream,
    /// Exact counts so far from the built-in engine, used if the stream ends early.
    live: Option<std::sync::Arc<crate::engine::LiveCounts>>,
    parser: SseParser,
    meter: Meter,
    /// The client's request body, kept (refcounted, in memory) to count prompt tokens
    /// if the upstream reports no usage.
    request: Bytes,
    endpoint: Endpoint,
    client_wants_usage: bool,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    out: VecDeque<Bytes>,
    usage: Option<TokenCounts>,
    /// Set when the event being handled carried the upstream's usage.
    fresh_usage: bool,
    /// A chat client that asked for usage got the upstream's usage chunk.
    usage_sent: bool,
    /// The stream's `id`, `model` and `created`, for a usage chunk of our own when the
    /// upstream sends none (kept only when the client asked for usage).
    head: Option<(String, String, u64)>,
    /// Reported counts past this are not billed (see `Route::token_bound`).
    token_bound: u64,
    /// Resolves when the key stops being usable (see `AuthedKey::revoked`).
    revoked: Pin<Box<tokio_util::sync::WaitForCancellationFutureOwned>>,
    /// Output text seen so far, for counting when the upstream reports no usage.
    text: String,
    saw_done: bool,
    saw_finish: bool,
    upstream_ended: bool,
    finished: bool,
    /// Keeps the route's in-flight count for the life of the stream.
    _in_flight: super::routing::InFlight,
    /// Turns another wire format's events into OpenAI chunks (Anthropic, native Responses).
    translator: Option<EventTranslator>,
    /// Reused buffers: the upstream's events as chunks, and the client's events.
    translator_out: Vec<Bytes>,
    translated: Vec<Bytes>,
    /// What the client is sent.
    client: ClientWire,
    /// A native stream's closing event, sent once the record is committed.
    held: Option<Bytes>,
    /// Concurrency leases (client IP, key) held until the stream ends.
    leases: Vec<crate::limits::Lease>,
    /// The finished record's journal write, awaited before the stream's last bytes go out
    /// (with the records of requests finishing meanwhile, in one write).
    journaled: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    /// Where the first token is on its way out.
    first: FirstToken,
}

/// The first token's way out: it leaves on its own, not behind the rest of its burst.
#[derive(Clone, Copy, PartialEq, Eq)]
enum FirstToken {
    /// No event with content yet.
    Waiting,
    /// The event just handled had the first content: what is queued goes out now.
    Queued,
    /// It was handed to the server; the stream yields once so that the server writes it
    /// before the rest of the burst is handled (and, at the stream's end, journaled).
    Handed,
    Sent,
}

/// What the client is sent of the stream.
pub(crate) enum ClientWire {
    /// OpenAI chat chunks, as they come (or as translated from the upstream's format).
    Chat,
    /// Chat chunks turned into the client's format (Responses or Messages events).
    Encode(super::wire::Encoder),
    /// The upstream's own events, the client's format too (Anthropic to a Messages
    /// client, a native Responses provider to a Responses client), re-framed by name.
    Native(super::wire::Wire),
}

impl Relay {
    pub(crate) fn new(
        parts: super::StreamParts,
        meter: Meter,
        request: Bytes,
        endpoint: Endpoint,
    ) -> Self {
        let super::StreamParts {
            body,
            live,
            client_wants_usage,
            idle_timeout: idle,
            in_flight,
            translator,
            client,
            token_bound,
            revoked,
        } = parts;
        Self {
            upstream: body,
            live,
            parser: SseParser::new(),
            meter,
            request,
            endpoint,
            client_wants_usage,
            idle,
            idle_timer: Box::pin(tokio::time::sleep(idle)),
            out: VecDeque::with_capacity(4),
            usage: None,
            fresh_usage: false,
            usage_sent: false,
            head: None,
            token_bound,
            revoked: Box::pin(revoked.cancelled_owned()),
            text: String::new(),
            saw_done: false,
            saw_finish: false,
            upstream_ended: false,
            finished: false,
            _in_flight: in_flight,
            translator,
            translator_out: Vec::new(),
            translated: Vec::new(),
            client,
            held: None,
            leases: Vec::new(),
            journaled: None,
            first: FirstToken::Waiting,
        }
    }

    /// Keeps concurrency leases until the stream ends (or the client leaves).
    pub fn hold_all(&mut self, a: Option<crate::limits::Lease>, b: Option<crate::limits::Lease>) {
        self.leases.extend(a.into_iter().chain(b));
    }

    /// Tokens so far: the upstream's usage if it sent one, else our count.
    fn counts(&self) -> TokenCounts {
        use std::sync::atomic::Ordering::Relaxed;
        match (self.usage, &self.live) {
            (Some(u), _) => u,
            (None, Some(live)) => TokenCounts {
                input: live.prompt.load(Relaxed),
                output: live.output.load(Relaxed),
                ..TokenCounts::default()
            },
            (None, None) => {
                let output = tokens::count(&self.text);
                // What the upstream already reported (an Anthropic stream's prompt counts
                // come first) is billed as reported; only the rest is our estimate.
                let reported = self
                    .translator
                    .as_ref()
                    .and_then(EventTranslator::reported_so_far)
                    .and_then(|u| self.meter.admit_reported(u.counts(), self.token_bound));
                match reported {
                    Some(r) => TokenCounts {
                        output: r.output.max(output),
                        reasoning: 0,
                        estimated: true,
                        ..r
                    },
                    None => TokenCounts {
                        input: tokens::estimate_input(self.endpoint, &self.request),
                        output,
                        estimated: true,
                        ..TokenCounts::default()
                    },
                }
            }
        }
    }

    /// One chat chunk (from the upstream, or translated from its format); `framed` is the
    /// event as received when that is exactly `frame(data)`, passed on without a copy.
    fn on_event(&mut self, data: Bytes, framed: Option<Bytes>) {
        if &data[..] == b"[DONE]" {
            self.saw_done = true;
            return;
        }
        let mut forward = true;
        let mut content = false;
        // One UTF-8 check of the event; the scan and serde read its strings without one each.
        let doc = std::str::from_utf8(&data).ok();
        if let Some(facts) = doc.and_then(|doc| chunk::read(doc, &mut self.text)) {
            if self.head.is_none() && self.client_wants_usage {
                let text = |v: Option<&str>| {
                    v.and_then(|raw| serde_json::from_str::<String>(raw).ok())
                        .unwrap_or_default()
                };
                self.head = Some((
                    text(facts.id),
                    text(facts.model),
                    facts
                        .created
                        .and_then(|raw| raw.parse::<u64>().ok())
                        .unwrap_or(0),
                ));
            }
            if let Some(u) = facts.usage
                && u.prompt_tokens.is_some()
            {
                if let Some(counts) = self.meter.admit_reported(u.counts(), self.token_bound) {
                    self.usage = Some(counts);
                }
                self.fresh_usage = true;
                forward = self.client_wants_usage || facts.choices;
            }
            if facts.error {
                // An in-band upstream error: pass it on, the stream is over.
                if matches!(self.client, ClientWire::Chat) {
                    self.out.push_back(frame(&data));
                }
                self.fail("upstream_stream_error");
                return;
            }
            self.saw_finish |= facts.finish;
            content = facts.content;
            // Another format's encoder reads the chunk typed.
            if let ClientWire::Encode(encoder) = &mut self.client
                && let Some(chunk) = doc.and_then(|doc| serde_json::from_str::<Chunk<'_>>(doc).ok())
            {
                let mut events = std::mem::take(&mut self.translated);
                encoder.on_chunk(&chunk, &mut events);
                self.out.extend(events.drain(..));
                self.translated = events;
            }
        }
        if content && self.first == FirstToken::Waiting {
            self.meter.first_token();
            self.first = FirstToken::Queued;
        }
        if forward && matches!(self.client, ClientWire::Chat) {
            // The usage chunk shows the cost the record will carry.
            let with_cost = match self.fresh_usage {
                true => cost::annotate(&data, &["usage"], &self.meter.quote(self.counts())),
                false => None,
            };
            self.usage_sent |= self.fresh_usage;
            self.out.push_back(match (with_cost, framed) {
                (Some(with_cost), _) => frame(&with_cost),
                (None, Some(framed)) => framed,
                (None, None) => frame(&data),
            });
        }
    }

    /// An upstream event of the client's own format goes out as it came (the one with the
    /// final usage showing its cost), but the closing one waits for the record (see
    /// `complete`).
    fn pass_native(&mut self, data: &Bytes, wire: Wire) {
        if self.saw_done && !self.finished {
            self.held = Some(data.clone());
            return;
        }
        let with_cost = match self.fresh_usage {
            true => cost::annotate(data, usage_path(wire), &self.meter.quote(self.counts())),
            false => None,
        };
        self.out.push_back(super::wire::native_event(
            with_cost.as_ref().unwrap_or(data),
        ));
    }

    /// An error event in the client's format; `status` picks Anthropic's error type.
    fn error_event(&mut self, status: u16, code: &str, message: &str) {
        let mut events = std::mem::take(&mut self.translated);
        match &mut self.client {
            ClientWire::Chat => {
                let event = serde_json::json!({
                    "error": {"message": message, "type": "upstream_error", "param": null, "code": code}
                });
                events.push(frame(event.to_string().as_bytes()));
            }
            ClientWire::Encode(encoder) => encoder.fail(status, code, message, &mut events),
            ClientWire::Native(Wire::Messages) => {
                let body = super::wire::messages::error_body(status, message);
                events.push(super::wire::named_event(
                    "error",
                    body.to_string().as_bytes(),
                ));
            }
            ClientWire::Native(_) => {
                let body = serde_json::json!({"type": "error", "code": code, "message": message, "param": null});
                events.push(super::wire::named_event(
                    "error",
                    body.to_string().as_bytes(),
                ));
            }
        }
        self.out.extend(events.drain(..));
        self.translated = events;
    }

    /// The upstream is done: commit the record, then send the final `[DONE]`.
    fn complete(&mut self) {
        if self.saw_done || self.saw_finish {
            let counts = self.counts();
            let charged = self.meter.quote(counts);
            if let Some(durable) = self.meter.finish_durable(200, None, counts) {
                self.journaled = Some(Box::pin(durable.written()));
            }
            match &mut self.client {
                ClientWire::Chat => {
                    if self.client_wants_usage && !self.usage_sent {
                        let chunk = self.own_usage_chunk(counts, &charged);
                        self.out.push_back(frame(&chunk));
                    }
                    self.out.push_back(Bytes::from_static(DONE));
                }
                ClientWire::Encode(encoder) => {
                    let mut events = std::mem::take(&mut self.translated);
                    encoder.finish(counts, &charged, &mut events);
                    self.out.extend(events.drain(..));
                    self.translated = events;
                }
                ClientWire::Native(wire) => {
                    if let Some(last) = self.held.take() {
                        let with_cost = cost::annotate(&last, usage_path(*wire), &charged);
                        self.out.push_back(super::wire::native_event(
                            with_cost.as_ref().unwrap_or(&last),
                        ));
                    }
                }
            }
            self.finished = true;
        } else {
            self.fail("upstream_stream_interrupted");
        }
    }

    /// The usage chunk a client asked for when the upstream sent none: our counts, their
    /// cost, labelled estimated.
    fn own_usage_chunk(&self, counts: TokenCounts, charged: &crate::usage::Charged) -> Bytes {
        let (id, model, created) = self.head.clone().unwrap_or_default();
        let object = match self.endpoint {
            Endpoint::Completions => "text_completion",
            _ => "chat.completion.chunk",
        };
        let doc = serde_json::json!({
            "id": id, "object": object, "created": created, "model": model, "choices": [],
            "usage": {"prompt_tokens": counts.input, "completion_tokens": counts.output,
                      "total_tokens": counts.input + counts.output},
        })
        .to_string();
        cost::annotate(doc.as_bytes(), &["usage"], charged).unwrap_or_else(|| Bytes::from(doc))
    }

    /// Ends the stream with an SSE error event after recording what was used.
    fn fail(&mut self, kind: &'static str) {
        let counts = self.counts();
        self.meter.finish(502, Some(kind), counts);
        let message = match kind {
            "upstream_idle_timeout" => "the upstream stopped sending data (idle timeout)",
            "upstream_stream_error" => "the upstream reported an error during the stream",
            _ => "the upstream stream ended unexpectedly",
        };
        // An upstream's own error event has been passed on already (or translated).
        if kind != "upstream_stream_error" || matches!(self.client, ClientWire::Encode(_)) {
            self.error_event(502, kind, message);
        }
        self.finished = true;
    }
}

impl Relay {
    /// The key stopped being usable mid-stream (disabled, deleted, its account suspended or
    /// erased): bill what was generated, tell the client why, end the stream.
    fn revoke(&mut self) {
        let counts = self.counts();
        let error = crate::error::ApiError::AccessRevoked;
        self.meter
            .finish(error.status().as_u16(), Some(error.kind()), counts);
        match self.client {
            ClientWire::Chat => self
                .out
                .push_back(frame(error.body().to_string().as_bytes())),
            _ => {
                let message = error.body()["error"]["message"]
                    .as_str()
                    .unwrap_or("access revoked")
                    .to_owned();
                self.error_event(error.status().as_u16(), error.kind(), &message);
            }
        }
        self.finished = true;
    }
}

/// Where a native event of `wire` carries its usage: a Messages `message_delta`'s
/// `usage`, a Responses `response.completed`'s `response.usage`.
fn usage_path(wire: Wire) -> &'static [&'static str] {
    match wire {
        Wire::Responses => &["response", "usage"],
        _ => &["usage"],
    }
}

/// Everything queued for the client as one buffer (no copy when there is only one).
fn take_all(out: &mut VecDeque<Bytes>) -> Option<Bytes> {
    match out.len() {
        0 => None,
        1 => out.pop_front(),
        _ => {
            let mut buf = BytesMut::with_capacity(out.iter().map(Bytes::len).sum());
            for b in out.drain(..) {
                buf.put_slice(&b);
            }
            Some(buf.freeze())
        }
    }
}

impl Stream for Relay {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.first == FirstToken::Handed {
                this.first = FirstToken::Sent;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            // Handle every event already received, then send them as one write: nothing
            // waits for more input, and a burst from the upstream costs one syscall. The
            // first token is the exception: it leaves as soon as it is handled.
            while !this.finished
                && this.first != FirstToken::Queued
                && let Some(event) = this.parser.next_event()
            {
                let data = event.data;
                this.fresh_usage = false;
                match &mut this.translator {
                    None => this.on_event(data, event.framed),
                    Some(t) => {
                        let mut events = std::mem::take(&mut this.translator_out);
                        t.on_event(&data, &mut events);
                        for e in events.drain(..) {
                            if !this.finished {
                                this.on_event(e, None);
                            }
                        }
                        this.translator_out = events;
                        if let ClientWire::Native(wire) = this.client {
                            this.pass_native(&data, wire);
                        }
                    }
                }
            }
            if this.first == FirstToken::Queued {
                // Nothing queued (the event was not the client's to see): no yield owed.
                this.first = FirstToken::Sent;
                if let Some(b) = take_all(&mut this.out) {
                    this.first = FirstToken::Handed;
                    return Poll::Ready(Some(Ok(b)));
                }
            }
            if !this.finished && (this.upstream_ended || this.saw_done) {
                this.complete();
            }
            if let Some(journaled) = &mut this.journaled {
                if journaled.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.journaled = None;
            }
            if let Some(b) = take_all(&mut this.out) {
                return Poll::Ready(Some(Ok(b)));
            }
            if this.finished {
                // Read the upstream's end-of-body if it is already here, so its connection
                // goes back to the pool instead of being closed; never wait for it.
                while !this.upstream_ended {
                    match this.upstream.as_mut().poll_next(cx) {
                        Poll::Ready(Some(Ok(_))) => {}
                        Poll::Ready(None) => this.upstream_ended = true,
                        Poll::Ready(Some(Err(_))) | Poll::Pending => break,
                    }
                }
                return Poll::Ready(None);
            }
            match this.upstream.as_mut().poll_next(cx) {
                Poll::Ready(Some(Ok(bytes))) => {
                    if this.parser.push(&bytes).is_err() {
                        this.fail("upstream_protocol_error");
                    }
                    let deadline = Instant::now() + this.idle;
                    this.idle_timer.as_mut().reset(deadline);
                }
                Poll::Ready(Some(Err(_))) => this.fail("upstream_stream_interrupted"),
                Poll::Ready(None) => this.upstream_ended = true,
                Poll::Pending => {
                    if this.idle_timer.as_mut().poll(cx).is_ready() {
                        this.fail("upstream_idle_timeout");
                        continue;
                    }
                    if this.revoked.as_mut().poll(cx).is_ready() {
                        this.revoke();
                        continue;
                    }
                    return Poll::Pending;
                }
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if !self.meter.is_finished() {
            // The client went away mid-stream: bill what was generated so far.
            let counts = self.counts();
            self.meter.finish(499, Some("client_closed"), counts);
        }
    }
}
