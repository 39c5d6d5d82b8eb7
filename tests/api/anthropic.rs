//! The Anthropic provider: chat completions translated to the Messages API and back,
//! with tools, streams, usage (cache reads included), the provider's credential and
//! nothing of the client's, and failover from an overloaded Anthropic route.

use mock_upstream::{MockUpstream, Script};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::routing::{mock_then_backup, provider};

const KEY: &str = "sk-ant-test-0123456789";

/// The test model served by the app's mock speaking the Messages API, with a key from a file.
async fn spawn() -> TestApp {
    TestApp::spawn_with(|c| anthropic_provider(c, KEY)).await
}

#[tokio::test]
async fn anthropic_chat_round_trips_with_the_provider_key_and_nothing_of_the_client() {
    let app = spawn().await;
    app.mock.push(Script {
        cached_tokens: Some(2),
        ..Script::reply("Paris is the capital.")
    });
    let resp = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&app.key)
        .header("x-forwarded-for", "203.0.113.9")
        .header("cookie", "session=abc")
        .json(&json!({
            "model": MODEL, "user": "alice@example.com", "metadata": {"customer": "alice"},
            "seed": 3, "max_tokens": 50, "temperature": 0.2,
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "What is the capital of France?"}
            ]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Paris is the capital."
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    // 5 + 3 prompt words (2 of them cache reads), 4 reply words.
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13,
               "prompt_tokens_details": {"cached_tokens": 2, "cache_write_tokens": 0,
                                         "cache_write_1h_tokens": 0},
               // 7 × 0.20 + 2 × 0.10 + 4 × 0.30 µ$.
               "cost": 2.8e-6, "cost_usd": "0.000002800", "cost_estimated": false})
    );

    let seen = &app.mock.requests()[0];
    assert_eq!(seen.path, "/v1/messages");
    assert_eq!(seen.header("x-api-key"), Some(KEY));
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    for h in ["authorization", "x-forwarded-for", "cookie"] {
        assert_eq!(seen.header(h), None, "{h} must not reach the provider");
    }
    assert_eq!(
        seen.json(),
        json!({
            "model": UPSTREAM_MODEL,
            "system": [{"type": "text", "text": "You are terse."}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]}],
            "max_tokens": 50,
            "temperature": 0.2
        }),
        "exactly what the Messages API needs: no user, metadata or seed"
    );
    let r = &app.records(1).await[0];
    assert_eq!(
        (
            r.status,
            r.input_tokens,
            r.cached_input_tokens,
            r.output_tokens
        ),
        (200, 9, 2, 4)
    );
    assert!(!r.estimated);
    assert_eq!(r.cost_nanos, test_cost(9, 2, 4));
}

