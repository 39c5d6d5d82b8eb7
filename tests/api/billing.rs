//! Prepaid balances, the hash-chained ledger, and budgets that concurrency cannot bypass.

use instagen::billing::ledger::LedgerKind;
use instagen::store::Scope;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

fn prepaid(c: &mut instagen::config::Config) {
    c.billing.prepaid = true;
    c.billing.post_interval_secs = 1;
}

async fn credit(app: &TestApp, usd: &str) -> Value {
    let (status, e) = api(
        app,
        Method::POST,
        &format!("/api/v1/accounts/{}/billing/credits", app.account_id),
        Some(ADMIN_TOKEN),
        Some(&json!({"usd": usd, "memo": "test top-up"})),
    )
    .await;
    assert_eq!(status, 201, "{e}");
    e
}

/// Waits until the budget tracker has picked up the balance (it syncs every second).
async fn wait_available(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        if app.chat(&chat_body("warm")).await.status() == 200 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("credit never became available");
}

/// The reservation the gateway makes for `body` at the test prices (see gateway.rs).
fn reservation(body: &Value, max_tokens: u64) -> i64 {
    let bytes = serde_json::to_vec(body).unwrap().len() as u64;
    test_cost(bytes / 3 + 16, 0, max_tokens)
}

#[tokio::test]
async fn an_empty_prepaid_balance_gets_402_before_any_upstream_call() {
    let app = TestApp::spawn_with(prepaid).await;
    let body = openai_error(app.chat(&chat_body("x")).await, 402).await;
    assert_eq!(body["error"]["code"], "insufficient_quota");
    assert_eq!(body["error"]["type"], "insufficient_quota");
    assert!(app.mock.requests().is_empty());
}

