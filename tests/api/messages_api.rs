//! `POST /v1/messages` and `count_tokens`, Anthropic's Messages API inbound: translated
//! to chat for OpenAI-compatible engines, passed through natively to Anthropic providers
//! (cache control, thinking and the client's protocol headers kept; `metadata` never
//! sent), Anthropic's error shapes, Anthropic-shaped model discovery with aliases, and
//! one usage record a request labelled `messages`.

use mock_upstream::{MockUpstream, Script};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::routing::{mock_then_backup, provider};

const PROVIDER_KEY: &str = "sk-ant-provider-0123456789";

/// The test model behind an Anthropic provider (with its own key), third party.
async fn spawn_anthropic() -> TestApp {
    TestApp::spawn_with(|c| anthropic_provider(c, PROVIDER_KEY)).await
}

async fn messages(app: &TestApp, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/messages?beta=true"))
        .header("x-api-key", &app.key)
        .header("anthropic-version", "2023-06-01")
        .header(
            "anthropic-beta",
            "interleaved-thinking-2025-05-14,some-future-beta",
        )
        .json(body)
        .send()
        .await
        .unwrap()
}

fn request(stream: bool) -> Value {
    json!({"model": MODEL, "max_tokens": 64, "stream": stream,
           "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
           "metadata": {"user_id": "user-alice-42"},
           "messages": [{"role": "user", "content": "one two three"}]})
}

#[tokio::test]
async fn messages_in_front_of_an_openai_engine_translate_both_ways() {
    let app = TestApp::spawn().await;
    let resp = messages(&app, &request(false)).await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(body["model"], MODEL);
    assert_eq!(
        body["content"],
        json!([{"type": "text", "text": "Hello from the mock upstream."}])
    );
    assert_eq!(body["stop_reason"], "end_turn");
    let sent = app.mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    assert!(sent.header("anthropic-version").is_none() && sent.header("x-api-key").is_none());
    let chat = sent.json();
    assert_eq!(
        chat["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert!(
        !sent.body.windows(10).any(|w| w == b"user-alice"),
        "metadata stays here"
    );
    let r = &app.records(1).await[0];
    assert_eq!(
        (&*r.endpoint, r.status, r.estimated),
        ("messages", 200, false)
    );
    assert_eq!(
        body["usage"]["output_tokens"].as_u64(),
        Some(r.output_tokens)
    );
    assert_eq!(body["usage"]["input_tokens"].as_u64(), Some(r.input_tokens));

    // Streamed, with a tool call and reasoning: Anthropic's events, named.
    app.mock.push(Script {
        tool_call: Some(("look".to_owned(), r#"{"q":1}"#.to_owned())),
        reasoning: Some("thinking it over".to_owned()),
        ..Script::reply("Let me look.")
    });
    let mut body = request(true);
    body["tools"] = json!([{"name": "look", "input_schema": {"type": "object"}}]);
    let resp = messages(&app, &body).await;
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let events = named_sse_events(&resp.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "message_start");
    assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str());
    }
    let starts: Vec<&str> = events
        .iter()
        .filter(|(n, _)| n == "content_block_start")
        .map(|(_, d)| d["content_block"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(starts, ["thinking", "text", "tool_use"]);
    let json: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["partial_json"].as_str())
        .collect();
    assert_eq!(json, r#"{"q":1}"#);
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    let records = app.records(2).await;
    let streamed = records.iter().find(|r| r.stream).unwrap();
    assert_eq!(
        delta["usage"]["output_tokens"].as_u64(),
        Some(streamed.output_tokens)
    );
    assert_eq!(&*streamed.endpoint, "messages");
}

#[tokio::test]
async fn messages_to_an_anthropic_provider_pass_through_natively() {
    let app = spawn_anthropic().await;
    app.mock.push(Script {
        cached_tokens: Some(2),
        reasoning: Some("hmm".to_owned()),
        ..Script::reply("Native answer.")
    });
    let mut body = request(false);
    body["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
    let resp = messages(&app, &body).await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    // The provider's own answer, signed thinking included.
    assert_eq!(answer["id"], "msg_mock");
    assert_eq!(answer["content"][0]["signature"], "sig_mock");
    let sent = app.mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some(PROVIDER_KEY));
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        sent.header("anthropic-beta"),
        Some("interleaved-thinking-2025-05-14,some-future-beta")
    );
    let upstream = sent.json();
    assert_eq!(
        upstream["system"][0]["cache_control"],
        json!({"type": "ephemeral"})
    );
    assert_eq!(upstream["thinking"]["budget_tokens"], 2048);
    assert_eq!(upstream["model"], UPSTREAM_MODEL);
    assert!(
        upstream.get("metadata").is_none(),
        "no user id reaches a third party"
    );
    let r = &app.records(1).await[0];
    assert_eq!(
        (&*r.endpoint, r.cached_input_tokens, r.output_tokens),
        ("messages", 2, 2)
    );
    assert!(!r.estimated);

    // Server tools and documents have no chat form, but an Anthropic provider takes them.
    let mut body = request(false);
    body["tools"] = json!([{"type": "web_search_20250305", "name": "web_search", "max_uses": 1}]);
    body["messages"] = json!([{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "a b"}},
        {"type": "text", "text": "summarise"}]}]);
    assert_eq!(messages(&app, &body).await.status(), 200);
    let upstream = app.mock.requests().pop().unwrap().json();
    assert_eq!(upstream["tools"][0]["type"], "web_search_20250305");
    assert_eq!(upstream["messages"][0]["content"][0]["type"], "document");

    // Streamed: the provider's events pass through, the record is committed before the end.
    let resp = messages(&app, &request(true)).await;
    let events = named_sse_events(&resp.text().await.unwrap());
    assert_eq!(events.first().unwrap().0, "message_start");
    assert_eq!(events.last().unwrap().0, "message_stop");
    assert_eq!(events[0].1["message"]["id"], "msg_mock");
    let records = app.records(3).await;
    let streamed = records.iter().find(|r| r.stream).unwrap();
    assert_eq!((streamed.output_tokens, streamed.estimated), (5, false));
}