#[tokio::test]
async fn anthropic_tool_calls_round_trip_json_and_streamed() {
    let app = spawn().await;
    let request = |stream: bool| {
        json!({
            "model": MODEL, "stream": stream, "stream_options": {"include_usage": true},
            "messages": [
                {"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "call_0", "type": "function",
                    "function": {"name": "weather", "arguments": "{\"city\":\"Lyon\"}"}}]},
                {"role": "tool", "tool_call_id": "call_0", "content": "rain"}
            ],
            "tools": [{"type": "function", "function": {"name": "weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": {"type": "function", "function": {"name": "weather"}}
        })
    };
    let script = Script {
        tool_call: Some(("weather".into(), r#"{"city":"Paris"}"#.into())),
        ..Script::reply("Checking.")
    };
    app.mock.push(script.clone());
    let body: Value = app.chat(&request(false)).await.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(
        choice["message"]["tool_calls"][0],
        json!({"id": "toolu_mock", "type": "function",
               "function": {"name": "weather", "arguments": "{\"city\":\"Paris\"}"}})
    );
    let sent = app.mock.requests()[0].json();
    assert_eq!(
        sent["tools"],
        json!([{"name": "weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}])
    );
    assert_eq!(
        sent["tool_choice"],
        json!({"type": "tool", "name": "weather"})
    );
    assert_eq!(
        sent["messages"][1]["content"][0],
        json!({"type": "tool_use", "id": "call_0", "name": "weather", "input": {"city": "Lyon"}})
    );
    assert_eq!(
        sent["messages"][2]["content"][0],
        json!({"type": "tool_result", "tool_use_id": "call_0", "content": [{"type": "text", "text": "rain"}]})
    );

    app.mock.push(script);
    let resp = app.chat(&request(true)).await;
    assert_eq!(resp.status(), 200);
    let events = sse_events(resp).await;
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let mut text = String::new();
    let mut args = String::new();
    let mut name = None;
    for c in &chunks {
        if let Some(d) = c["choices"].get(0).map(|c| &c["delta"]) {
            text.push_str(d["content"].as_str().unwrap_or(""));
            if let Some(call) = d["tool_calls"].get(0) {
                name = name.or(call["function"]["name"].as_str().map(str::to_owned));
                args.push_str(call["function"]["arguments"].as_str().unwrap_or(""));
            }
        }
    }
    assert_eq!(
        (text.as_str(), name.as_deref(), args.as_str()),
        ("Checking.", Some("weather"), "{\"city\":\"Paris\"}")
    );
    let finish: Vec<_> = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0)?["finish_reason"].as_str())
        .collect();
    assert_eq!(finish, ["tool_calls"]);
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 1);
    let records = app.records(2).await;
    assert!(records.iter().all(|r| r.status == 200 && !r.estimated));
}

#[tokio::test]
async fn anthropic_streams_reassemble_and_bill_once_even_when_cut() {
    let app = spawn().await;
    app.mock.push(Script::reply("one two three four"));
    let body =
        json!({"model": MODEL, "stream": true, "messages": [{"role": "user", "content": "count"}]});
    let events = sse_events(app.chat(&body).await).await;
    let text: String = events
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "one two three four");
    assert!(
        !events.iter().any(|e| e.contains("\"usage\"")),
        "no usage chunk unless the client asked"
    );
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));

    // Cut after two words: an SSE error event ends the stream; one record, 502, with the
    // output so far counted by our tokenizer (the provider never sent its final usage).
    app.mock.push(Script {
        cut_after_chunks: Some(2),
        ..Script::reply("one two three four")
    });
    let events = sse_events(app.chat(&body).await).await;
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "upstream_stream_interrupted");
    let records = app.records(2).await;
    assert_eq!(records.len(), 2);
    let cut = records.iter().find(|r| r.status == 502).unwrap();
    assert_eq!(
        cut.error_kind.as_deref(),
        Some("upstream_stream_interrupted")
    );
    assert_eq!(cut.output_tokens, 2);
}

#[tokio::test]
async fn an_overloaded_anthropic_route_fails_over_and_other_endpoints_are_refused() {
    let backup = MockUpstream::start().await.unwrap();
    let base = backup.base_url();
    let app = TestApp::spawn_with(move |c| {
        c.providers[0].kind = anthropic_kind(&c.providers[0]);
        c.providers.push(provider("backup", base, false));
        mock_then_backup(c, Some("claude-mock"));
    })
    .await;
    app.mock.push(Script::status(529));
    let resp = app.chat(&chat_body("hello")).await;
    assert_eq!(resp.status(), 200, "the client never sees the 529");
    assert_eq!(app.mock.requests()[0].json()["model"], "claude-mock");
    assert_eq!(backup.requests().len(), 1);
    let r = &app.records(1).await[0];
    assert_eq!((r.provider.as_deref(), r.attempts), (Some("backup"), 2));

    // A 400 from Anthropic is the client's fault: its message comes back, no failover.
    app.mock.push(Script::status(400));
    let err = openai_error(app.chat(&chat_body("hello")).await, 400).await;
    let message = err["error"]["message"].as_str().unwrap();
    assert!(message.ends_with("mock upstream failure 400"), "{message}");
    assert_eq!(backup.requests().len(), 1);

    // The Messages API has no text completions: a clear 400 naming the parameter.
    let resp = app
        .post("/v1/completions", &json!({"model": MODEL, "prompt": "hi"}))
        .await;
    let err = openai_error(resp, 400).await;
    assert_eq!(err["error"]["param"], "model");
}
