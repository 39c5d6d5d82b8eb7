//! Usage analytics from rollups and streamed exports, cross-checked against the raw records.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

fn analytics_path(app: &TestApp, query: &str) -> String {
    format!("/api/v1/accounts/{}/usage?{query}", app.account_id)
}

#[tokio::test]
async fn analytics_totals_series_and_breakdowns_match_the_records() {
    let app = TestApp::spawn().await;
    for i in 0..4 {
        let mut body = chat_body("one two three");
        if i == 3 {
            body["stream"] = json!(true);
        }
        let resp = app.chat(&body).await;
        assert_eq!(resp.status(), 200);
        let _ = resp.bytes().await;
    }
    app.mock.push(mock_upstream::Script {
        omit_usage: true,
        ..Default::default()
    });
    assert_eq!(
        app.chat(&chat_body("what is the capital of France"))
            .await
            .status(),
        200
    );
    assert_eq!(
        app.chat(&json!({"model": "nope", "messages": []}))
            .await
            .status(),
        404
    );
    let records = app.records(6).await;
    let cost: i64 = records.iter().map(|r| r.cost_nanos).sum();
    let input: u64 = records.iter().map(|r| r.input_tokens).sum();

    for range in ["range=24h", "range=7d&bucket=hour", "range=30d&bucket=day"] {
        let (status, a) = api(
            &app,
            Method::GET,
            &analytics_path(&app, &format!("{range}&group_by=model")),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
        assert_eq!(status, 200, "{a}");
        let t = &a["totals"];
        assert_eq!(t["requests"], 6, "{range}: {a}");
        assert_eq!(t["cost_nanos"], cost);
        assert_eq!(t["input_tokens"].as_u64(), Some(input));
        assert_eq!(t["estimated_requests"], 1, "estimated rows are labelled");
        assert_eq!(t["error_requests"], 1);
        let series_sum: i64 = a["series"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["cost_nanos"].as_i64().unwrap())
            .sum();
        assert_eq!(series_sum, cost, "series add up to the totals");
        let model = a["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["group"] == MODEL)
            .unwrap();
        assert_eq!(model["requests"], 5);
    }
    let (_, by_key) = api(
        &app,
        Method::GET,
        &analytics_path(&app, "range=24h&group_by=key"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(by_key["groups"][0]["group"], app.key_id);
    assert_eq!(by_key["groups"][0]["requests"], 6);

    for bad in [
        "range=1y",
        "bucket=week",
        "group_by=color",
        "from=yesterday",
        "from=2026-01-02&to=2026-01-01",
        "range=24h&from=2026-01-01",
    ] {
        let (status, err) = api(
            &app,
            Method::GET,
            &analytics_path(&app, bad),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert!(err["error"]["field"].is_string(), "{err}");
    }
}

#[tokio::test]
async fn exports_stream_csv_and_json_with_documented_columns() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        assert_eq!(app.chat(&chat_body("one two three")).await.status(), 200);
    }
    app.mock.push(mock_upstream::Script {
        omit_usage: true,
        ..Default::default()
    });
    assert_eq!(app.chat(&chat_body("hello")).await.status(), 200);
    let records = app.records(4).await;
    let base = format!("/api/v1/accounts/{}/usage/export", app.account_id);

    let resp = app
        .client
        .get(app.url(&format!("{base}?format=csv")))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = resp.text().await.unwrap();
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(
        lines[0],
        instagen::usage::export::request_columns().join(",")
    );
    assert_eq!(lines.len(), 5);
    assert!(lines.iter().any(|l| l.contains(&*records[0].request_id)));
    assert!(
        lines.iter().any(|l| l.contains(",true,")),
        "estimated flag exported"
    );

    let (status, json) = api(
        &app,
        Method::GET,
        &format!("{base}?format=json"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 4);
    let total: i64 = rows.iter().map(|r| r["cost_nanos"].as_i64().unwrap()).sum();
    assert_eq!(total, records.iter().map(|r| r.cost_nanos).sum::<i64>());
    assert_eq!(rows.iter().filter(|r| r["estimated"] == true).count(), 1);

    let (status, days) = api(
        &app,
        Method::GET,
        &format!("{base}?format=json&granularity=day"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(days[0]["requests"], 4);
    assert_eq!(days[0]["model"], MODEL);
    assert_eq!(days[0]["estimated_requests"], 1);

    let (status, err) = api(
        &app,
        Method::GET,
        &format!("{base}?format=xml"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (400, Some("format"))
    );
}

#[tokio::test]
async fn json_export_spans_many_pages_and_stays_valid() {
    let app = TestApp::spawn().await;
    let now = instagen::time::now_ms();
    let records: Vec<instagen::usage::UsageRecord> = (0..2_345)
        .map(|i| instagen::usage::UsageRecord {
            request_id: format!("req_page_{i:06}").into(),
            account_id: app.account_id.clone().into(),
            key_id: app.key_id.clone().into(),
            endpoint: "chat.completions".into(),
            model: Some(MODEL.into()),
            started_ms: now - 1000 + (i % 7),
            finished_ms: now,
            status: 200,
            input_tokens: 1,
            output_tokens: 2,
            cost_nanos: 3,
            ..Default::default()
        })
        .collect();
    app.store.insert_usage(&records).await.unwrap();
    let base = format!("/api/v1/accounts/{}/usage/export", app.account_id);
    let (status, json) = api(
        &app,
        Method::GET,
        &format!("{base}?format=json"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let rows = json.as_array().expect("valid JSON array");
    assert_eq!(rows.len(), 2_345);
    let mut ids: Vec<&str> = rows
        .iter()
        .map(|r| r["request_id"].as_str().unwrap())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 2_345, "each record exactly once across pages");
    let (_, a) = api(
        &app,
        Method::GET,
        &format!("/api/v1/accounts/{}/usage?range=24h", app.account_id),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(a["totals"]["cost_nanos"], 3 * 2_345);
    let _: Value = json;
}

/// Benchmark, not a gate: `cargo test --release --test api -- --ignored --nocapture million`.
/// Loads 1M records spread over 30 days, then times the 30-day analytics query.
#[tokio::test]
#[ignore = "benchmark; run by hand with --release"]
async fn million_record_analytics_benchmark() {
    let app = TestApp::spawn().await;
    let now = instagen::time::now_ms();
    let span = 30 * 86_400_000i64;
    let started = std::time::Instant::now();
    let models = ["test-model", "model-b", "model-c"];
    for batch in 0..100 {
        let records: Vec<instagen::usage::UsageRecord> = (0..10_000)
            .map(|i| {
                let n = batch * 10_000 + i;
                instagen::usage::UsageRecord {
                    request_id: format!("req_bench_{n:08}").into(),
                    account_id: app.account_id.clone().into(),
                    key_id: app.key_id.clone().into(),
                    endpoint: "chat.completions".into(),
                    model: Some(models[n as usize % 3].into()),
                    started_ms: now - span + (n as i64 * span / 1_000_000),
                    finished_ms: now,
                    status: 200,
                    input_tokens: 100,
                    output_tokens: 50,
                    cost_nanos: 35_000,
                    ..Default::default()
                }
            })
            .collect();
        app.store.insert_usage(&records).await.unwrap();
    }
    let load = started.elapsed();
    let path = format!(
        "/api/v1/accounts/{}/usage?range=30d&bucket=day&group_by=model",
        app.account_id
    );
    let mut timings = Vec::new();
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let (status, a) = api(&app, Method::GET, &path, Some(ADMIN_TOKEN), None).await;
        timings.push(t.elapsed());
        assert_eq!(status, 200);
        assert_eq!(a["totals"]["requests"], 1_000_000);
    }
    let t = std::time::Instant::now();
    let (_, hourly) = api(
        &app,
        Method::GET,
        &format!(
            "/api/v1/accounts/{}/usage?range=7d&bucket=hour&group_by=key",
            app.account_id
        ),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    let hourly_t = t.elapsed();
    assert!(hourly["totals"]["requests"].as_i64().unwrap() > 0);
    timings.sort();
    // The summary per model and the breakdown per endpoint: rollups, the records only at
    // the edges.
    let (from, to) = (now - span - 1_234, now + 1);
    let t = std::time::Instant::now();
    let by_model = app
        .store
        .usage_by_model(&app.account_id, from, to)
        .await
        .unwrap();
    let by_model_t = t.elapsed();
    assert_eq!(by_model.iter().map(|m| m.requests).sum::<i64>(), 1_000_000);
    let t = std::time::Instant::now();
    let by_endpoint = app
        .store
        .usage_by_endpoint(&app.account_id, from, to)
        .await
        .unwrap();
    let by_endpoint_t = t.elapsed();
    assert_eq!(
        by_endpoint.iter().map(|p| p.requests).sum::<i64>(),
        1_000_000
    );
    println!(
        "BENCH 1M records loaded in {:.1}s ({:.0} records/s incl. rollup triggers); 30d/day/model query median {:?} (min {:?}); 7d/hour/key {:?}; 30d summary per model {:?}, per endpoint {:?}",
        load.as_secs_f64(),
        1e6 / load.as_secs_f64(),
        timings[2],
        timings[0],
        hourly_t,
        by_model_t,
        by_endpoint_t
    );
}

/// The console's request log and endpoint breakdown: every request's metadata, newest
/// first and paged, one key's alone, one by its id; never anyone else's.
#[tokio::test]
async fn request_log_and_endpoint_breakdown_give_each_request_s_metadata_to_its_account() {
    let app = TestApp::spawn().await;
    for _ in 0..2 {
        assert_eq!(app.chat(&chat_body("one two three")).await.status(), 200);
    }
    let resp = app
        .client
        .post(app.url("/v1/responses"))
        .bearer_auth(&app.key)
        .json(&json!({"model": MODEL, "input": "four five"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let records = app.records(3).await;
    let cost: i64 = records.iter().map(|r| r.cost_nanos).sum();

    // By endpoint: the two chat completions and the Responses call, adding up to the total.
    let (status, a) = api(
        &app,
        Method::GET,
        &analytics_path(&app, "range=24h&group_by=endpoint"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{a}");
    let groups = a["groups"].as_array().unwrap();
    let of = |e: &str| groups.iter().find(|g| g["group"] == e).cloned();
    assert_eq!(of("chat.completions").unwrap()["requests"], 2, "{a}");
    assert_eq!(of("responses").unwrap()["requests"], 1, "{a}");
    let sum: i64 = groups
        .iter()
        .map(|g| g["cost_nanos"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, cost);
    assert_eq!(a["totals"]["cost_nanos"], cost);

    // The log, two at a time, newest first: every request once.
    let base = format!("/api/v1/accounts/{}/requests", app.account_id);
    let (status, first) = api(
        &app,
        Method::GET,
        &format!("{base}?limit=2"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{first}");
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();
    let (_, second) = api(
        &app,
        Method::GET,
        &format!("{base}?limit=2&cursor={cursor}"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert!(second["next_cursor"].is_null(), "{second}");
    let seen: Vec<Value> = first["data"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["data"].as_array().unwrap())
        .cloned()
        .collect();
    assert_eq!(seen.len(), 3, "{first} {second}");
    let started: Vec<i64> = seen
        .iter()
        .map(|g| g["started_ms"].as_i64().unwrap())
        .collect();
    assert!(started.windows(2).all(|w| w[0] >= w[1]), "{started:?}");
    for r in &records {
        let g = seen
            .iter()
            .find(|g| g["id"] == *r.request_id)
            .unwrap_or_else(|| panic!("{} is not in the log", r.request_id));
        assert_eq!(g["tokens"]["input"].as_u64(), Some(r.input_tokens));
        assert_eq!(
            g["cost_usd"],
            instagen::billing::Money::from_nanos(r.cost_nanos).to_string()
        );
        assert!(g.get("messages").is_none() && g.get("input").is_none());
    }

    // One key's log; another key's is empty.
    let (_, mine) = api(
        &app,
        Method::GET,
        &format!("{base}?key_id={}", app.key_id),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(mine["data"].as_array().unwrap().len(), 3);
    let (_, other) = api(
        &app,
        Method::GET,
        &format!("{base}?key_id=no-such-key"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(other["data"], json!([]));

    // One record by its request id; an unknown id, or one asked of another account, is 404.
    let id = &records[0].request_id;
    let (status, one) = api(
        &app,
        Method::GET,
        &format!("{base}/{id}"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["id"], id.as_ref() as &str);
    assert_eq!(one["key_id"], app.key_id.as_str());
    let (status, _) = api(
        &app,
        Method::GET,
        &format!("{base}/req_nope"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, other) = api(
        &app,
        Method::POST,
        "/api/v1/accounts",
        Some(ADMIN_TOKEN),
        Some(&json!({"name": "elsewhere"})),
    )
    .await;
    assert_eq!(status, 201, "{other}");
    let elsewhere = other["account"]["id"]
        .as_str()
        .or(other["id"].as_str())
        .unwrap();
    let (status, _) = api(
        &app,
        Method::GET,
        &format!("/api/v1/accounts/{elsewhere}/requests/{id}"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 404, "a record is found only under its own account");

    for (bad, field) in [
        ("limit=0", "limit"),
        ("cursor=nonsense", "cursor"),
        ("key_id=", "key_id"),
    ] {
        let (status, err) = api(
            &app,
            Method::GET,
            &format!("{base}?{bad}"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
        assert_eq!(status, 400, "{bad}: {err}");
        assert_eq!(err["error"]["field"], field, "{bad}: {err}");
    }
}

/// A key's page shows its spend against its spend limit in the limit's period.
#[tokio::test]
async fn a_key_read_alone_carries_its_spend_against_its_spend_limit() {
    let app = TestApp::spawn().await;
    let path = format!("/api/v1/accounts/{}/keys/{}", app.account_id, app.key_id);
    let (status, patched) = api(
        &app,
        Method::PATCH,
        &path,
        Some(ADMIN_TOKEN),
        Some(&json!({"limits": {"spend_limit_usd": "1", "spend_limit_period": "day"}})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(app.chat(&chat_body("one two three")).await.status(), 200);
    let cost = app.records(1).await[0].cost_nanos;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let key = loop {
        let (status, key) = api(&app, Method::GET, &path, Some(ADMIN_TOKEN), None).await;
        assert_eq!(status, 200, "{key}");
        if key["spend"]["today"]["requests"] == 1 {
            break key;
        }
        assert!(std::time::Instant::now() < deadline, "{key}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let usd = |n: i64| instagen::billing::Money::from_nanos(n).to_string();
    let spend = &key["spend"];
    assert_eq!(spend["period"], "day");
    assert_eq!(spend["limit_usd"], "1.000000000");
    assert_eq!(spend["spent_in_period_usd"], usd(cost));
    assert_eq!(spend["remaining_usd"], usd(1_000_000_000 - cost));
    assert_eq!(spend["this_month"]["cost_nanos"], cost);
    assert_eq!(
        spend["period_start_ms"],
        instagen::time::day_start_ms(instagen::time::now_ms())
    );
    // Lists stay lean: the spend comes with a single key only.
    let (_, list) = api(
        &app,
        Method::GET,
        &format!("/api/v1/accounts/{}/keys", app.account_id),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert!(list["data"][0].get("spend").is_none(), "{list}");
}

/// A summary by model or by endpoint over any range (whole days, hours and minutes read
/// from the rollups, the edges from the records; minute rollups older than two days
/// purged) adds up to exactly what the records in that range add up to, value by value.
pub(crate) async fn check_summaries_match_the_records(store: &instagen::store::Store) {
    use instagen::usage::UsageRecord;
    use std::collections::BTreeMap;
    let account = store.create_account("summaries").await.unwrap().id;
    let now = instagen::time::now_ms();
    // A small deterministic generator: the same records every run.
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |below: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % below
    };
    let models = [Some("alpha"), Some("beta"), None];
    let endpoints = ["chat.completions", "messages", "responses"];
    let records: Vec<UsageRecord> = (0..600)
        .map(|i| {
            let started = now - next(5 * 86_400_000) as i64;
            UsageRecord {
                request_id: format!("req_sum_{i:05}").into(),
                account_id: account.clone().into(),
                key_id: format!("key_{}", next(3)).into(),
                endpoint: endpoints[next(3) as usize].into(),
                model: models[next(3) as usize].map(Into::into),
                started_ms: started,
                finished_ms: started + 5,
                status: 200,
                input_tokens: next(1_000),
                cached_input_tokens: next(50),
                cache_write_5m_tokens: next(20),
                cache_write_1h_tokens: next(20),
                output_tokens: next(500),
                reasoning_tokens: next(30),
                cost_nanos: next(1_000_000) as i64,
                attempts: 1,
                ..UsageRecord::default()
            }
        })
        .collect();
    for chunk in records.chunks(97) {
        store.insert_usage(chunk).await.unwrap();
    }
    // Minute rollups older than two days go; no record is old enough to be purged.
    store.purge(0).await.unwrap();

    let expected = |from: i64, to: i64, group: fn(&UsageRecord) -> &str| {
        let mut by_group: BTreeMap<String, [i64; 8]> = BTreeMap::new();
        for r in records
            .iter()
            .filter(|r| from <= r.started_ms && r.started_ms < to)
        {
            let sums = by_group.entry(group(r).to_owned()).or_default();
            let values = [
                1,
                r.input_tokens as i64,
                r.cached_input_tokens as i64,
                r.cache_write_5m_tokens as i64,
                r.cache_write_1h_tokens as i64,
                r.output_tokens as i64,
                r.reasoning_tokens as i64,
                r.cost_nanos,
            ];
            for (s, v) in sums.iter_mut().zip(values) {
                *s += v;
            }
        }
        by_group.into_iter().collect::<Vec<_>>()
    };
    let mut windows = vec![(0, i64::MAX), (now - 6 * 86_400_000, now + 1)];
    for scale in [1_000, 60_000, 3_600_000, 86_400_000, 3 * 86_400_000] {
        for _ in 0..8 {
            let from = now - 5 * 86_400_000 - 60_000 + next(5 * 86_400_000) as i64;
            windows.push((from, from + 1 + next(scale) as i64));
        }
    }
    for (from, to) in windows {
        let got: Vec<(String, [i64; 8])> = store
            .usage_by_model(&account, from, to)
            .await
            .unwrap()
            .into_iter()
            .map(|t| {
                let sums = [
                    t.requests,
                    t.input_tokens,
                    t.cached_input_tokens,
                    t.cache_write_5m_tokens,
                    t.cache_write_1h_tokens,
                    t.output_tokens,
                    t.reasoning_tokens,
                    t.cost_nanos,
                ];
                (t.model, sums)
            })
            .collect();
        let by_model = expected(from, to, |r| r.model.as_deref().unwrap_or(""));
        assert_eq!(got, by_model, "models in [{from}, {to}), now {now}");
        let got: Vec<(String, [i64; 8])> = store
            .usage_by_endpoint(&account, from, to)
            .await
            .unwrap()
            .into_iter()
            .map(|p| {
                let sums = [
                    p.requests,
                    p.input_tokens,
                    p.cached_input_tokens,
                    p.cache_write_5m_tokens,
                    p.cache_write_1h_tokens,
                    p.output_tokens,
                    p.reasoning_tokens,
                    p.cost_nanos,
                ];
                (p.group.unwrap_or_default(), sums)
            })
            .collect();
        let by_endpoint = expected(from, to, |r| &r.endpoint);
        assert_eq!(got, by_endpoint, "endpoints in [{from}, {to}), now {now}");
    }
}

#[tokio::test]
async fn model_and_endpoint_summaries_read_from_the_rollups_add_up_to_the_records() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("summaries.db").display());
    let store = instagen::store::Store::open(&url).await.unwrap();
    check_summaries_match_the_records(&store).await;
    store.close().await;
}