#[tokio::test]
async fn credits_and_usage_build_a_ledger_that_verifies_and_detects_tampering() {
    let app = TestApp::spawn_with(prepaid).await;
    credit(&app, "0.01").await;
    wait_available(&app).await;
    for _ in 0..5 {
        assert_eq!(app.chat(&chat_body("one two three")).await.status(), 200);
    }
    // Wait for the six served requests (the warm-up and five), not the refused warm-ups.
    let mut spent = 0;
    for _ in 0..100 {
        let records = app.records(1).await;
        if records.iter().filter(|r| r.status == 200).count() == 6 {
            spent = records.iter().map(|r| r.cost_nanos).sum();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(spent > 0);

    // Usage is posted to the ledger; balance = credits − usage, exactly.
    let path = format!("/api/v1/accounts/{}/billing", app.account_id);
    let mut view = Value::Null;
    for _ in 0..50 {
        let (_, v) = api(&app, Method::GET, &path, Some(ADMIN_TOKEN), None).await;
        let debits: i64 = v["ledger"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "usage")
            .map(|e| e["amount_nanos"].as_i64().unwrap())
            .sum();
        if -debits == spent {
            view = v;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!view.is_null(), "usage was posted to the ledger");
    assert_eq!(
        view["balance_nanos"].as_i64().unwrap(),
        10_000_000 - spent,
        "{view}"
    );
    assert_eq!(view["unposted_usage_usd"], "0.000000000");
    let (_, analytics) = api(
        &app,
        Method::GET,
        &format!("/api/v1/accounts/{}/usage?range=24h", app.account_id),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(
        analytics["totals"]["cost_nanos"].as_i64().unwrap(),
        spent,
        "records = rollups = ledger debits"
    );

    // The chain verifies; editing or removing an entry is detected.
    let (dir, store) = app.shutdown().await;
    store.close().await;
    let config = dir.path().join("cli.toml");
    std::fs::write(&config, format!("[server]\ndata_dir = \"{d}\"\nsecret = \"{TEST_SECRET}\"\n[store]\nurl = \"{u}\"\n[log]\nlevel = \"warn\"\n", d = dir.path().display(), u = store_url_for(dir.path()))).unwrap();
    let verify = || {
        Command::new(env!("CARGO_BIN_EXE_instagen"))
            .arg("--config")
            .arg(&config)
            .args(["billing", "verify"])
            .output()
            .unwrap()
    };
    let out = verify();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact"));
    let db = store_url_for(dir.path());
    let run_sql = |sql: &'static str| {
        let db = db.clone();
        async move { exec_sql(&db, sql).await }
    };
    run_sql("UPDATE ledger SET amount_nanos = amount_nanos + 1 WHERE seq = 1").await;
    let out = verify();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("entry 1 was altered"));
    run_sql("UPDATE ledger SET amount_nanos = amount_nanos - 1 WHERE seq = 1").await;
    assert!(verify().status.success());
    // Balances read running totals: a total edited to grant free credit is detected too.
    run_sql("UPDATE ledger_totals SET amount_nanos = amount_nanos + 1000000000").await;
    let out = verify();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("running totals BROKEN"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    run_sql("UPDATE ledger_totals SET amount_nanos = amount_nanos - 1000000000").await;
    assert!(verify().status.success());
    run_sql("DELETE FROM ledger WHERE seq = 1").await;
    let out = verify();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_hundred_concurrent_requests_cannot_overrun_a_budget_for_ten() {
    let app = TestApp::spawn_with(prepaid).await;
    let mut body = chat_body("one two three");
    body["max_tokens"] = json!(5);
    let per_request = reservation(&body, 5);
    let warm = reservation(&chat_body("warm"), 1024);
    let budget = 10 * per_request;
    let credit_nanos = budget + warm;
    credit(
        &app,
        &instagen::billing::Money::from_nanos(credit_nanos).to_string(),
    )
    .await;
    wait_available(&app).await;
    // Let the writer and the next sync settle the warm-up request.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    app.mock.set_default(mock_upstream::Script {
        delay: Duration::from_millis(200),
        ..Default::default()
    });
    let mut tasks = Vec::new();
    for _ in 0..100 {
        let (client, url, key, body) = (
            app.client.clone(),
            app.url("/v1/chat/completions"),
            app.key.clone(),
            body.clone(),
        );
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut ok = 0;
    let mut refused = 0;
    for t in tasks {
        match t.await.unwrap() {
            200 => ok += 1,
            402 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok >= 10, "the budget admits at least ten: {ok}");
    assert!(refused > 0, "the rest are refused");
    let spent = served_cost(&app, 1 + ok, None).await;
    assert!(
        spent <= credit_nanos + per_request,
        "spent {spent} of {credit_nanos} (+{per_request} in flight)"
    );
    assert_eq!(
        app.mock.requests().len(),
        1 + ok,
        "refused requests never reached the upstream"
    );
}

#[tokio::test]
async fn a_key_spend_limit_stops_the_key_with_429_insufficient_quota() {
    let app = TestApp::spawn().await;
    let (status, created) = api(
        &app,
        Method::POST,
        &format!("/api/v1/accounts/{}/keys", app.account_id),
        Some(ADMIN_TOKEN),
        Some(&json!({"name": "capped", "limits": {"spend_limit_usd": "0.00005", "spend_limit_period": "day"}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let mut body = chat_body("one two three");
    body["max_tokens"] = json!(5);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = 0;
    while Instant::now() < deadline {
        let resp = app
            .client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&secret)
            .json(&body)
            .send()
            .await
            .unwrap();
        last = resp.status().as_u16();
        if last == 429 {
            let err: Value = resp.json().await.unwrap();
            assert_eq!(err["error"]["code"], "insufficient_quota");
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(last, 429);
    let key_id = created["key"]["id"].as_str().unwrap().to_owned();
    let served = app.mock.requests().len();
    let spent = served_cost(&app, served, Some(&key_id)).await;
    assert!(spent <= 50_000 + reservation(&body, 5), "spent {spent}");
}

/// The budget sync reads only what moved: spend that another instance wrote (straight into
/// the store, past this server's writer) and a top-up made elsewhere still reach this
/// server within seconds, and a sync after them names only the account and key they touched.
#[tokio::test]
async fn spend_and_credits_from_elsewhere_reach_the_budgets_through_the_changed_rows_alone() {
    let app = TestApp::spawn_with(prepaid).await;
    let (status, created) = api(
        &app,
        Method::POST,
        &format!("/api/v1/accounts/{}/keys", app.account_id),
        Some(ADMIN_TOKEN),
        Some(&json!({"name": "capped", "limits": {"spend_limit_usd": "1"}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (secret, key_id) = (
        created["secret"].as_str().unwrap().to_owned(),
        created["key"]["id"].as_str().unwrap().to_owned(),
    );
    let other =
        instagen::admin::create_account(&app.store, &instagen::admin::Actor::cli(), "other")
            .await
            .unwrap();
    // The server has synced everything once; from here on its syncs are partial.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let (clock_ms, key_version) = app.store.change_marks().await.unwrap();
    let since = Scope::Moved(instagen::store::Since {
        since_ms: clock_ms,
        key_version,
    });
    assert!(
        app.store.balances(since).await.unwrap().is_empty(),
        "nothing moved yet"
    );

    // A top-up made through another process: this server starts serving the key.
    credit(&app, "5").await;
    wait_available(&app).await;
    let chat_with = async |key: &str| {
        app.client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(key)
            .json(&chat_body("hi"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(chat_with(&secret).await, 200);
    // Another instance records $1 on the capped key: this server stops it.
    let record = instagen::usage::UsageRecord {
        request_id: "req_elsewhere_1".into(),
        account_id: app.account_id.clone().into(),
        key_id: key_id.clone().into(),
        endpoint: "chat.completions".into(),
        model: Some(MODEL.into()),
        started_ms: instagen::time::now_ms(),
        finished_ms: instagen::time::now_ms(),
        status: 200,
        cost_nanos: 1_000_000_000,
        ..Default::default()
    };
    app.store.insert_usage(&[record]).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while chat_with(&secret).await != 429 {
        assert!(
            Instant::now() < deadline,
            "the spend from elsewhere never arrived"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // What moved since the mark is this account (credit, usage) and this key alone.
    let moved: Vec<String> = app
        .store
        .balances(since)
        .await
        .unwrap()
        .into_iter()
        .map(|(a, _)| a)
        .collect();
    assert_eq!(moved, vec![app.account_id.clone()]);
    assert!(!moved.contains(&other.id));
    let now = instagen::time::now_ms();
    let day = instagen::time::day_start_ms(now);
    let month = instagen::time::month_start_ms(now);
    let keys = app.store.key_spend(day, month, since).await.unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_eq!(keys[0].0, key_id);
    assert!(keys[0].2 >= 1_000_000_000);
}

/// The total cost of served (200) requests, once all `served` of them are recorded.
async fn served_cost(app: &TestApp, served: usize, key: Option<&str>) -> i64 {
    for _ in 0..200 {
        let records = app.records(1).await;
        let ok: Vec<_> = records
            .iter()
            .filter(|r| r.status == 200 && key.is_none_or(|k| *r.key_id == *k))
            .collect();
        if ok.len() >= served {
            return ok.iter().map(|r| r.cost_nanos).sum();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("served requests were not all recorded");
}

/// For many interleavings of batched inserts, duplicate replays (as after a crash) and
/// ledger postings: Σ per-request cost = Σ rollups = −Σ ledger usage debits, exactly.
#[tokio::test]
async fn request_costs_rollups_and_ledger_debits_always_agree() {
    let app = TestApp::spawn().await;
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let now = instagen::time::now_ms();
    let mut all = Vec::new();
    for round in 0..40 {
        let n = (next() % 50) as usize + 1;
        let batch: Vec<instagen::usage::UsageRecord> = (0..n)
            .map(|i| instagen::usage::UsageRecord {
                request_id: format!("req_prop_{round}_{i}").into(),
                account_id: app.account_id.clone().into(),
                key_id: app.key_id.clone().into(),
                endpoint: "chat.completions".into(),
                model: Some(MODEL.into()),
                started_ms: now - (next() % 86_400_000) as i64,
                finished_ms: now,
                status: 200,
                input_tokens: next() % 5000,
                output_tokens: next() % 5000,
                cost_nanos: (next() % 10_000_000) as i64,
                estimated: next() % 2 == 0,
                ..Default::default()
            })
            .collect();
        app.store.insert_usage(&batch).await.unwrap();
        // Replay part of an earlier batch, as journal recovery would.
        if next() % 3 == 0 && !all.is_empty() {
            let from = (next() as usize) % all.len();
            let replay: Vec<_> = all[from..].iter().take(20).cloned().collect();
            app.store.insert_usage(&replay).await.unwrap();
        }
        all.extend(batch);
        if next() % 2 == 0 {
            app.store.post_usage().await.unwrap();
        }
    }
    app.store.post_usage().await.unwrap();
    let expected: i64 = all.iter().map(|r| r.cost_nanos).sum();
    let stored: i64 = app
        .store
        .usage_records(&app.account_id, 0, i64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|r| r.cost_nanos)
        .sum();
    assert_eq!(stored, expected);
    for g in [
        instagen::store::Granularity::Minute,
        instagen::store::Granularity::Hour,
        instagen::store::Granularity::Day,
    ] {
        let rollup = app
            .store
            .usage_rollup(
                &app.account_id,
                g,
                0,
                i64::MAX,
                false,
                instagen::store::GroupBy::Nothing,
            )
            .await
            .unwrap();
        assert_eq!(rollup[0].cost_nanos, expected, "{g:?} rollup");
        assert_eq!(rollup[0].requests as usize, all.len());
    }
    let account = app.store.account(&app.account_id).await.unwrap();
    let debits: i64 = app
        .store
        .ledger(None, 0)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.billing_id == account.billing_id && e.kind == LedgerKind::Usage)
        .map(|e| e.amount_nanos)
        .sum();
    assert_eq!(-debits, expected, "ledger debits");
    assert!(instagen::billing::ledger::verify(&app.store.ledger(None, 0).await.unwrap()).is_ok());
}

/// A served chat request's usage record under `app`'s key, billed to `account`.
fn charge(
    app: &TestApp,
    request_id: &str,
    account: &str,
    cost: i64,
) -> instagen::usage::UsageRecord {
    let now = instagen::time::now_ms();
    instagen::usage::UsageRecord {
        request_id: request_id.to_owned().into(),
        account_id: account.to_owned().into(),
        key_id: app.key_id.clone().into(),
        endpoint: "chat.completions".into(),
        started_ms: now,
        finished_ms: now,
        status: 200,
        cost_nanos: cost,
        ..Default::default()
    }
}

/// Usage is posted to the ledger per billing id, summed over the unposted records; a record
/// whose account no longer exists (it landed after the account was erased) is posted under
/// `erased`, never dropped.
#[tokio::test]
async fn posting_sums_each_account_and_bills_records_of_erased_accounts_to_erased() {
    let app = TestApp::spawn().await;
    let record =
        |i: usize, account: &str, cost: i64| charge(&app, &format!("req_post_{i}"), account, cost);
    let batch = vec![
        record(0, &app.account_id, 1_000),
        record(1, "acct_gone_a", 300),
        record(2, &app.account_id, 2_000),
        record(3, "acct_gone_b", 40),
        record(4, "acct_gone_a", 5),
    ];
    app.store.insert_usage(&batch).await.unwrap();
    assert_eq!(app.store.post_usage().await.unwrap(), 2);
    let account = app.store.account(&app.account_id).await.unwrap();
    let entries = app.store.ledger(None, 0).await.unwrap();
    let usage: Vec<_> = entries
        .iter()
        .filter(|e| e.kind == LedgerKind::Usage)
        .collect();
    assert_eq!(usage.len(), 2, "{usage:?}");
    let of = |billing_id: &str| {
        usage
            .iter()
            .find(|e| e.billing_id == billing_id)
            .map(|e| (e.amount_nanos, e.memo.clone()))
    };
    assert_eq!(
        of(&account.billing_id),
        Some((-3_000, "2 requests".to_owned()))
    );
    assert_eq!(of("erased"), Some((-345, "3 requests".to_owned())));
    // Nothing is posted twice.
    assert_eq!(app.store.post_usage().await.unwrap(), 0);
}

/// What is not yet posted is summed per account as records land: a balance reads it
/// without scanning records, a replayed batch adds nothing, and erasing the account before
/// the posting leaves the charge billable under its tombstone (its billing id) instead of
/// dropping it with the records.
#[tokio::test]
async fn unposted_usage_is_summed_once_per_record_and_survives_erasure_under_the_tombstone() {
    let app = TestApp::spawn().await;
    let account = app.store.account(&app.account_id).await.unwrap();
    let record =
        |i: usize, cost: i64| charge(&app, &format!("req_unposted_{i}"), &app.account_id, cost);
    let batch = vec![record(0, 400), record(1, 300)];
    assert_eq!(app.store.insert_usage(&batch).await.unwrap(), 2);
    // A journal replay of the same batch inserts nothing and adds nothing.
    assert_eq!(app.store.insert_usage(&batch).await.unwrap(), 0);
    let (total, unposted, _) = app
        .store
        .billing_snapshot(&account.billing_id, &app.account_id, 10)
        .await
        .unwrap();
    assert_eq!(unposted, 700);
    let balance = |all: Vec<(String, i64)>| {
        all.into_iter()
            .find(|(id, _)| *id == app.account_id)
            .map(|(_, b)| b)
    };
    assert_eq!(
        balance(app.store.balances(Scope::All).await.unwrap()),
        Some(total - 700)
    );
    let erased = app.store.erase_account(&app.account_id).await.unwrap();
    assert_eq!(erased.tombstone_id, account.billing_id);
    assert_eq!(erased.usage_records, 2);
    assert_eq!(app.store.post_usage().await.unwrap(), 1);
    let usage: Vec<_> = app
        .store
        .ledger(None, 0)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == LedgerKind::Usage)
        .map(|e| (e.billing_id, e.amount_nanos, e.memo))
        .collect();
    assert_eq!(
        usage,
        vec![(account.billing_id.clone(), -700, "2 requests".to_owned())]
    );
    assert_eq!(app.store.post_usage().await.unwrap(), 0);
}
