//! Every kind of token billed at its own price: cache reads, 5-minute and 1-hour cache
//! writes, reasoning; what the provider reported wins over our estimate, even in a stream
//! that ends early; and every field we hold of a request is in the export.

use mock_upstream::Script;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use instagen::config::Config;
use instagen::usage::UsageRecord;

/// n$ per million tokens of each kind in `priced`.
const INPUT: i128 = 200_000_000;
const CACHED: i128 = 100_000_000;
const WRITE_5M: i128 = 250_000_000;
const WRITE_1H: i128 = 400_000_000;
const OUTPUT: i128 = 300_000_000;
const REASONING: i128 = 500_000_000;

/// The test model with a price for every kind of token.
pub(crate) fn priced(c: &mut Config) {
    let price = |s: &str| Some(instagen::billing::Price::parse(s).unwrap());
    c.models[0].cache_write_usd_per_mtok = price("0.25");
    c.models[0].cache_write_1h_usd_per_mtok = price("0.40");
    c.models[0].reasoning_usd_per_mtok = price("0.50");
}

/// What a record costs, each kind at its price, rounded up once.
pub(crate) fn cost_by_kind(r: &UsageRecord) -> i64 {
    let uncached =
        r.input_tokens - r.cached_input_tokens - r.cache_write_5m_tokens - r.cache_write_1h_tokens;
    let n = i128::from(uncached) * INPUT
        + i128::from(r.cached_input_tokens) * CACHED
        + i128::from(r.cache_write_5m_tokens) * WRITE_5M
        + i128::from(r.cache_write_1h_tokens) * WRITE_1H
        + i128::from(r.output_tokens - r.reasoning_tokens) * OUTPUT
        + i128::from(r.reasoning_tokens) * REASONING;
    i64::try_from((n + 999_999) / 1_000_000).unwrap()
}

#[tokio::test]
async fn every_kind_of_token_an_openai_compatible_upstream_reports_is_billed_at_its_price() {
    let app = TestApp::spawn_with(priced).await;
    app.mock.push(Script {
        reported_tokens: Some((20, 6)),
        cached_tokens: Some(3),
        cache_write_tokens: Some((2, 0)),
        reasoning_tokens: Some(2),
        ..Default::default()
    });
    assert_eq!(app.chat(&chat_body("hello there")).await.status(), 200);
    let r = app.records(1).await.remove(0);
    assert_eq!(
        (
            r.input_tokens,
            r.cached_input_tokens,
            r.cache_write_5m_tokens,
            r.cache_write_1h_tokens
        ),
        (20, 3, 2, 0)
    );
    assert_eq!(
        (r.output_tokens, r.reasoning_tokens, r.estimated),
        (6, 2, false)
    );
    // 15 × 0.20 + 3 × 0.10 + 2 × 0.25 + 4 × 0.30 + 2 × 0.50 = 6 µ$.
    assert_eq!(r.cost_nanos, 6_000);
    assert_eq!(r.cost_nanos, cost_by_kind(&r));
}

/// The test model served by the app's mock speaking Anthropic's Messages API.
async fn anthropic_app() -> TestApp {
    TestApp::spawn_with(|c| {
        priced(c);
        c.providers[0].kind = anthropic_kind(&c.providers[0]);
    })
    .await
}

#[tokio::test]
async fn anthropic_cache_writes_are_billed_by_lifetime_and_shown_to_the_client() {
    let app = anthropic_app().await;
    app.mock.push(Script {
        cached_tokens: Some(2),
        cache_write_tokens: Some((3, 4)),
        ..Script::reply("Paris is the capital.")
    });
    let body = chat_body("What is the capital of France, in one short sentence please?");
    let resp = app.chat(&body).await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    let r = app.records(1).await.remove(0);
    assert_eq!(
        (
            r.cached_input_tokens,
            r.cache_write_5m_tokens,
            r.cache_write_1h_tokens
        ),
        (2, 3, 4)
    );
    assert!(
        r.input_tokens > 9,
        "the prompt includes its cache reads and writes: {r:?}"
    );
    assert_eq!(answer["usage"]["prompt_tokens"], json!(r.input_tokens));
    assert_eq!(
        answer["usage"]["prompt_tokens_details"],
        json!({"cached_tokens": 2, "cache_write_tokens": 7, "cache_write_1h_tokens": 4})
    );
    assert_eq!(r.cost_nanos, cost_by_kind(&r));
    assert!(!r.estimated);
}

#[tokio::test]
async fn an_anthropic_stream_cut_early_bills_the_prompt_counts_the_provider_reported() {
    let app = anthropic_app().await;
    let prompt = "Count slowly from one to twenty and say nothing else at all";
    // The same prompt answered whole: the provider's exact prompt counts.
    app.mock.push(Script {
        cached_tokens: Some(2),
        ..Script::reply("one two three four five six")
    });
    assert_eq!(app.chat(&chat_body(prompt)).await.status(), 200);
    // Then streamed and cut after two content chunks.
    app.mock.push(Script {
        cached_tokens: Some(2),
        cut_after_chunks: Some(2),
        ..Script::reply("one two three four five six")
    });
    let mut body = chat_body(prompt);
    body["stream"] = json!(true);
    let resp = app.chat(&body).await;
    let _ = resp.text().await;
    let records = app.records(2).await;
    let (whole, cut) = (&records[0], &records[1]);
    assert!(cut.stream && !whole.stream);
    assert_eq!(
        (cut.input_tokens, cut.cached_input_tokens),
        (whole.input_tokens, whole.cached_input_tokens),
        "the prompt is billed as the provider reported it, not estimated"
    );
    assert!(cut.estimated, "the output part is our count, and says so");
    assert!(cut.output_tokens >= 1);
    assert_eq!(cut.cost_nanos, cost_by_kind(cut));
}

#[tokio::test]
async fn the_export_holds_every_field_we_keep_of_a_request() {
    let app = TestApp::spawn_with(priced).await;
    app.mock.push(Script {
        cached_tokens: Some(1),
        cache_write_tokens: Some((2, 0)),
        reasoning_tokens: Some(1),
        ..Default::default()
    });
    assert_eq!(
        app.chat(&chat_body("one two three four")).await.status(),
        200
    );
    let r = app.records(1).await.remove(0);
    let path = format!(
        "/api/v1/accounts/{}/usage/export?format=json",
        app.account_id
    );
    let (status, rows) = api(&app, Method::GET, &path, Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 200, "{rows}");
    let row = &rows[0];
    let record = serde_json::to_value(&r).unwrap();
    // Every field of the stored record is exported (times as RFC 3339, cost as USD too).
    for (field, value) in record.as_object().unwrap() {
        let exported = match field.as_str() {
            "started_ms" => &row["started_at"],
            "finished_ms" => &row["finished_at"],
            "latency_us" => &row["latency_ms"],
            "ttft_us" => &row["ttft_ms"],
            _ => &row[field],
        };
        assert!(
            !exported.is_null() || value.is_null(),
            "{field} is not exported: {row}"
        );
        if !field.ends_with("_ms") && !field.ends_with("_us") {
            assert_eq!(exported, value, "{field}");
        }
    }
    assert_eq!(row["attempts"], 1);
    assert_eq!(row["provider"], "mock");
    assert_eq!(
        (
            row["cache_write_5m_tokens"].as_u64(),
            row["reasoning_tokens"].as_u64()
        ),
        (Some(2), Some(1))
    );
}
