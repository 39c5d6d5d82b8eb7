//! A key asking about itself: `GET /v1/generations/{id}` gives the metadata record of its
//! account's own requests (and nobody else's), `GET /v1/key` its limits, usage, spend and
//! what is left of them.

use mock_upstream::Script;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::token_kinds::priced;
use instagen::billing::Money;

async fn get(app: &TestApp, path: &str, key: &str) -> (u16, Value, String) {
    let resp = app
        .client
        .get(app.url(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
}

/// A new key of a new account (as an operator makes one), usable once the key table has it.
async fn other_account_key(app: &TestApp) -> String {
    let (status, account) = api(
        app,
        Method::POST,
        "/api/v1/accounts",
        Some(ADMIN_TOKEN),
        Some(&json!({"name": "globex"})),
    )
    .await;
    assert_eq!(status, 201, "{account}");
    new_key(
        app,
        account["id"].as_str().unwrap(),
        json!({"name": "theirs"}),
    )
    .await
}

async fn new_key(app: &TestApp, account_id: &str, spec: Value) -> String {
    let (status, key) = api(
        app,
        Method::POST,
        &format!("/api/v1/accounts/{account_id}/keys"),
        Some(ADMIN_TOKEN),
        Some(&spec),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let secret = key["secret"].as_str().unwrap().to_owned();
    // Usable once the key table has refreshed.
    until_key_table_shows(app, &secret, |status, _| status == 200).await;
    secret
}

#[tokio::test]
async fn a_key_looks_up_its_accounts_requests_and_nobody_elses() {
    let app = TestApp::spawn_with(priced).await;
    app.mock.push(Script {
        cached_tokens: Some(3),
        cache_write_tokens: Some((3, 0)),
        reasoning_tokens: Some(1),
        ..Script::reply("Paris is the capital")
    });
    let prompt = "CANARY-prompt What is the capital of France?";
    let resp = app.chat(&chat_body(prompt)).await;
    assert_eq!(resp.status(), 200);
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let record = app.record(&id).await;

    let (status, body, text) = get(&app, &format!("/v1/generations/{id}"), &app.key).await;
    assert_eq!(status, 200, "{body}");
    let g = &body["data"];
    let usd = Money::from_nanos(record.cost_nanos).to_string();
    assert_eq!(g["id"], json!(id));
    assert_eq!(g["model"], json!(MODEL));
    assert_eq!(g["provider"], "mock");
    assert_eq!(g["endpoint"], "chat.completions");
    assert_eq!(
        (g["status"].as_u64(), &g["error"]),
        (Some(200), &Value::Null)
    );
    assert_eq!(
        g["tokens"],
        json!({"input": record.input_tokens, "cached_input": 3, "cache_write_5m": 3,
               "cache_write_1h": 0, "output": record.output_tokens, "reasoning": 1})
    );
    assert_eq!(g["cost_usd"], json!(usd));
    assert!(text.contains(&format!("\"cost\":{usd}")), "{text}");
    assert_eq!(g["estimated"], false);
    assert_eq!(g["attempts"], 1);
    assert_eq!(g["latency_us"], json!(record.latency_us));
    assert!(g["created_at"].as_str().unwrap().ends_with('Z'));
    assert!(
        !text.contains("CANARY") && !text.contains("Paris"),
        "no content: {text}"
    );

    // Another key of the same account sees it; another account's key does not.
    let sibling = new_key(&app, &app.account_id, json!({"name": "sibling"})).await;
    assert_eq!(
        get(&app, &format!("/v1/generations/{id}"), &sibling)
            .await
            .0,
        200
    );
    let stranger = other_account_key(&app).await;
    let (status, body, _) = get(&app, &format!("/v1/generations/{id}"), &stranger).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["code"], "not_found");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    let (status, _, _) = get(&app, "/v1/generations/req_unknown", &app.key).await;
    assert_eq!(status, 404);
    let (status, body, _) = get(&app, &format!("/v1/generations/{id}"), "ig-wrong").await;
    assert_eq!(status, 401, "{body}");
}

#[tokio::test]
async fn a_key_sees_its_limits_usage_spend_and_what_is_left() {
    let app = TestApp::spawn_with(priced).await;
    let key = new_key(
        &app,
        &app.account_id,
        json!({"name": "ci-bot", "description": "nightly runs", "allowed_models": [MODEL],
               "limits": {"rpm": 50, "tpm": 100000, "max_concurrent": 4,
                          "spend_limit_usd": "0.5", "spend_limit_period": "day"}}),
    )
    .await;
    let mut spent = 0;
    for _ in 0..2 {
        app.mock.push(Script::reply("Paris is the capital"));
        let resp = app
            .client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&chat_body("What is the capital of France?"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        spent += app.record(&id).await.cost_nanos;
    }
    let (status, body, _) = get(&app, "/v1/key", &key).await;
    assert_eq!(status, 200, "{body}");
    let k = &body["data"];
    assert_eq!(
        (k["name"].as_str(), k["description"].as_str()),
        (Some("ci-bot"), Some("nightly runs"))
    );
    assert_eq!(k["allowed_models"], json!([MODEL]));
    assert_eq!(k["expires_at"], Value::Null);
    assert_eq!(
        k["limits"],
        json!({"rpm": 50, "tpm": 100000, "max_concurrent": 4, "account_rpm": null,
               "account_tpm": null, "spend_limit_usd": "0.500000000", "spend_limit_period": "day"})
    );
    let spent_usd = Money::from_nanos(spent).to_string();
    for window in ["today", "this_month", "total"] {
        assert_eq!(k["usage"][window]["requests"], 2, "{window}");
        assert_eq!(k["usage"][window]["cost_usd"], json!(spent_usd), "{window}");
    }
    assert_eq!(
        k["spend_limit_remaining_usd"],
        json!(Money::from_nanos(500_000_000 - spent).to_string())
    );
    assert_eq!(k["prepaid_balance_usd"], Value::Null);
    // Two requests used, and asking used none.
    assert_eq!(k["rate_limit"]["requests"]["limit"], 50);
    assert_eq!(k["rate_limit"]["requests"]["remaining"], 48);
    assert!(k["rate_limit"]["tokens"]["remaining"].as_u64().unwrap() < 100000);
    let (_, again, _) = get(&app, "/v1/key", &key).await;
    assert_eq!(again["data"]["rate_limit"]["requests"]["remaining"], 48);

    // The default key is unlimited: no limits, nothing remaining to count.
    let (_, body, _) = get(&app, "/v1/key", &app.key).await;
    assert_eq!(
        body["data"]["rate_limit"],
        json!({"requests": null, "tokens": null})
    );
    assert_eq!(body["data"]["spend_limit_remaining_usd"], Value::Null);
}

#[tokio::test]
async fn a_prepaid_key_sees_its_accounts_balance() {
    let app = TestApp::spawn_with(|c| {
        priced(c);
        c.billing.prepaid = true;
    })
    .await;
    let (status, e) = api(
        &app,
        Method::POST,
        &format!("/api/v1/accounts/{}/billing/credits", app.account_id),
        Some(ADMIN_TOKEN),
        Some(&json!({"usd": "2.5", "memo": "top-up"})),
    )
    .await;
    assert_eq!(status, 201, "{e}");
    // The budget tracker syncs the balance every second.
    until_key_table_shows(&app, &app.key, |_, body| {
        body["data"]["prepaid_balance_usd"] == "2.500000000"
    })
    .await;
}
