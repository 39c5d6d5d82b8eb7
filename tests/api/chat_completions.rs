//! Non-stream inference: forwarding, parameter pass-through, metering and exact cost.

use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn chat_is_forwarded_with_the_upstream_model_and_metered_exactly() {
    let app = TestApp::spawn().await;
    let resp = app.chat(&chat_body("one two three")).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-request-id").is_some());
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let request_id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "Hello from the mock upstream."
    );

    let seen = app.mock.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, "/v1/chat/completions");
    assert_eq!(seen[0].json()["model"], UPSTREAM_MODEL);

    let records = app.records(1).await;
    let r = &records[0];
    assert_eq!(*r.request_id, *request_id);
    assert_eq!(*r.key_id, *app.key_id);
    assert_eq!(r.model.as_deref(), Some(MODEL));
    assert_eq!(r.provider.as_deref(), Some("mock"));
    assert_eq!((r.status, r.stream, r.estimated), (200, false, false));
    assert_eq!((r.input_tokens, r.output_tokens), (3, 5));
    assert_eq!(r.cost_nanos, test_cost(3, 0, 5));
    assert_eq!(r.cost_nanos, 2_100);
}

#[tokio::test]
async fn every_openai_parameter_passes_through_untouched() {
    let app = TestApp::spawn().await;
    let body = json!({
        "model": MODEL,
        "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}}}],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
        "n": 2, "logprobs": true, "top_logprobs": 2, "seed": 42, "stop": ["\n\n"],
        "temperature": 0.7, "top_p": 0.9, "max_tokens": 50, "presence_penalty": 0.1,
        "logit_bias": {"50256": -100}, "parallel_tool_calls": false, "vendor_extension": {"x": [1, 2]}
    });
    assert_eq!(app.chat(&body).await.status(), 200);
    let mut expected = body.clone();
    expected["model"] = json!(UPSTREAM_MODEL);
    assert_eq!(app.mock.requests()[0].json(), expected);
}

#[tokio::test]
async fn upstream_sees_no_client_headers_and_no_client_key() {
    let app = TestApp::spawn().await;
    let resp = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&app.key)
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-user-email", "someone@example.com")
        .header("user-agent", "ClientApp/1.0")
        .header("cookie", "session=abc")
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let seen = &app.mock.requests()[0];
    for (name, value) in &seen.headers {
        let allowed = [
            "content-type",
            "accept",
            "user-agent",
            "host",
            "content-length",
        ];
        assert!(
            allowed.contains(&name.as_str()),
            "upstream got header {name}"
        );
        assert!(
            !value.contains(&app.key)
                && !value.contains("203.0.113.9")
                && !value.contains("ClientApp")
        );
    }
}

