//! Several routes per model: weighted balancing, ejection and failover before the first
//! byte, 429 back-off, no retry after the first byte, and minimised third-party bodies.

use std::time::Duration;

use instagen::config::{Config, ProviderConfig, ProviderKind, RouteConfig};
use mock_upstream::{MockUpstream, Script};
use serde_json::json;

use crate::helpers::*;

pub fn provider(name: &str, base_url: String, third_party: bool) -> ProviderConfig {
    let kind = ProviderKind::Openai {
        base_url,
        responses: Default::default(),
    };
    let mut p = ProviderConfig::new(name, kind);
    p.third_party = third_party;
    p.connect_timeout_ms = 1_000;
    p.ttfb_timeout_ms = 5_000;
    p.idle_timeout_ms = 5_000;
    p.request_timeout_ms = 10_000;
    p
}

/// The test model's routes: the app's own mock first (as `first_upstream`, else the
/// model's name), then provider `backup` when the first fails.
pub fn mock_then_backup(c: &mut Config, first_upstream: Option<&str>) {
    c.models[0].provider = None;
    c.models[0].routes = vec![
        RouteConfig {
            upstream_model: first_upstream.map(str::to_owned),
            ..route("mock", 1, 0)
        },
        route("backup", 1, 1),
    ];
}

fn route(provider: &str, weight: u32, priority: u32) -> RouteConfig {
    RouteConfig {
        provider: provider.to_owned(),
        upstream_model: None,
        weight,
        priority,
    }
}

/// The test model served by the app's own mock (`mock`, as route 0) plus `extra` routes.
fn with_routes(
    c: &mut Config,
    providers: Vec<ProviderConfig>,
    first: RouteConfig,
    extra: Vec<RouteConfig>,
) {
    c.providers.extend(providers);
    c.models[0].provider = None;
    c.models[0].routes = std::iter::once(first).chain(extra).collect();
}

#[tokio::test]
async fn balancing_spreads_load_by_weight() {
    let other = MockUpstream::start().await.unwrap();
    let base = other.base_url();
    let app = TestApp::spawn_with(move |c| {
        with_routes(
            c,
            vec![provider("other", base, false)],
            route("mock", 3, 0),
            vec![route("other", 1, 0)],
        )
    })
    .await;
    for _ in 0..200 {
        assert_eq!(app.chat(&chat_body("x")).await.status(), 200);
    }
    let (a, b) = (app.mock.requests().len(), other.requests().len());
    assert_eq!(a + b, 200);
    assert!((120..=180).contains(&a), "weight 3:1 gave {a}:{b}");
    let records = app.records(200).await;
    assert!(records.iter().all(|r| r.attempts == 1));
    assert_eq!(
        records
            .iter()
            .filter(|r| r.provider.as_deref() == Some("other"))
            .count(),
        b
    );
}

#[tokio::test]
async fn a_dead_route_is_ejected_and_traffic_fails_over_without_client_errors() {
    let held = dead_addr();
    let dead = format!("http://127.0.0.1:{}/v1", held.port);
    let app = TestApp::spawn_with(move |c| {
        with_routes(
            c,
            vec![provider("dead", dead, false)],
            route("mock", 1, 0),
            vec![route("dead", 1, 0)],
        )
    })
    .await;
    for _ in 0..30 {
        assert_eq!(
            app.chat(&chat_body("x")).await.status(),
            200,
            "no client error"
        );
    }
    let records = app.records(30).await;
    assert!(
        records
            .iter()
            .all(|r| r.provider.as_deref() == Some("mock") && r.status == 200)
    );
    let failovers = records.iter().filter(|r| r.attempts == 2).count();
    assert!(
        (1..=3).contains(&failovers),
        "the dead route is ejected after its failures: {failovers}"
    );
    assert_eq!(
        app.mock.requests().len(),
        30,
        "exactly one successful upstream call per request"
    );
}

