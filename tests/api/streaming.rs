//! Streaming: flushing, usage chunks, estimation for engines without usage, cuts and aborts.

use std::time::Duration;

use futures_util::StreamExt;
use mock_upstream::Script;
use serde_json::{Value, json};

use crate::helpers::*;

fn stream_body(include_usage: Option<bool>) -> Value {
    let mut b = json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": "one two three"}]});
    if let Some(u) = include_usage {
        b["stream_options"] = json!({"include_usage": u});
    }
    b
}

fn content_of(events: &[String]) -> String {
    events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|v| {
            v["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect()
}

#[tokio::test]
async fn stream_is_relayed_and_upstream_is_always_asked_for_usage() {
    let app = TestApp::spawn().await;
    let resp = app.chat(&stream_body(None)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = sse_events(resp).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    assert_eq!(content_of(&events), "Hello from the mock upstream.");
    assert!(
        !events.iter().any(|e| e.contains("\"usage\":{")),
        "client did not ask for usage"
    );
    assert_eq!(
        app.mock.requests()[0].json()["stream_options"]["include_usage"],
        true
    );

    let r = &app.records(1).await[0];
    assert!(r.stream && !r.estimated);
    assert_eq!((r.status, r.input_tokens, r.output_tokens), (200, 3, 5));
    assert_eq!(r.cost_nanos, test_cost(3, 0, 5));
    assert!(r.ttft_us.is_some());
}

#[tokio::test]
async fn usage_chunk_reaches_the_client_only_when_it_asked() {
    let app = TestApp::spawn().await;
    let events = sse_events(app.chat(&stream_body(Some(true))).await).await;
    let usage: Vec<Value> = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter(|v| v["usage"].is_object())
        .collect();
    assert_eq!(usage.len(), 1);
    assert_eq!(usage[0]["usage"]["completion_tokens"], 5);
    assert_eq!(events.last().unwrap(), "[DONE]");

    let events = sse_events(app.chat(&stream_body(Some(false))).await).await;
    assert!(!events.iter().any(|e| e.contains("\"usage\":{")));
    app.records(2).await;
}

#[tokio::test]
async fn real_llama_cpp_stream_without_usage_is_counted_and_marked_estimated() {
    let app = TestApp::spawn().await;
    let capture = include_str!("../fixtures/chat-stream-include-usage.sse");
    app.mock.push(Script {
        raw_sse: Some(bytes::Bytes::from_static(capture.as_bytes())),
        ..Default::default()
    });
    let events = sse_events(app.chat(&stream_body(Some(true))).await).await;
    assert_eq!(events.last().unwrap(), "[DONE]");
    let text = content_of(&events);
    assert!(text.starts_with("L'Étoile"), "{text}");
    let r = &app.records(1).await[0];
    assert!(
        r.estimated,
        "engine sent no usage: our count, marked estimated"
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.output_tokens, instagen::usage::tokens::count(&text));
    assert!(r.input_tokens > 0);
    assert_eq!(r.cost_nanos, test_cost(r.input_tokens, 0, r.output_tokens));
}

#[tokio::test]
async fn chunks_are_flushed_as_they_arrive() {
    let app = TestApp::spawn().await;
    app.mock.push(Script {
        chunk_delay: Duration::from_millis(300),
        ..Default::default()
    });
    let resp = app.chat(&stream_body(None)).await;
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("Hello") {
        let chunk = body.next().await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    // The first word reached us while the upstream was still generating the rest.
    assert_eq!(app.mock.completed_streams(), 0);
    while body.next().await.is_some() {}
    assert_eq!(app.mock.completed_streams(), 1);
}

#[tokio::test]
async fn upstream_cut_mid_stream_ends_with_an_error_event_and_bills_what_was_sent() {
    let app = TestApp::spawn().await;
    app.mock.push(Script {
        cut_after_chunks: Some(2),
        ..Default::default()
    });
    let events = sse_events(app.chat(&stream_body(None)).await).await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_interrupted");
    assert!(!events.contains(&"[DONE]".to_owned()));
    assert_eq!(content_of(&events), "Hello from");
    let r = &app.records(1).await[0];
    assert_eq!(
        (r.status, r.error_kind.as_deref()),
        (502, Some("upstream_stream_interrupted"))
    );
    assert!(r.estimated);
    assert_eq!(
        r.output_tokens,
        instagen::usage::tokens::count("Hello from")
    );
    assert!(r.cost_nanos > 0);
}

#[tokio::test]
async fn client_disconnect_cancels_upstream_and_bills_tokens_so_far() {
    let app = TestApp::spawn().await;
    app.mock.push(Script {
        chunk_delay: Duration::from_millis(200),
        reply: mock_upstream::words("a b c d e f g h i j k l m n o p"),
        ..Default::default()
    });
    let resp = app.chat(&stream_body(None)).await;
    let mut body = resp.bytes_stream();
    let mut seen = String::new();
    while !seen.contains("\" b\"") {
        let chunk = body.next().await.unwrap().unwrap();
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    drop(body);
    let r = &app.records(1).await[0];
    assert_eq!(
        (r.status, r.error_kind.as_deref()),
        (499, Some("client_closed"))
    );
    assert!(
        r.output_tokens >= 2 && r.output_tokens < 16,
        "billed for what was generated: {}",
        r.output_tokens
    );
    assert!(r.cost_nanos > 0);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while app.mock.cancelled_streams() == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        app.mock.cancelled_streams(),
        1,
        "upstream saw the connection closed"
    );
    assert_eq!(app.mock.completed_streams(), 0);
}

#[tokio::test]
async fn upstream_idle_timeout_ends_the_stream_with_an_error_event() {
    let app = TestApp::spawn_with(|c| c.providers[0].idle_timeout_ms = 200).await;
    app.mock.push(Script {
        chunk_delay: Duration::from_millis(2_000),
        ..Default::default()
    });
    let events = sse_events(app.chat(&stream_body(None)).await).await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_idle_timeout");
    let r = &app.records(1).await[0];
    assert_eq!(r.error_kind.as_deref(), Some("upstream_idle_timeout"));
}
