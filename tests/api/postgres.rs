//! The PostgreSQL store, always run (against 127.0.0.1:5432, each test on a database of its
//! own): the gateway end to end on PostgreSQL, concurrent starters migrating once, key
//! versions that a poller never misses under concurrent writers, and usage posting that
//! neither skips nor double-posts records inserted while it runs. Without a server the
//! tests record a skip with the reason. (The whole suite runs on PostgreSQL too, with
//! `INSTAGEN_TEST_POSTGRES` set; see `helpers.rs`.)

use instagen::billing::ledger::LedgerKind;
use std::collections::HashMap;
use std::time::Duration;

use instagen::store::{
    Granularity, GroupBy, KeyStatus, KeyUpdate, Scope, Store, StoreError, StoredProvider,
};
use instagen::usage::UsageRecord;
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;
use crate::services::{POSTGRES_SERVER, postgres_up, skip};

/// A fresh database, or `None` (with the skip recorded) when PostgreSQL is not there.
async fn fresh_database(test: &str) -> Option<String> {
    if let Err(reason) = postgres_up().await {
        skip(test, &reason);
        return None;
    }
    Some(create_database(POSTGRES_SERVER, None).await)
}

#[tokio::test]
async fn the_gateway_runs_end_to_end_on_postgresql() {
    let Some(url) = fresh_database("postgres::the_gateway_runs_end_to_end_on_postgresql").await
    else {
        return;
    };
    let store_url = url.clone();
    let app = TestApp::spawn_with(move |c| {
        c.store.url = store_url;
        c.billing.post_interval_secs = 1;
    })
    .await;
    assert!(matches!(app.store, Store::Postgres(_)));

    // A key created through the management API authenticates within a second.
    let (status, created) = api(
        &app,
        Method::POST,
        &format!("/api/v1/accounts/{}/keys", app.account_id),
        Some(ADMIN_TOKEN),
        Some(&json!({"name": "pg-key", "limits": {"rpm": 1000}})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let key = created["secret"].as_str().unwrap().to_owned();
    let key_id = created["key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(chat_status(&app, &key, 200).await.0, 200);
    for i in 0..4 {
        let mut body = chat_body("one two three");
        if i % 2 == 1 {
            body["stream"] = json!(true);
        }
        let resp = app
            .client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let _ = resp.bytes().await.unwrap();
    }
    assert_eq!(app.chat(&chat_body("default key")).await.status(), 200);

    // Usage records, and rollups at every granularity that agree with them exactly.
    let records = app.records(6).await;
    assert_eq!(records.len(), 6);
    let cost: i64 = records.iter().map(|r| r.cost_nanos).sum();
    let input: u64 = records.iter().map(|r| r.input_tokens).sum();
    assert!(cost > 0 && input > 0);
    for r in &records {
        assert_eq!(r.model.as_deref(), Some(MODEL));
        assert_eq!(r.status, 200);
        assert_eq!(
            r.cost_nanos,
            test_cost(r.input_tokens, r.cached_input_tokens, r.output_tokens)
        );
    }
    assert!(records.iter().any(|r| r.stream) && records.iter().any(|r| !r.stream));
    for g in [Granularity::Minute, Granularity::Hour, Granularity::Day] {
        let total = app
            .store
            .usage_rollup(&app.account_id, g, 0, i64::MAX, false, GroupBy::Nothing)
            .await
            .unwrap();
        assert_eq!(total.len(), 1, "{g:?}");
        assert_eq!(
            (
                total[0].requests,
                total[0].cost_nanos,
                total[0].input_tokens as u64
            ),
            (6, cost, input),
            "{g:?}"
        );
    }
    let by_key = app
        .store
        .usage_rollup(
            &app.account_id,
            Granularity::Hour,
            0,
            i64::MAX,
            true,
            GroupBy::Key,
        )
        .await
        .unwrap();
    let per_key: HashMap<_, _> = by_key
        .iter()
        .map(|p| (p.group.clone().unwrap(), p.requests))
        .collect();
    assert_eq!(per_key[&key_id], 5);
    assert_eq!(per_key[&app.key_id], 1);
    assert!(by_key.iter().all(|p| p.bucket_ms.unwrap() % 3_600_000 == 0));
    let by_model = app
        .store
        .usage_by_model(&app.account_id, 0, i64::MAX)
        .await
        .unwrap();
    assert_eq!(by_model.len(), 1);
    assert_eq!((by_model[0].requests, by_model[0].cost_nanos), (6, cost));
    let page = app
        .store
        .usage_records_page(&app.account_id, 0, i64::MAX, None, 4)
        .await
        .unwrap();
    let last = page.last().unwrap();
    let rest = app
        .store
        .usage_records_page(
            &app.account_id,
            0,
            i64::MAX,
            Some((last.started_ms, last.request_id.to_string())),
            10,
        )
        .await
        .unwrap();
    assert_eq!(page.len() + rest.len(), 6, "pages neither overlap nor miss");
    let (_, analytics) = api(
        &app,
        Method::GET,
        &format!("/api/v1/accounts/{}/usage?range=24h", app.account_id),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(analytics["totals"]["cost_nanos"].as_i64().unwrap(), cost);
    let listed = app.store.list_keys(&app.account_id).await.unwrap();
    let mine = listed.iter().find(|k| k.id == key_id).unwrap();
    assert_eq!(mine.usage.all_time.requests, 5);
    assert_eq!(mine.usage.last_24h.requests, 5);
    assert_eq!(mine.limits.rpm, Some(1000));

    // Replaying records already stored inserts nothing and counts nothing twice.
    assert_eq!(app.store.insert_usage(&records).await.unwrap(), 0);
    let again = app
        .store
        .usage_rollup(
            &app.account_id,
            Granularity::Day,
            0,
            i64::MAX,
            false,
            GroupBy::Nothing,
        )
        .await
        .unwrap();
    assert_eq!(again[0].requests, 6);

    // Billing: a credit, then posting (by the server's timer) debits exactly the usage.
    let account = app.store.account(&app.account_id).await.unwrap();
    app.store
        .append_ledger(
            &account.billing_id,
            LedgerKind::Credit,
            1_000_000_000,
            "pg top-up",
        )
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let (total, unposted, entries) = app
            .store
            .billing_snapshot(&account.billing_id, &app.account_id, 10)
            .await
            .unwrap();
        if unposted == 0 && entries.iter().any(|e| e.kind == LedgerKind::Usage) {
            assert_eq!(total, 1_000_000_000 - cost);
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "usage was never posted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        app.store.post_usage().await.unwrap(),
        0,
        "nothing posted twice"
    );
    let ledger = app.store.ledger(None, 0).await.unwrap();
    assert!(instagen::billing::ledger::verify(&ledger).is_ok());
    let balances: HashMap<_, _> = app
        .store
        .balances(Scope::All)
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(balances[&app.account_id], 1_000_000_000 - cost);

    // Disabling a key takes effect within a second; an account limit bumps versions too.
    app.store
        .update_key(
            &app.account_id,
            &key_id,
            &KeyUpdate {
                enabled: Some(false),
                ..KeyUpdate::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(chat_status(&app, &key, 401).await.0, 401);
    app.store
        .set_key_status(&app.account_id, &key_id, KeyStatus::Active)
        .await
        .unwrap();
    assert_eq!(chat_status(&app, &key, 200).await.0, 200);

    // Providers: create, list, update, conflict, delete, each bumping the version.
    let v0 = app.store.providers_version().await.unwrap();
    let p = StoredProvider {
        name: "pg-vendor".to_owned(),
        settings: r#"{"kind":"openai"}"#.to_owned(),
        credential: Some(vec![0, 1, 2, 255]),
        created_ms: 0,
        updated_ms: 0,
    };
    app.store.create_provider(&p).await.unwrap();
    assert!(matches!(
        app.store.create_provider(&p).await,
        Err(StoreError::Conflict("provider"))
    ));
    let listed = app.store.list_providers().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].credential.as_deref(), Some(&[0u8, 1, 2, 255][..]));
    app.store
        .update_provider(&StoredProvider {
            credential: None,
            ..p.clone()
        })
        .await
        .unwrap();
    assert_eq!(
        app.store.list_providers().await.unwrap()[0].credential,
        None
    );
    app.store.delete_provider("pg-vendor").await.unwrap();
    assert!(matches!(
        app.store.delete_provider("pg-vendor").await,
        Err(StoreError::NotFound("provider"))
    ));
    assert_eq!(app.store.providers_version().await.unwrap(), v0 + 3);

    // Account deletion: personal data erased, the ledger and daily aggregates kept.
    // (Requests that went through while a change propagated were recorded too: 7 or more.)
    let (status, done) = api(
        &app,
        Method::DELETE,
        &format!("/api/v1/accounts/{}", app.account_id),
        Some(ADMIN_TOKEN),
        Some(&json!({"confirm": "acme"})),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    let n = done["erased"]["usage_records"].as_u64().unwrap();
    assert!(n >= 7, "{done}");
    assert_eq!(done["erased"]["keys"].as_u64().unwrap(), 2);
    let tombstone = done["erased"]["tombstone_id"].as_str().unwrap().to_owned();
    assert_eq!(chat_status(&app, &key, 401).await.0, 401);
    assert!(matches!(
        app.store.account(&app.account_id).await,
        Err(StoreError::NotFound("account"))
    ));
    assert!(
        app.store
            .usage_records(&app.account_id, 0, i64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
    let daily = app
        .store
        .usage_rollup(
            &tombstone,
            Granularity::Day,
            0,
            i64::MAX,
            false,
            GroupBy::Nothing,
        )
        .await
        .unwrap();
    assert_eq!(daily[0].requests as u64, n);
    let ledger = app.store.ledger(None, 0).await.unwrap();
    assert!(instagen::billing::ledger::verify(&ledger).is_ok());
    assert!(ledger.iter().all(|e| e.billing_id == tombstone));

    let (dir, store) = app.shutdown().await;
    store.close().await;
    drop(dir);
    drop_database(&url).await;
}

#[tokio::test]
async fn concurrent_starters_migrate_once_and_key_versions_are_never_missed() {
    let test = "postgres::concurrent_starters_migrate_once_and_key_versions_are_never_missed";
    let Some(url) = fresh_database(test).await else {
        return;
    };
    // Four "processes" open (and migrate) the same empty database at once.
    let opened = futures_util::future::join_all((0..4).map(|_| Store::open(&url))).await;
    let stores: Vec<Store> = opened.into_iter().map(Result::unwrap).collect();

    let account = stores[0].create_account("versions").await.unwrap();
    let hasher = instagen::keys::KeyHasher::new(TEST_SECRET.as_bytes());
    let mut ids = Vec::new();
    for i in 0..12 {
        let key = instagen::admin::create_key(
            &stores[i % 4],
            &hasher,
            &instagen::admin::Actor::cli(),
            &account.id,
            key_spec(&format!("k{i}")),
        )
        .await
        .unwrap();
        ids.push(key.id);
    }

    // A poller that works like every instance's key cache: ask for versions above the
    // highest seen, remember each key's latest.
    let stop = stop_flag();
    let poller = {
        let (store, stop) = (stores[3].clone(), stop.clone());
        tokio::spawn(async move {
            let mut since = 0;
            let mut seen: HashMap<String, i64> = HashMap::new();
            loop {
                let done = stop.load(std::sync::atomic::Ordering::Acquire);
                let rows = store.keys_changed_since(since, i64::MAX).await.unwrap();
                for row in rows {
                    assert!(row.version > since, "versions only go up");
                    since = since.max(row.version);
                    seen.insert(row.id, row.version);
                }
                if done {
                    return seen;
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    // Writers on three pools change keys and the account concurrently.
    let mut writers = Vec::new();
    for w in 0..3 {
        let (store, ids, account_id) = (stores[w].clone(), ids.clone(), account.id.clone());
        writers.push(tokio::spawn(async move {
            for n in 0..40 {
                let id = &ids[(n * 7 + w) % ids.len()];
                match n % 4 {
                    0 => store
                        .set_key_status(&account_id, id, KeyStatus::Disabled)
                        .await
                        .unwrap(),
                    1 => store
                        .set_key_status(&account_id, id, KeyStatus::Active)
                        .await
                        .unwrap(),
                    2 => store
                        .update_key(
                            &account_id,
                            id,
                            &KeyUpdate {
                                name: Some(format!("renamed-{w}-{n}")),
                                ..KeyUpdate::default()
                            },
                        )
                        .await
                        .unwrap(),
                    _ => store
                        .set_account_limits(&account_id, Some(n as i64 + 1), None)
                        .await
                        .unwrap(),
                }
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Release);
    let seen = poller.await.unwrap();

    let now = stores[0].keys_changed_since(0, i64::MAX).await.unwrap();
    let mut versions: Vec<i64> = now.iter().map(|r| r.version).collect();
    versions.dedup();
    assert_eq!(versions.len(), ids.len(), "every key has its own version");
    for row in &now {
        assert_eq!(
            seen.get(&row.id),
            Some(&row.version),
            "the poller saw key {}'s latest change",
            row.id
        );
    }
    for s in &stores {
        s.close().await;
    }
    drop_database(&url).await;
}

#[tokio::test]
async fn posting_while_batches_commit_neither_skips_nor_double_posts() {
    let test = "postgres::posting_while_batches_commit_neither_skips_nor_double_posts";
    let Some(url) = fresh_database(test).await else {
        return;
    };
    let a = Store::open(&url).await.unwrap();
    let b = Store::open(&url).await.unwrap();
    let account = a.create_account("posting").await.unwrap();
    let record = |i: usize| UsageRecord {
        request_id: format!("req_{i:05}").into(),
        account_id: account.id.clone().into(),
        key_id: "key_x".to_owned().into(),
        endpoint: "chat.completions".into(),
        model: Some(MODEL.into()),
        started_ms: instagen::time::now_ms(),
        finished_ms: instagen::time::now_ms(),
        status: 200,
        cost_nanos: 1_000 + i as i64,
        attempts: 1,
        ..UsageRecord::default()
    };
    let all: Vec<UsageRecord> = (0..600).map(record).collect();
    let expected: i64 = all.iter().map(|r| r.cost_nanos).sum();

    // Two writers insert batches (with overlaps, as journal replays do) while a third
    // task keeps posting.
    let mut tasks = Vec::new();
    for (w, store) in [a.clone(), b.clone()].into_iter().enumerate() {
        let all = all.clone();
        tasks.push(tokio::spawn(async move {
            let mut inserted = 0;
            for chunk in all.chunks(25) {
                inserted += store.insert_usage(chunk).await.unwrap();
                if w == 1 {
                    // The second writer replays what the first may have written already.
                    inserted += store.insert_usage(&chunk[..5]).await.unwrap();
                }
            }
            inserted
        }));
    }
    let poster = {
        let store = a.clone();
        tokio::spawn(async move {
            for _ in 0..40 {
                store.post_usage().await.unwrap();
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
        })
    };
    let mut inserted = 0;
    for t in tasks {
        inserted += t.await.unwrap();
    }
    poster.await.unwrap();
    b.post_usage().await.unwrap();
    assert_eq!(inserted, 600, "each record inserted exactly once");

    let ledger = a.ledger(None, 0).await.unwrap();
    assert!(instagen::billing::ledger::verify(&ledger).is_ok());
    let debited: i64 = ledger
        .iter()
        .filter(|e| e.kind == LedgerKind::Usage)
        .map(|e| -e.amount_nanos)
        .sum();
    assert_eq!(debited, expected, "every record posted once");
    let (total, unposted, _) = a
        .billing_snapshot(&account.billing_id, &account.id, 1)
        .await
        .unwrap();
    assert_eq!((total, unposted), (-expected, 0));
    let day = a
        .usage_rollup(
            &account.id,
            Granularity::Day,
            0,
            i64::MAX,
            false,
            GroupBy::Nothing,
        )
        .await
        .unwrap();
    assert_eq!((day[0].requests, day[0].cost_nanos), (600, expected));
    a.close().await;
    b.close().await;
    drop_database(&url).await;
}

fn stop_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false))
}

#[tokio::test]
async fn model_and_endpoint_summaries_read_from_the_rollups_add_up_to_the_records_on_postgresql() {
    let test = "postgres::model_and_endpoint_summaries_read_from_the_rollups_add_up_to_the_records_on_postgresql";
    let Some(url) = fresh_database(test).await else {
        return;
    };
    let store = Store::open(&url).await.unwrap();
    crate::usage::check_summaries_match_the_records(&store).await;
    store.close().await;
    drop_database(&url).await;
}

#[tokio::test]
async fn keys_made_within_a_millisecond_list_in_order_and_racing_creations_keep_the_cap_on_postgresql()
 {
    let test = "postgres::keys_made_within_a_millisecond_list_in_order_and_racing_creations_keep_the_cap_on_postgresql";
    let Some(url) = fresh_database(test).await else {
        return;
    };
    let store_url = url.clone();
    let app = TestApp::spawn_with(move |c| c.store.url = store_url).await;
    crate::keys::check_creation_order_and_cap(&app).await;
    let (dir, store) = app.shutdown().await;
    store.close().await;
    drop(dir);
    drop_database(&url).await;
}

/// A PostgreSQL database from before the endpoint rollups has them seeded from its records
/// on upgrade, and the trigger folds in what comes after: the breakdown by endpoint adds
/// up to the records, before and after the upgrade's moment alike.
#[tokio::test]
async fn endpoint_rollups_are_seeded_from_the_records_on_upgrade_on_postgresql() {
    use sqlx::Connection;
    let test = "postgres::endpoint_rollups_are_seeded_from_the_records_on_upgrade_on_postgresql";
    let Some(url) = fresh_database(test).await else {
        return;
    };
    let store = Store::open(&url).await.unwrap();
    let account = store.create_account("upgrade").await.unwrap().id;
    let now = instagen::time::now_ms();
    let endpoints = ["chat.completions", "messages", "responses"];
    let records: Vec<UsageRecord> = (0..60u64)
        .map(|i| UsageRecord {
            request_id: format!("req_up_{i:03}").into(),
            account_id: account.clone().into(),
            key_id: "key_1".into(),
            endpoint: endpoints[(i % 3) as usize].into(),
            model: Some("m".into()),
            started_ms: now - i as i64 * 1_800_000,
            finished_ms: now,
            status: 200,
            input_tokens: i * 10,
            output_tokens: i,
            cost_nanos: i as i64 * 1_000,
            attempts: 1,
            ..UsageRecord::default()
        })
        .collect();
    store.insert_usage(&records[..40]).await.unwrap();
    store.close().await;
    // Back to schema 18: no endpoint rollups.
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "DROP TRIGGER usage_rollups_insert_by_endpoint ON usage_records;
         DROP FUNCTION usage_endpoint_rollups_insert(); DROP TABLE usage_endpoint_rollups;
         DELETE FROM schema_migrations WHERE version = 19",
    )
    .execute(&mut c)
    .await
    .unwrap();
    c.close().await.unwrap();
    let store = Store::open(&url).await.unwrap();
    store.insert_usage(&records[40..]).await.unwrap();
    for (from, to) in [
        (0, i64::MAX),
        (now - 86_400_000, now + 1),
        (now - 30 * 3_600_000 + 7, now - 3_600_000),
    ] {
        let mut expected: Vec<(String, i64, i64, i64)> = Vec::new();
        for e in endpoints {
            let within: Vec<&UsageRecord> = records
                .iter()
                .filter(|r| &*r.endpoint == e && from <= r.started_ms && r.started_ms < to)
                .collect();
            if !within.is_empty() {
                expected.push((
                    e.to_owned(),
                    within.len() as i64,
                    within.iter().map(|r| r.input_tokens as i64).sum(),
                    within.iter().map(|r| r.cost_nanos).sum(),
                ));
            }
        }
        let got: Vec<(String, i64, i64, i64)> = store
            .usage_by_endpoint(&account, from, to)
            .await
            .unwrap()
            .into_iter()
            .map(|p| {
                let group = p.group.unwrap_or_default();
                (group, p.requests, p.input_tokens, p.cost_nanos)
            })
            .collect();
        assert_eq!(got, expected, "[{from}, {to})");
    }
    store.close().await;
    drop_database(&url).await;
}