#[tokio::test]
async fn a_429_upstream_is_backed_off_and_the_fallback_tier_serves() {
    let primary = MockUpstream::start().await.unwrap();
    primary.set_default(Script {
        retry_after: Some(30),
        ..Script::status(429)
    });
    let base = primary.base_url();
    let app = TestApp::spawn_with(move |c| {
        with_routes(
            c,
            vec![provider("primary", base, false)],
            route("primary", 1, 0),
            vec![route("mock", 1, 1)],
        )
    })
    .await;
    for _ in 0..10 {
        assert_eq!(app.chat(&chat_body("x")).await.status(), 200);
    }
    assert_eq!(
        primary.requests().len(),
        1,
        "after one 429 the route rests for its Retry-After"
    );
    let records = app.records(10).await;
    assert_eq!(records.iter().filter(|r| r.attempts == 2).count(), 1);
    assert!(
        records
            .iter()
            .all(|r| r.provider.as_deref() == Some("mock"))
    );
}

#[tokio::test]
async fn a_mid_stream_failure_is_not_retried_and_yields_one_record() {
    let backup = MockUpstream::start().await.unwrap();
    let base = backup.base_url();
    let app = TestApp::spawn_with(move |c| {
        with_routes(
            c,
            vec![provider("backup", base, false)],
            route("mock", 1, 0),
            vec![route("backup", 1, 1)],
        )
    })
    .await;
    app.mock.push(Script {
        cut_after_chunks: Some(2),
        ..Default::default()
    });
    let mut body = chat_body("x");
    body["stream"] = json!(true);
    let events = sse_events(app.chat(&body).await).await;
    assert!(
        events
            .last()
            .unwrap()
            .contains("upstream_stream_interrupted")
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records = app.records(1).await;
    assert_eq!(records.len(), 1, "exactly one record, never double billing");
    assert_eq!((records[0].attempts, records[0].status), (1, 502));
    assert!(
        backup.requests().is_empty(),
        "no retry once bytes reached the client"
    );
}

#[tokio::test]
async fn a_third_party_upstream_receives_only_the_fields_it_needs() {
    let third = MockUpstream::start().await.unwrap();
    let base = third.base_url();
    let app = TestApp::spawn_with(move |c| {
        with_routes(
            c,
            vec![provider("vendor", base, true)],
            route("vendor", 1, 0),
            vec![],
        )
    })
    .await;
    let body = json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": "hello"}],
        "temperature": 0.2,
        "user": "alice@example.com",
        "metadata": {"customer": "alice"},
        "store": true,
        "safety_identifier": "alice-hash",
        "x_internal_note": "internal",
    });
    assert_eq!(app.chat(&body).await.status(), 200);
    let seen = third.requests()[0].json();
    let mut keys: Vec<&str> = seen
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["messages", "model", "temperature"]);
    assert!(!third.requests()[0].body.windows(5).any(|w| w == b"alice"));

    // At every level: inside messages, content parts, tool calls and stream options.
    let nested = json!({
        "model": MODEL,
        "stream": true,
        "stream_options": {"include_usage": false, "zzz": "alice"},
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hello", "zzz": "alice"}], "zzz": "alice"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}", "zzz": "alice"}}
            ]},
            {"role": "tool", "tool_call_id": "c1", "content": "ok", "metadata": {"who": "alice"}}
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}, "zzz": "alice"}],
    });
    let resp = app.chat(&nested).await;
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let sent = third.requests()[1].clone();
    assert!(
        !sent.body.windows(5).any(|w| w == b"alice"),
        "{}",
        sent.json()
    );
    assert!(!sent.body.windows(3).any(|w| w == b"zzz"));
    let seen = sent.json();
    assert_eq!(seen["stream_options"], json!({"include_usage": true}));
    assert_eq!(seen["messages"][0]["content"][0]["text"], "hello");
    assert_eq!(
        seen["messages"][1]["tool_calls"][0]["function"]["name"],
        "f"
    );
    assert_eq!(seen["messages"][2]["tool_call_id"], "c1");

    // A key given twice anywhere is refused before anything is sent.
    let twice = r#"{"model":"MODEL","messages":[{"role":"user","content":"a","content":"b"}]}"#
        .replace("MODEL", MODEL);
    let resp = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .body(twice)
        .send()
        .await
        .unwrap();
    let refused = openai_error(resp, 400).await;
    assert_eq!(refused["error"]["param"], "messages", "{refused}");
    assert_eq!(third.requests().len(), 2);

    // A first-party route gets the body unchanged.
    let first_party = TestApp::spawn().await;
    let resp = first_party.chat(&body).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let seen = first_party.mock.requests()[0].json();
    assert_eq!(seen["user"], "alice@example.com");
    assert_eq!(seen["x_internal_note"], "internal");
    // On every route, a top-level key given twice is a 400: we must not meter one request
    // while the upstream serves another.
    let resp = first_party
        .client
        .post(first_party.url("/v1/chat/completions"))
        .bearer_auth(&first_party.key)
        .header("content-type", "application/json")
        .body(
            r#"{"model":"MODEL","stream":true,"stream":false,"messages":[]}"#
                .replace("MODEL", MODEL),
        )
        .send()
        .await
        .unwrap();
    let body = openai_error(resp, 400).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`stream`"),
        "{body}"
    );
}

