//! The user's data rights: export everything, delete the account (personal data erased,
//! ledger and daily aggregates kept pseudonymised), and retention of per-request records.

use instagen::billing::ledger::LedgerKind;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::keys::{contains, walk};

#[tokio::test]
async fn export_all_returns_everything_held_about_the_account() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        assert_eq!(app.chat(&chat_body("one two")).await.status(), 200);
    }
    app.records(3).await;
    let (status, doc) = api(
        &app,
        Method::GET,
        &format!("/api/v1/accounts/{}/export-all", app.account_id),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(doc["account"]["id"], app.account_id);
    assert_eq!(doc["keys"][0]["id"], app.key_id);
    assert_eq!(doc["usage_records"].as_array().unwrap().len(), 3);
    assert!(doc["billing"]["ledger"].is_array());
    assert!(
        doc["audit_log"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "key.create")
    );
    assert!(
        !doc.to_string().contains(&app.key[app.key.len() - 20..]),
        "never a secret"
    );
}

#[tokio::test]
async fn deleting_an_account_erases_personal_data_and_keeps_a_pseudonymous_ledger() {
    let app = TestApp::spawn().await;
    let name = "Erasable Corp Zq7Vx";
    let email = "owner.zq7vx@erasable.example";
    let (status, account) = api(
        &app,
        Method::POST,
        "/api/v1/accounts",
        Some(ADMIN_TOKEN),
        Some(&json!({"name": name, "owner_email": email, "owner_password": "a long password"})),
    )
    .await;
    assert_eq!(status, 201);
    let id = account["id"].as_str().unwrap().to_owned();
    let base = format!("/api/v1/accounts/{id}");
    let (_, key) = api(
        &app,
        Method::POST,
        &format!("{base}/keys"),
        Some(ADMIN_TOKEN),
        Some(&json!({"name": "KeyNameQw8Pz", "description": "DescriptionJk3Lm"})),
    )
    .await;
    let secret = key["secret"].as_str().unwrap().to_owned();
    let (_, token) = api(
        &app,
        Method::POST,
        &format!("{base}/tokens"),
        Some(ADMIN_TOKEN),
        Some(&json!({"name": "TokenNameRt5Yu", "role": "owner"})),
    )
    .await;
    api(
        &app,
        Method::POST,
        &format!("{base}/billing/credits"),
        Some(ADMIN_TOKEN),
        Some(&json!({"usd": "5", "memo": "top-up"})),
    )
    .await;
    for _ in 0..3 {
        assert_eq!(chat_status(&app, &secret, 200).await.0, 200);
    }
    let bogus = format!(
        "ig-{}-0123456789012345678901234567890123456789",
        &secret[3..19]
    );
    let _ = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&bogus)
        .json(&chat_body("x"))
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;

    // The owner must type the name.
    let owner_token = token["secret"].as_str().unwrap();
    let (status, err) = api(
        &app,
        Method::DELETE,
        &base,
        Some(owner_token),
        Some(&json!({"confirm": "wrong"})),
    )
    .await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (400, Some("confirm"))
    );
    let (status, done) = api(
        &app,
        Method::DELETE,
        &base,
        Some(owner_token),
        Some(&json!({"confirm": name})),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    let tombstone = done["erased"]["tombstone_id"].as_str().unwrap().to_owned();
    assert_eq!(done["erased"]["usage_records"], 3);
    assert_eq!(done["erased"]["users"], 1);

    // Nothing of it works or answers any more.
    assert_eq!(chat_status(&app, &secret, 401).await.0, 401);
    assert_eq!(
        api(&app, Method::GET, &base, Some(ADMIN_TOKEN), None)
            .await
            .0,
        404
    );
    assert_eq!(
        api(&app, Method::GET, "/api/v1/me", Some(owner_token), None)
            .await
            .0,
        401
    );

    // The ledger (credit + posted usage) and daily aggregates remain, under the tombstone id.
    let ledger = app.store.ledger(None, 0).await.unwrap();
    assert!(instagen::billing::ledger::verify(&ledger).is_ok());
    let mine: Vec<_> = ledger
        .iter()
        .filter(|e| e.billing_id == tombstone)
        .collect();
    assert!(
        mine.iter().any(|e| e.kind == LedgerKind::Credit)
            && mine.iter().any(|e| e.kind == LedgerKind::Usage),
        "{mine:?}"
    );
    let daily = app
        .store
        .usage_rollup(
            &tombstone,
            instagen::store::Granularity::Day,
            0,
            i64::MAX,
            false,
            instagen::store::GroupBy::Nothing,
        )
        .await
        .unwrap();
    assert_eq!(daily[0].requests, 3);

    // No personal datum of the account remains anywhere in the store's files.
    let (dir, store) = app.shutdown().await;
    store.close().await;
    let needles = [
        id.as_str(),
        name,
        email,
        "KeyNameQw8Pz",
        "DescriptionJk3Lm",
        "TokenNameRt5Yu",
        &secret[secret.len() - 30..],
    ];
    for file in walk(dir.path()) {
        if file.starts_with(dir.path().join("journal"))
            || file.extension().is_some_and(|e| e == "toml")
        {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap();
        for n in needles {
            assert!(
                !contains(&bytes, n.as_bytes()),
                "{} still holds {n}",
                file.display()
            );
        }
    }
    if let Some(bytes) = store_contents(dir.path()).await {
        for n in needles {
            assert!(
                !contains(&bytes, n.as_bytes()),
                "the PostgreSQL store still holds {n}"
            );
        }
    }
}

#[tokio::test]
async fn retention_purges_old_records_but_keeps_rollups_and_the_ledger() {
    let app = TestApp::spawn().await;
    let now = instagen::time::now_ms();
    let old: Vec<instagen::usage::UsageRecord> = (0..50)
        .map(|i| instagen::usage::UsageRecord {
            request_id: format!("req_old_{i}").into(),
            account_id: app.account_id.clone().into(),
            key_id: app.key_id.clone().into(),
            endpoint: "chat.completions".into(),
            model: Some(MODEL.into()),
            started_ms: now - 40 * 86_400_000,
            finished_ms: now - 40 * 86_400_000,
            status: 200,
            cost_nanos: 1_000,
            ..Default::default()
        })
        .collect();
    app.store.insert_usage(&old).await.unwrap();
    assert_eq!(app.chat(&chat_body("fresh")).await.status(), 200);
    app.records(51).await;
    // Unposted records are never purged: billing comes first.
    assert_eq!(app.store.purge(now - 30 * 86_400_000).await.unwrap(), 0);
    app.store.post_usage().await.unwrap();
    assert_eq!(app.store.purge(now - 30 * 86_400_000).await.unwrap(), 50);
    let left = app
        .store
        .usage_records(&app.account_id, 0, i64::MAX)
        .await
        .unwrap();
    assert_eq!(left.len(), 1, "only the fresh record remains");
    let daily = app
        .store
        .usage_rollup(
            &app.account_id,
            instagen::store::Granularity::Day,
            0,
            i64::MAX,
            false,
            instagen::store::GroupBy::Nothing,
        )
        .await
        .unwrap();
    assert_eq!(daily[0].requests, 51, "daily aggregates are kept");
    let ledger = app.store.ledger(None, 0).await.unwrap();
    assert_eq!(
        ledger.iter().map(|e| e.amount_nanos).sum::<i64>(),
        -(50_000 + left[0].cost_nanos)
    );
    let _: Value = Value::Null;
}

#[tokio::test]
async fn erasure_cuts_open_streams_and_tombstones_what_lands_after_it() {
    use futures_util::StreamExt;
    let app = TestApp::spawn().await;
    let account = app.account_id.clone();
    // A slow stream: 40 words, 150 ms apart (6 s), still running when the account goes.
    app.mock.push(mock_upstream::Script {
        chunk_delay: Duration::from_millis(150),
        reply: mock_upstream::words(&"word ".repeat(40)),
        ..mock_upstream::Script::default()
    });
    let mut body = chat_body("stream me");
    body["stream"] = json!(true);
    let resp = app.chat(&body).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    let first = stream.next().await.unwrap().unwrap();
    assert!(!first.is_empty());
    let started = std::time::Instant::now();
    let reading = tokio::spawn(async move {
        let mut rest = Vec::new();
        while let Some(Ok(chunk)) = stream.next().await {
            rest.extend_from_slice(&chunk);
        }
        rest
    });

    let (status, done) = api(
        &app,
        Method::DELETE,
        &format!("/api/v1/accounts/{account}"),
        Some(ADMIN_TOKEN),
        Some(&json!({"confirm": "acme"})),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    let tombstone = done["erased"]["tombstone_id"].as_str().unwrap().to_owned();
    let rest = String::from_utf8(reading.await.unwrap()).unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the stream was cut, not run to its end"
    );
    assert!(rest.contains("access_revoked"), "{rest}");

    // The cut stream's record was erased with the rest; its day stays under the tombstone.
    assert!(
        app.store
            .usage_records(&account, 0, i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    let daily = |id: String| {
        let store = app.store.clone();
        async move {
            store
                .usage_rollup(
                    &id,
                    instagen::store::Granularity::Day,
                    0,
                    i64::MAX,
                    false,
                    instagen::store::GroupBy::Nothing,
                )
                .await
                .unwrap()
        }
    };
    assert_eq!(daily(tombstone.clone()).await[0].requests, 1);

    // A record that lands after the erasure (another instance's, late) goes to the
    // tombstone too: nothing reappears under the erased id, and its charge is billed.
    let now = instagen::time::now_ms();
    let late = instagen::usage::UsageRecord {
        request_id: "late-1".into(),
        account_id: account.clone().into(),
        key_id: app.key_id.clone().into(),
        endpoint: "chat.completions".into(),
        model: Some(MODEL.into()),
        started_ms: now,
        finished_ms: now,
        status: 200,
        input_tokens: 10,
        output_tokens: 10,
        cost_nanos: 5_000,
        ..Default::default()
    };
    app.store.insert_usage(&[late]).await.unwrap();
    assert!(
        app.store
            .usage_records(&account, 0, i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(daily(account.clone()).await.is_empty());
    assert_eq!(daily(tombstone.clone()).await[0].requests, 2);
    app.store.post_usage().await.unwrap();
    let ledger = app.store.ledger(None, 0).await.unwrap();
    assert!(
        ledger.iter().any(|e| e.billing_id == tombstone
            && e.kind == LedgerKind::Usage
            && e.amount_nanos == -5_000),
        "{ledger:?}"
    );
    assert!(
        ledger.iter().all(|e| e.billing_id != "erased"),
        "{ledger:?}"
    );
}
