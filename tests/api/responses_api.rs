//! `POST /v1/responses`, stateless: translated to chat for OpenAI-compatible engines and
//! Anthropic providers, passed through with `store: false` to native Responses providers;
//! streams in the Responses event sequence; one usage record a request, labelled
//! `responses`; nothing that needs stored state is accepted or found.

use mock_upstream::Script;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn responses_translate_to_chat_and_back_with_one_exact_record() {
    let app = TestApp::spawn().await;
    let resp = app
        .post(
            "/v1/responses",
            &json!({"model": MODEL, "instructions": "Be brief.", "input": "one two three",
                    "store": true, "metadata": {"customer": "alice"}, "max_output_tokens": 40}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "response");
    assert_eq!(body["status"], "completed");
    assert_eq!(body["model"], MODEL);
    assert!(body["id"].as_str().unwrap().starts_with("resp_"));
    assert_eq!(body["output"][0]["type"], "message");
    assert_eq!(
        body["output"][0]["content"][0],
        json!({"type": "output_text", "text": "Hello from the mock upstream.", "annotations": []})
    );
    // The upstream got a chat request: the instructions as a system message, no state.
    let sent = app.mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    let chat = sent.json();
    assert_eq!(
        chat["messages"],
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "one two three"}])
    );
    assert_eq!(chat["max_tokens"], 40);
    assert!(chat.get("store").is_none() && chat.get("metadata").is_none());
    let records = app.records(1).await;
    assert_eq!(records.len(), 1);
    let r = &records[0];
    assert_eq!(
        (&*r.endpoint, r.status, r.stream),
        ("responses", 200, false)
    );
    assert_eq!(
        body["usage"]["input_tokens"].as_u64(),
        Some(r.input_tokens),
        "the client sees what is billed"
    );
    assert_eq!((r.output_tokens, r.estimated), (5, false));
}

#[tokio::test]
async fn streamed_responses_follow_the_event_sequence_with_calls_and_usage() {
    let app = TestApp::spawn().await;
    app.mock.push(Script {
        tool_call: Some(("get_weather".to_owned(), r#"{"city":"Oslo"}"#.to_owned())),
        ..Script::reply("Checking now.")
    });
    let resp = app
        .post(
            "/v1/responses",
            &json!({"model": MODEL, "input": "weather in Oslo?", "stream": true,
                    "tools": [{"type": "function", "name": "get_weather",
                               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = named_sse_events(&resp.text().await.unwrap());
    let kinds: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(kinds.first(), Some(&"response.created"));
    assert_eq!(kinds.last(), Some(&"response.completed"));
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str(), "the event name is its type");
        assert_eq!(data["sequence_number"], i as u64);
    }
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "Checking now.");
    let args: String = events
        .iter()
        .filter(|(n, _)| n == "response.function_call_arguments.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(args, r#"{"city":"Oslo"}"#);
    let done = &events.last().unwrap().1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][1]["type"], "function_call");
    assert_eq!(done["output"][1]["name"], "get_weather");
    assert_eq!(done["output"][1]["call_id"], "call_mock");
    let records = app.records(1).await;
    assert_eq!(records.len(), 1);
    assert_eq!(
        (&*records[0].endpoint, records[0].stream),
        ("responses", true)
    );
    assert_eq!(
        done["usage"]["output_tokens"].as_u64(),
        Some(records[0].output_tokens)
    );
    // The upstream was asked for usage, so the count is exact.
    assert!(!records[0].estimated);
}

#[tokio::test]
async fn a_cut_stream_ends_in_response_failed_and_is_billed_for_what_was_sent() {
    let app = TestApp::spawn().await;
    app.mock.push(Script {
        cut_after_chunks: Some(2),
        ..Script::reply("one two three four five six")
    });
    let resp = app
        .post(
            "/v1/responses",
            &json!({"model": MODEL, "input": "count", "stream": true}),
        )
        .await;
    let events = named_sse_events(&resp.text().await.unwrap());
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "response.failed");
    assert_eq!(last["response"]["status"], "failed");
    assert_eq!(
        last["response"]["error"]["code"],
        "upstream_stream_interrupted"
    );
    let r = &app.records(1).await[0];
    assert_eq!(
        (r.status, r.error_kind.as_deref()),
        (502, Some("upstream_stream_interrupted"))
    );
    assert!(r.output_tokens > 0 && r.estimated);
}

#[tokio::test]
async fn nothing_stateful_is_accepted_or_found() {
    let app = TestApp::spawn().await;
    for (body, param) in [
        (
            json!({"model": MODEL, "input": "x", "previous_response_id": "resp_1"}),
            "previous_response_id",
        ),
        (
            json!({"model": MODEL, "input": "x", "conversation": {"id": "conv_1"}}),
            "conversation",
        ),
        (
            json!({"model": MODEL, "input": "x", "background": true}),
            "background",
        ),
        (
            json!({"model": MODEL, "input": "x", "tools": [{"type": "web_search"}]}),
            "tools",
        ),
    ] {
        let resp = app.post("/v1/responses", &body).await;
        let e = openai_error(resp, 400).await;
        assert_eq!(e["error"]["param"], param, "{e}");
        assert_eq!(e["error"]["type"], "invalid_request_error");
    }
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let resp = app
            .client
            .request(method, app.url("/v1/responses/resp_123"))
            .bearer_auth(&app.key)
            .send()
            .await
            .unwrap();
        let e = openai_error(resp, 404).await;
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("stores no"),
            "{e}"
        );
    }
    assert!(
        app.mock.requests().is_empty(),
        "nothing reached the upstream"
    );
    // Refusals are records too (metadata only), labelled with the surface.
    let records = app.records(4).await;
    assert!(
        records
            .iter()
            .all(|r| &*r.endpoint == "responses" && r.status == 400)
    );
}