#[tokio::test]
async fn region_restricted_keys_never_leave_their_region_even_under_failover() {
    let eu = MockUpstream::start().await.unwrap();
    let eu_base = eu.base_url();
    let held = dead_addr();
    let dead_eu = format!("http://127.0.0.1:{}/v1", held.port);
    let app = TestApp::spawn_with(move |c| {
        c.providers[0].region = Some("us".into());
        let mut p = provider("eu", eu_base, false);
        p.region = Some("eu".into());
        let mut d = provider("eu-dead", dead_eu, false);
        d.region = Some("eu".into());
        with_routes(
            c,
            vec![p, d],
            route("mock", 1, 0),
            vec![route("eu", 1, 1), route("eu-dead", 1, 2)],
        );
    })
    .await;
    let keys = format!("/api/v1/accounts/{}/keys", app.account_id);
    let mk = |regions: serde_json::Value| json!({"name": "regional", "allowed_regions": regions});
    let (_, eu_key) = api(
        &app,
        reqwest::Method::POST,
        &keys,
        Some(ADMIN_TOKEN),
        Some(&mk(json!(["eu"]))),
    )
    .await;
    let eu_key = eu_key["secret"].as_str().unwrap().to_owned();
    let (_, ap_key) = api(
        &app,
        reqwest::Method::POST,
        &keys,
        Some(ADMIN_TOKEN),
        Some(&mk(json!(["ap"]))),
    )
    .await;
    let ap_key = ap_key["secret"].as_str().unwrap().to_owned();

    // The us route is tier 0, yet an eu-only key is served in the eu.
    assert_eq!(chat_status(&app, &eu_key, 200).await.0, 200);
    for _ in 0..4 {
        assert_eq!(chat_status(&app, &eu_key, 200).await.0, 200);
    }
    assert!(
        app.mock.requests().is_empty(),
        "nothing went to the us provider"
    );
    let records = app.records(5).await;
    assert!(
        records.iter().all(|r| r.region.as_deref() == Some("eu")),
        "records carry the region"
    );

    // When the eu routes fail, the request fails rather than leaving the eu.
    eu.set_default(Script::status(503));
    let (status, _) = chat_status(&app, &eu_key, 502).await;
    assert_eq!(status, 502);
    assert!(
        app.mock.requests().is_empty(),
        "no fallback outside the region"
    );

    // A key whose regions no provider serves gets a clear 403.
    let (status, body) = chat_status(&app, &ap_key, 403).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("region_restricted"))
    );

    // An unrestricted key still uses the us tier.
    assert_eq!(app.chat(&chat_body("x")).await.status(), 200);
    assert_eq!(app.mock.requests().len(), 1);

    // An operator restricts the whole account to the eu: its unrestricted key inherits it
    // (within the key cache's refresh), and a failing eu still never falls back to the us.
    let account = format!("/api/v1/accounts/{}", app.account_id);
    let (status, body) = api(
        &app,
        reqwest::Method::PATCH,
        &account,
        Some(ADMIN_TOKEN),
        Some(&json!({"allowed_regions": ["eu"]})),
    )
    .await;
    assert_eq!(
        (status, body["allowed_regions"].clone()),
        (200, json!(["eu"]))
    );
    until_key_table_shows(&app, &app.key, |_, k| {
        k["data"]["allowed_regions"] == json!(["eu"])
    })
    .await;
    assert_eq!(app.chat(&chat_body("x")).await.status(), 502);
    assert_eq!(
        app.mock.requests().len(),
        1,
        "the account's key stayed in the eu"
    );
    eu.set_default(Script::default());
    assert_eq!(app.chat(&chat_body("x")).await.status(), 200);
    assert_eq!(app.mock.requests().len(), 1);
    // Key ∩ account: the ap-only key of an eu-only account may go nowhere.
    assert_eq!(chat_status(&app, &ap_key, 403).await.0, 403);

    // Lifting the restriction (null) sends the account's traffic to the us tier again.
    let (status, _) = api(
        &app,
        reqwest::Method::PATCH,
        &account,
        Some(ADMIN_TOKEN),
        Some(&json!({"allowed_regions": null})),
    )
    .await;
    assert_eq!(status, 200);
    until_key_table_shows(&app, &app.key, |_, k| {
        k["data"]["allowed_regions"].is_null()
    })
    .await;
    assert_eq!(app.chat(&chat_body("x")).await.status(), 200);
    assert_eq!(app.mock.requests().len(), 2);
}