#[tokio::test]
async fn a_route_mixing_anthropic_and_chat_translates_only_for_its_chat_target() {
    let backup = MockUpstream::start().await.unwrap();
    let base = backup.base_url();
    let app = TestApp::spawn_with(move |c| {
        anthropic_provider(c, PROVIDER_KEY);
        c.providers.push(provider("backup", base, false));
        mock_then_backup(c, Some("claude-mock"));
    })
    .await;
    let mut document = request(false);
    document["messages"] = json!([{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "a b"}},
        {"type": "text", "text": "summarise"}]}]);
    // The Anthropic route takes what has no chat form, as the client sent it.
    assert_eq!(messages(&app, &document).await.status(), 200);
    let sent = app.mock.requests().pop().unwrap().json();
    assert_eq!(sent["messages"][0]["content"][0]["type"], "document");
    assert_eq!(sent["model"], "claude-mock");

    // Overloaded, it fails over to the chat route: the request is translated for it, and
    // the chat answer back into a Message.
    app.mock.push(Script::status(529));
    let resp = messages(&app, &request(false)).await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["type"], "message");
    assert_eq!(answer["content"][0]["type"], "text");
    let sent = backup.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/chat/completions");
    let chat = sent.json();
    assert_eq!(
        chat["messages"][0],
        json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(chat["max_tokens"], 64);
    assert!(chat.get("metadata").is_none() && chat.get("system").is_none());

    // What has no chat form cannot fail over to chat: the translation's own error, in
    // Anthropic's shape, and the chat route never sees it.
    app.mock.push(Script::status(529));
    let resp = messages(&app, &document).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("document"),
        "{body}"
    );
    assert_eq!(backup.requests().len(), 1);
    let records = app.records(3).await;
    assert_eq!(
        records.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200, 400]
    );
}

#[tokio::test]
async fn errors_come_in_anthropic_shapes_with_anthropic_statuses() {
    let app = TestApp::spawn().await;
    let check = |resp: reqwest::Response, status: u16, kind: &'static str| async move {
        assert_eq!(resp.status().as_u16(), status);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["type"], "error", "{body}");
        assert_eq!(body["error"]["type"], kind, "{body}");
        assert!(body["error"]["message"].is_string());
    };
    let bad_key = app
        .client
        .post(app.url("/v1/messages"))
        .header("x-api-key", "ig-not-a-key")
        .json(&request(false))
        .send()
        .await
        .unwrap();
    check(bad_key, 401, "authentication_error").await;
    // A server tool has no chat form: refused before any upstream sees it.
    let mut server_tool = request(false);
    server_tool["tools"] = json!([{"type": "web_search_20250305", "name": "web_search"}]);
    let resp = messages(&app, &server_tool).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(app.mock.requests().is_empty());
    let mut unknown = request(false);
    unknown["model"] = json!("claude-nope");
    check(messages(&app, &unknown).await, 404, "not_found_error").await;
    let mut no_max = request(false);
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let resp = messages(&app, &no_max).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens")
    );
    app.mock.push(Script::status(429));
    check(
        messages(&app, &request(false)).await,
        429,
        "rate_limit_error",
    )
    .await;
    app.mock.push(Script::status(500));
    check(messages(&app, &request(false)).await, 502, "api_error").await;
    let unknown_route = app
        .client
        .post(app.url("/v1/messages/batches"))
        .header("x-api-key", &app.key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    check(unknown_route, 404, "not_found_error").await;
    // Every refused inference request is recorded once, labelled with the surface.
    let records = app.records(5).await;
    assert_eq!(
        records.len(),
        5,
        "server tool, unknown model, no max_tokens, 429, 500"
    );
    assert!(records.iter().all(|r| &*r.endpoint == "messages"));
}

