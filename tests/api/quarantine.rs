//! Nothing an upstream sends and nothing a journal holds can stop metering: implausible
//! token counts are billed from our own count, and a record the store refuses is set
//! aside in the quarantine while every other record is written, exactly once.

use std::collections::HashSet;

use serde_json::json;

use crate::helpers::*;
use instagen::usage::UsageRecord;

fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no `{name}` in\n{text}"))
}

#[tokio::test]
async fn implausible_upstream_token_counts_are_billed_from_our_own_count() {
    let app = TestApp::spawn().await;
    let huge = 1u64 << 62;
    for stream in [false, true] {
        app.mock.push(mock_upstream::Script {
            reported_tokens: Some((huge, huge)),
            ..mock_upstream::Script::default()
        });
        let mut body = chat_body("hi");
        if stream {
            body["stream"] = json!(true);
            body["stream_options"] = json!({"include_usage": true});
        }
        let resp = app.chat(&body).await;
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap();
    }
    // A sane answer after them is metered as usual.
    assert_eq!(app.chat(&chat_body("hello")).await.status(), 200);
    let records = app.records(3).await;
    for r in &records {
        assert!(r.input_tokens < 1_000, "{r:?}");
        assert!(r.output_tokens < 1_000, "{r:?}");
        assert!(r.cost_nanos < 1_000_000, "billed {} n$", r.cost_nanos);
    }
    assert_eq!(
        records.iter().filter(|r| r.estimated).count(),
        2,
        "the two implausible reports are billed from our own count, marked estimated"
    );

    let text = scrape_metrics(&app).await;
    assert!(metric(&text, "instagen_upstream_usage_rejected_total") >= 2);
    // Balances, usage and keys still answer for the account.
    let (status, _) = api(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/accounts/{}/billing", app.account_id),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
}

fn journal_line(record: &UsageRecord) -> String {
    serde_json::to_string(record).unwrap() + "\n"
}

#[tokio::test]
async fn poisoned_usage_never_blocks_metering() {
    let app = TestApp::spawn().await;
    assert_eq!(app.chat(&chat_body("before")).await.status(), 200);
    let before = app.records(1).await;
    let account = app.account_id.clone();
    let key = app.key_id.clone();
    let now = instagen::time::now_ms();
    let record = |id: &str| UsageRecord {
        request_id: id.to_owned().into(),
        account_id: account.clone().into(),
        key_id: key.clone().into(),
        endpoint: "chat.completions".into(),
        model: Some(MODEL.into()),
        provider: Some("mock".into()),
        started_ms: now,
        finished_ms: now + 5,
        status: 200,
        input_tokens: 10,
        output_tokens: 5,
        cost_nanos: test_cost(10, 0, 5),
        attempts: 1,
        ..UsageRecord::default()
    };
    // What an older build left after an upstream reported 2^62 tokens: a saturated cost.
    let poisoned = UsageRecord {
        input_tokens: 1 << 62,
        output_tokens: 1 << 62,
        cost_nanos: i64::MAX,
        ..record("poisoned-1")
    };
    let dir = app.data_dir();
    let segment = dir.join("journal").join("usage-000000000900.jsonl");
    let lines = [
        journal_line(&record("good-1")),
        journal_line(&poisoned),
        journal_line(&record("good-2")),
        // A record already stored: replayed, it must not be counted twice.
        journal_line(&before[0]),
    ]
    .concat();
    // The server starts again over the poisoned journal, writes every good record once
    // and sets the bad one aside.
    let app = app
        .restart_with(|_| std::fs::write(&segment, lines).unwrap())
        .await;
    let stored = app.records(3).await;
    let ids: Vec<&str> = stored.iter().map(|r| &*r.request_id).collect();
    assert_eq!(stored.len(), 3, "{ids:?}");
    let ids: HashSet<&str> = ids.into_iter().collect();
    assert!(ids.contains("good-1") && ids.contains("good-2"));
    assert!(!ids.contains("poisoned-1"));
    let quarantined = instagen::usage::Quarantine::new(&dir).list().unwrap();
    assert_eq!(quarantined.len(), 1);
    assert_eq!(quarantined[0].record, poisoned);
    assert!(
        quarantined[0].reason.contains("bound"),
        "{}",
        quarantined[0].reason
    );
    let text = scrape_metrics(&app).await;
    assert_eq!(metric(&text, "instagen_usage_quarantined_total"), 1);

    // Metering goes on, and billing reads the account's balance.
    assert_eq!(app.chat(&chat_body("after")).await.status(), 200);
    app.records(4).await;
    let (status, body) = api(
        &app,
        reqwest::Method::GET,
        &format!("/api/v1/accounts/{}/billing", app.account_id),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(!segment.exists(), "the replayed segment is removed");
}

#[tokio::test]
async fn a_record_the_store_refuses_is_quarantined_and_the_rest_written() {
    let app = TestApp::spawn().await;
    assert_eq!(app.chat(&chat_body("first")).await.status(), 200);
    app.records(1).await;
    // The account's unposted sum is one request away from overflowing i64: the store
    // refuses the next record of this account (SQLite's guard trigger, PostgreSQL's bigint).
    exec_sql(
        &store_url_for(&app.data_dir()),
        "UPDATE usage_unposted SET cost_nanos = 9223372036854775000",
    )
    .await;
    assert_eq!(app.chat(&chat_body("overflows")).await.status(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let quarantine = instagen::usage::Quarantine::new(&app.data_dir());
    while quarantine.list().unwrap().is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let set_aside = quarantine.list().unwrap();
    assert_eq!(set_aside.len(), 1, "the overflowing record is set aside");
    // Once the sum is mended, a retry writes it.
    exec_sql(
        &store_url_for(&app.data_dir()),
        "UPDATE usage_unposted SET cost_nanos = 0",
    )
    .await;
    let outcome = quarantine.retry(&app.store).await.unwrap();
    assert_eq!(
        (outcome.retried, outcome.inserted, outcome.still_quarantined),
        (1, 1, 0)
    );
    assert!(quarantine.list().unwrap().is_empty());
    app.records(2).await;
    // The writer was never stuck: later requests land too.
    assert_eq!(app.chat(&chat_body("later")).await.status(), 200);
    app.records(3).await;
}