#[tokio::test]
async fn active_health_checks_take_a_dead_route_out_before_any_request_fails_over() {
    let held = dead_addr();
    let dead = format!("http://127.0.0.1:{}/v1", held.port);
    let app = TestApp::spawn_with(move |c| {
        let mut p = provider("dead", dead, false);
        p.health_check_interval_ms = Some(100);
        c.providers[0].health_check_interval_ms = Some(100);
        with_routes(c, vec![p], route("mock", 1, 0), vec![route("dead", 5, 0)]);
    })
    .await;
    // The probes (every 100 ms) take it out; the gauge an operator scrapes shows when.
    let out = format!("instagen_route_healthy{{model=\"{MODEL}\",provider=\"dead\"}} 0");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let metrics = scrape_metrics(&app).await;
        if metrics.contains(&out) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never ejected: {metrics}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..20 {
        assert_eq!(app.chat(&chat_body("x")).await.status(), 200);
    }
    let records = app.records(20).await;
    assert!(
        records.iter().all(|r| r.attempts == 1),
        "the probed-dead route was never tried"
    );
}

#[tokio::test]
async fn a_much_slower_route_gets_little_traffic() {
    let slow = MockUpstream::start().await.unwrap();
    slow.set_default(Script {
        delay: Duration::from_millis(60),
        ..Default::default()
    });
    let base = slow.base_url();
    let app = TestApp::spawn_with(move |c| {
        with_routes(
            c,
            vec![provider("slow", base, false)],
            route("mock", 1, 0),
            vec![route("slow", 1, 0)],
        )
    })
    .await;
    for _ in 0..60 {
        assert_eq!(app.chat(&chat_body("x")).await.status(), 200);
    }
    let slow_share = slow.requests().len();
    assert!(slow_share <= 15, "the slow route served {slow_share} of 60");
}
