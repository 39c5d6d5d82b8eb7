//! Every failure under `/v1` is OpenAI-shaped JSON with the right status, and recorded once.

use std::time::{Duration, Instant};

use mock_upstream::Script;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn missing_unknown_and_malformed_keys_get_401_invalid_api_key() {
    let app = TestApp::spawn().await;
    let url = app.url("/v1/chat/completions");
    let cases = [
        app.client.post(&url).json(&chat_body("x")),
        app.client
            .post(&url)
            .bearer_auth("sk-not-ours")
            .json(&chat_body("x")),
        app.client
            .post(&url)
            .bearer_auth("ig-0123456789abcdef-0123456789012345678901234567890123456789")
            .json(&chat_body("x")),
    ];
    for req in cases {
        let body = openai_error(req.send().await.unwrap(), 401).await;
        assert_eq!(body["error"]["code"], "invalid_api_key");
    }
    let resp = app.client.get(app.url("/v1/models")).send().await.unwrap();
    openai_error(resp, 401).await;
    assert!(app.mock.requests().is_empty());
}

#[tokio::test]
async fn invalid_bodies_get_400_and_never_reach_the_upstream() {
    let app = TestApp::spawn().await;
    let raw = |body: &'static str| {
        app.client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&app.key)
            .header("content-type", "application/json")
            .body(body)
    };
    for (body, param) in [
        ("{broken", None),
        ("", None),
        (r#"{"messages":[]}"#, Some("model")),
        (r#"{"model":"test-model"}"#, Some("messages")),
        (
            r#"{"model":"test-model","messages":"oops"}"#,
            Some("messages"),
        ),
    ] {
        let err = openai_error(raw(body).send().await.unwrap(), 400).await;
        assert_eq!(err["error"]["type"], "invalid_request_error");
        assert_eq!(err["error"]["param"].as_str(), param, "{body}");
    }
    assert!(app.mock.requests().is_empty());
    let records = app.records(5).await;
    assert!(records.iter().all(|r| r.status == 400
        && r.error_kind.as_deref() == Some("invalid_request")
        && r.cost_nanos == 0));
}

#[tokio::test]
async fn unknown_model_gets_404_model_not_found() {
    let app = TestApp::spawn().await;
    let body = openai_error(
        app.chat(&json!({"model": "gpt-nope", "messages": []}))
            .await,
        404,
    )
    .await;
    assert_eq!(body["error"]["code"], "model_not_found");
    assert_eq!(body["error"]["param"], "model");
    let r = &app.records(1).await[0];
    assert_eq!(r.model, None, "unconfigured model names are never stored");
}

#[tokio::test]
async fn oversized_body_gets_413() {
    let app = TestApp::spawn_with(|c| c.server.max_body_bytes = 1024).await;
    let big = "x".repeat(4096);
    let body = openai_error(app.chat(&chat_body(&big)).await, 413).await;
    assert_eq!(body["error"]["code"], "request_too_large");
    assert!(app.mock.requests().is_empty());
}

#[tokio::test]
async fn upstream_failures_map_to_502_429_504_and_pass_4xx_messages() {
    let app = TestApp::spawn_with(|c| c.providers[0].ttfb_timeout_ms = 1_000).await;

    app.mock.push(Script::status(500));
    let body = openai_error(app.chat(&chat_body("x")).await, 502).await;
    assert_eq!(body["error"]["code"], "upstream_error");

    app.mock.push(Script {
        retry_after: Some(7),
        ..Script::status(429)
    });
    let resp = app.chat(&chat_body("x")).await;
    assert_eq!(resp.headers()["retry-after"], "7");
    let body = openai_error(resp, 429).await;
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");

    app.mock.push(Script::status(400));
    let body = openai_error(app.chat(&chat_body("x")).await, 400).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("mock upstream failure 400")
    );

    app.mock.push(Script {
        delay: Duration::from_secs(3),
        ..Default::default()
    });
    let body = openai_error(app.chat(&chat_body("x")).await, 504).await;
    assert_eq!(body["error"]["code"], "upstream_timeout");

    let records = app.records(4).await;
    let kinds: Vec<_> = records
        .iter()
        .map(|r| (r.status, r.error_kind.clone().unwrap_or_default()))
        .collect();
    for expected in [
        (502, "upstream_error"),
        (429, "upstream_rate_limited"),
        (400, "upstream_rejected"),
        (504, "upstream_timeout"),
    ] {
        assert!(
            kinds
                .iter()
                .any(|(s, k)| *s == expected.0 && k == expected.1),
            "{kinds:?}"
        );
    }
}

#[tokio::test]
async fn unreachable_upstream_gets_502() {
    let held = dead_addr();
    let port = held.port;
    let app = TestApp::spawn_with(move |c| {
        set_base_url(&mut c.providers[0], format!("http://127.0.0.1:{port}/v1"))
    })
    .await;
    let body = openai_error(app.chat(&chat_body("x")).await, 502).await;
    assert_eq!(body["error"]["code"], "upstream_unreachable");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_openai_shaped_with_request_id() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .get(app.url("/v1/nothing-here"))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("x-request-id").is_some());
    assert_eq!(resp.headers()["cache-control"], "no-store");
    openai_error(resp, 404).await;
    let resp = app
        .client
        .get(app.url("/v1/chat/completions"))
        .send()
        .await
        .unwrap();
    openai_error(resp, 405).await;
}

#[tokio::test]
async fn health_and_readiness_probes_answer() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.client
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        app.client
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn full_usage_queue_refuses_with_503_rather_than_dropping_records() {
    let app = TestApp::spawn_with(|c| c.usage.queue_capacity = 1).await;
    app.mock.push(Script {
        delay: Duration::from_millis(800),
        ..Default::default()
    });
    let slow = {
        let (client, url, key) = (
            app.client.clone(),
            app.url("/v1/chat/completions"),
            app.key.clone(),
        );
        tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&chat_body("x"))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    // The slow request holds the queue's one place once it has reached the upstream.
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.mock.requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the slow request never reached the upstream"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let body = openai_error(app.chat(&chat_body("y")).await, 503).await;
    assert_eq!(body["error"]["code"], "overloaded");
    assert_eq!(slow.await.unwrap(), 200);
    let records = app.records(1).await;
    assert_eq!(records.len(), 1, "the refused request was never admitted");
}