#[tokio::test]
async fn completions_and_embeddings_are_forwarded_and_metered() {
    let app = TestApp::spawn().await;
    let resp = app
        .post(
            "/v1/completions",
            &json!({"model": MODEL, "prompt": "The capital of France is"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "text_completion");

    let resp = app
        .post(
            "/v1/embeddings",
            &json!({"model": MODEL, "input": ["a b", "c"]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);

    let records = app.records(2).await;
    let by_endpoint = |e: &str| records.iter().find(|r| &*r.endpoint == e).unwrap().clone();
    let c = by_endpoint("completions");
    assert_eq!((c.input_tokens, c.output_tokens), (5, 5));
    let e = by_endpoint("embeddings");
    assert_eq!((e.input_tokens, e.output_tokens), (3, 0));
    assert_eq!(e.cost_nanos, test_cost(3, 0, 0));
}

#[tokio::test]
async fn models_lists_the_configured_models() {
    let app = TestApp::spawn_with(|c| c.models[0].context_length = Some(8192)).await;
    let resp = app
        .client
        .get(app.url("/v1/models"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["id"], MODEL);
    assert_eq!(body["data"].as_array().unwrap().len(), 1, "each model once");
    assert_eq!(body["data"][0]["owned_by"], "instagen");
    assert_eq!(body["data"][0]["context_length"], 8192);
    assert_eq!(
        body["data"][0]["pricing"]["input_usd_per_mtok"],
        "0.200000000"
    );
    assert_eq!(
        body["data"][0]["pricing"]["output_usd_per_mtok"],
        "0.300000000"
    );
    assert_eq!(
        body["data"][0]["pricing"]["cached_input_usd_per_mtok"],
        "0.100000000"
    );
}

#[tokio::test]
async fn missing_upstream_usage_is_counted_with_a_tokenizer_and_marked_estimated() {
    let app = TestApp::spawn().await;
    app.mock.push(mock_upstream::Script {
        omit_usage: true,
        ..Default::default()
    });
    assert_eq!(
        app.chat(&chat_body("What is the capital of France?"))
            .await
            .status(),
        200
    );
    let r = &app.records(1).await[0];
    assert!(r.estimated);
    let expected_out = instagen::usage::tokens::count("Hello from the mock upstream.");
    assert_eq!(r.output_tokens, expected_out);
    assert!(
        r.input_tokens >= 7,
        "prompt tokens counted: {}",
        r.input_tokens
    );
    assert_eq!(r.cost_nanos, test_cost(r.input_tokens, 0, r.output_tokens));
}

#[tokio::test]
async fn cached_prompt_tokens_are_billed_at_the_cached_price() {
    let app = TestApp::spawn().await;
    app.mock.push(mock_upstream::Script {
        cached_tokens: Some(2),
        ..Default::default()
    });
    assert_eq!(
        app.chat(&chat_body("one two three four")).await.status(),
        200
    );
    let r = &app.records(1).await[0];
    assert_eq!(
        (r.input_tokens, r.cached_input_tokens, r.output_tokens),
        (4, 2, 5)
    );
    assert_eq!(r.cost_nanos, test_cost(4, 2, 5));
}

#[tokio::test]
async fn usage_summary_totals_requests_tokens_and_exact_cost() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        assert_eq!(app.chat(&chat_body("one two three")).await.status(), 200);
    }
    app.records(3).await;
    let s = instagen::admin::usage_summary(&app.store, &app.account_id, 0, i64::MAX)
        .await
        .unwrap();
    assert_eq!((s.requests, s.input_tokens, s.output_tokens), (3, 9, 15));
    assert_eq!(s.cost_usd, "0.000006300");
    assert_eq!(s.models[0].model, MODEL);
}

#[tokio::test]
async fn scheduled_price_changes_apply_from_their_date() {
    let app = TestApp::spawn_with(|c| {
        let change = |from: &str, input: &str, output: &str| instagen::config::PriceChange {
            effective_from: from.to_owned(),
            input_usd_per_mtok: instagen::billing::Price::parse(input).unwrap(),
            output_usd_per_mtok: instagen::billing::Price::parse(output).unwrap(),
            cached_input_usd_per_mtok: None,
            cache_write_usd_per_mtok: None,
            cache_write_1h_usd_per_mtok: None,
            reasoning_usd_per_mtok: None,
        };
        c.models[0].price_changes = vec![
            change("2020-01-01", "1.00", "2.00"),
            change("2999-01-01", "100", "100"),
        ];
    })
    .await;
    assert_eq!(app.chat(&chat_body("one two three")).await.status(), 200);
    let r = &app.records(1).await[0];
    // 3 × $1 + 5 × $2 per million tokens = 13 µ$: the 2020 change is in force, the 2999 one is not.
    assert_eq!(r.cost_nanos, 13_000);
}

#[tokio::test]
async fn a_models_default_params_fill_in_what_the_request_leaves_out() {
    let app = TestApp::spawn_with(|c| {
        c.models[0].default_params = [
            ("temperature".to_owned(), serde_json::json!(0)),
            ("top_p".to_owned(), serde_json::json!(0.9)),
        ]
        .into();
    })
    .await;
    assert_eq!(app.chat(&chat_body("hi")).await.status(), 200);
    let sent = app.mock.requests().pop().unwrap().json();
    assert_eq!(
        (sent["temperature"].clone(), sent["top_p"].clone()),
        (serde_json::json!(0), serde_json::json!(0.9))
    );
    // The request's own value wins, null included; the other default still applies.
    let mut body = chat_body("hi");
    body["temperature"] = serde_json::json!(1.2);
    body["top_p"] = serde_json::Value::Null;
    assert_eq!(app.chat(&body).await.status(), 200);
    let sent = app.mock.requests().pop().unwrap().json();
    assert_eq!(sent["temperature"], 1.2);
    assert!(sent["top_p"].is_null());
    // The other surfaces too.
    let resp = app
        .post(
            "/v1/responses",
            &serde_json::json!({"model": MODEL, "input": "hi"}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(app.mock.requests().pop().unwrap().json()["temperature"], 0);
}