#[tokio::test]
async fn native_responses_providers_get_the_allow_listed_body_with_store_false() {
    let app = TestApp::spawn_with(|c| {
        set_responses(&mut c.providers[0], instagen::config::ResponsesApi::Native);
        c.providers[0].third_party = true;
    })
    .await;
    let body = json!({"model": MODEL, "input": "hi there", "store": true, "user": "alice@example.com",
                      "metadata": {"customer": "alice"}, "safety_identifier": "alice",
                      "include": ["reasoning.encrypted_content"], "reasoning": {"effort": "low"}});
    // Anthropic's protocol headers are for Anthropic upstreams: a client's reach no other.
    let resp = app
        .client
        .post(app.url("/v1/responses"))
        .bearer_auth(&app.key)
        .header("anthropic-version", "2023-06-01")
        .header("anthropic-beta", "some-beta")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    // Encrypted reasoning comes back to the client, which sends it next turn: no state here.
    assert_eq!(answer["output"][0]["encrypted_content"], "enc_mock");
    let sent = app.mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/responses");
    for h in ["anthropic-version", "anthropic-beta", "authorization"] {
        assert_eq!(sent.header(h), None, "{h} reached the provider");
    }
    let sent = sent.json();
    assert_eq!(sent["store"], false);
    assert_eq!(sent["model"], UPSTREAM_MODEL);
    assert_eq!(sent["include"], json!(["reasoning.encrypted_content"]));
    for gone in ["user", "metadata", "safety_identifier"] {
        assert!(sent.get(gone).is_none(), "{gone} reached the provider");
    }
    // Hosted tools have no chat form, but a native provider serves them.
    let hosted = json!({"model": MODEL, "input": "news?", "tools": [{"type": "web_search"}]});
    assert_eq!(app.post("/v1/responses", &hosted).await.status(), 200);
    assert_eq!(
        app.mock.requests().pop().unwrap().json()["tools"],
        json!([{"type": "web_search"}])
    );
    // Streamed: the provider's events pass through, named; the record is exact.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let events = named_sse_events(
        &app.post("/v1/responses", &streamed)
            .await
            .text()
            .await
            .unwrap(),
    );
    assert_eq!(events.last().unwrap().0, "response.completed");
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "Hello from the mock upstream.");
    let records = app.records(3).await;
    assert!(
        records
            .iter()
            .all(|r| &*r.endpoint == "responses" && !r.estimated && r.output_tokens == 5)
    );
    assert!(records.iter().any(|r| r.stream));
}

#[tokio::test]
async fn a_native_answer_without_usage_is_billed_from_the_clients_own_prompt() {
    let app = TestApp::spawn_with(|c| {
        set_responses(&mut c.providers[0], instagen::config::ResponsesApi::Native);
    })
    .await;
    let words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet ".repeat(4);
    let body = json!({"model": MODEL, "instructions": "Answer in one word.", "input": words});
    for stream in [false, true] {
        app.mock.push(Script {
            omit_usage: true,
            ..Script::reply("Fine.")
        });
        let mut body = body.clone();
        body["stream"] = json!(stream);
        let resp = app.post("/v1/responses", &body).await;
        assert_eq!(resp.status(), 200);
        resp.text().await.unwrap();
    }
    // Estimated from the `instructions` and `input` the client sent (the 40 words and
    // the instruction's), not from what routing read of the request.
    for r in app.records(2).await {
        assert!(r.estimated);
        assert!(
            (44..=100).contains(&r.input_tokens),
            "{} input tokens estimated (stream: {})",
            r.input_tokens,
            r.stream
        );
    }
}

#[tokio::test]
async fn responses_reach_anthropic_providers_through_chat() {
    let app = TestApp::spawn_with(|c| {
        c.providers[0].kind = anthropic_kind(&c.providers[0]);
    })
    .await;
    let resp = app
        .post("/v1/responses", &json!({"model": MODEL, "instructions": "Terse.", "input": "hi", "max_output_tokens": 20}))
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["output"][0]["content"][0]["text"],
        "Hello from the mock upstream."
    );
    let sent = app.mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(
        sent.json()["system"],
        json!([{"type": "text", "text": "Terse."}])
    );
    assert_eq!(sent.json()["max_tokens"], 20);
    let events = named_sse_events(
        &app.post(
            "/v1/responses",
            &json!({"model": MODEL, "input": "hi", "stream": true}),
        )
        .await
        .text()
        .await
        .unwrap(),
    );
    assert_eq!(events.last().unwrap().0, "response.completed");
    let records = app.records(2).await;
    assert!(
        records
            .iter()
            .all(|r| &*r.endpoint == "responses" && !r.estimated)
    );
}