#[tokio::test]
async fn count_tokens_is_exact_from_anthropic_and_labelled_an_estimate_elsewhere() {
    let app = TestApp::spawn().await;
    let body = json!({"model": MODEL, "system": "Be brief.",
                      "messages": [{"role": "user", "content": "one two three four"}]});
    let count = |app: &TestApp| {
        app.client
            .post(app.url("/v1/messages/count_tokens"))
            .header("x-api-key", &app.key)
            .header("anthropic-version", "2023-06-01")
            .json(&body)
            .send()
    };
    let resp = count(&app).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-instagen-token-count"], "estimate");
    let n: Value = resp.json().await.unwrap();
    assert!(n["input_tokens"].as_u64().unwrap() >= 4, "{n}");
    assert!(app.mock.requests().is_empty());

    let app = spawn_anthropic().await;
    app.mock.push(Script {
        reported_tokens: Some((123, 0)),
        ..Script::default()
    });
    let resp = count(&app).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-instagen-token-count"], "exact");
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"input_tokens": 123})
    );
    let sent = app.mock.requests().pop().unwrap();
    assert_eq!(sent.path, "/v1/messages/count_tokens");
    assert_eq!(sent.header("x-api-key"), Some(PROVIDER_KEY));
    // Counting is free: no usage record.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let records = app
        .store
        .usage_records(&app.account_id, 0, i64::MAX)
        .await
        .unwrap();
    assert!(records.is_empty());
}

#[tokio::test]
async fn model_discovery_answers_in_the_clients_shape_with_aliases_and_regions() {
    let app = TestApp::spawn_with(|c| {
        c.models[0].aliases = vec!["claude-house-model".to_owned()];
    })
    .await;
    let resp = app
        .client
        .get(app.url("/v1/models"))
        .header("x-api-key", &app.key)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let list: Value = resp.json().await.unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [MODEL, "claude-house-model"]);
    assert_eq!(list["data"][1]["type"], "model");
    assert_eq!(list["has_more"], false);
    assert_eq!(list["first_id"], MODEL);
    // The alias is served and billed as the model itself.
    let mut body = request(false);
    body["model"] = json!("claude-house-model");
    assert_eq!(messages(&app, &body).await.status(), 200);
    assert_eq!(app.records(1).await[0].model.as_deref(), Some(MODEL));
    // One model, OpenAI's shape by default.
    let one: Value = app
        .client
        .get(app.url(&format!("/v1/models/{MODEL}")))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (one["id"].as_str(), one["object"].as_str()),
        (Some(MODEL), Some("model"))
    );
    let missing = app
        .client
        .get(app.url("/v1/models/nope"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    openai_error(missing, 404).await;
    // A key restricted to a region no provider is in sees no model at all.
    let (_, key) = api(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/accounts/{}/keys", app.account_id),
        Some(ADMIN_TOKEN),
        Some(&json!({"name": "ap-only", "allowed_regions": ["ap"]})),
    )
    .await;
    let key = key["secret"].as_str().unwrap();
    // Once the key is live, chat gets 403: no route in its regions; the list agrees.
    assert_eq!(chat_status(&app, key, 403).await.0, 403);
    let list: Value = app
        .client
        .get(app.url("/v1/models"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"], json!([]), "{list}");
}

#[tokio::test]
async fn the_new_surfaces_share_the_keys_rate_limit_and_a_left_stream_is_billed() {
    let app = TestApp::spawn().await;
    let (status, key) = api(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/accounts/{}/keys", app.account_id),
        Some(ADMIN_TOKEN),
        Some(&json!({"name": "limited", "limits": {"rpm": 2}})),
    )
    .await;
    assert_eq!(status, 201);
    let key = key["secret"].as_str().unwrap().to_owned();
    assert_eq!(chat_status(&app, &key, 200).await.0, 200);
    let resp = app
        .client
        .post(app.url("/v1/responses"))
        .bearer_auth(&key)
        .json(&json!({"model": MODEL, "input": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-ratelimit-remaining-requests"], "0");
    // The third request in the minute, on the Messages surface: Anthropic's 429.
    let resp = app
        .client
        .post(app.url("/v1/messages"))
        .header("x-api-key", &key)
        .json(&request(false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");

    // A client that leaves a Messages stream halfway is billed for what was generated.
    app.mock.push(Script {
        chunk_delay: std::time::Duration::from_millis(100),
        ..Script::reply("one two three four five six seven eight nine ten")
    });
    let mut resp = messages(&app, &request(true)).await;
    let mut seen = String::new();
    while !seen.contains("text_delta") {
        seen.push_str(&String::from_utf8_lossy(
            &resp.chunk().await.unwrap().unwrap(),
        ));
    }
    drop(resp);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let left = loop {
        let records = app
            .store
            .usage_records(&app.account_id, 0, i64::MAX)
            .await
            .unwrap();
        if let Some(r) = records.into_iter().find(|r| r.status == 499) {
            break r;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no record for the left stream"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(&*left.endpoint, "messages");
    assert_eq!(left.error_kind.as_deref(), Some("client_closed"));
    assert!(
        left.output_tokens >= 1 && left.output_tokens < 10,
        "{}",
        left.output_tokens
    );
}
