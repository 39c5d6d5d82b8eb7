//! Faults under load: upstream resets, stream cuts and clients that leave, all at once.
//! Afterwards every request has exactly one usage record, nothing is billed twice, and
//! no in-flight counter or concurrency lease is left behind.

use std::sync::Arc;
use std::time::Duration;

use mock_upstream::Script;
use reqwest::Method;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn resets_cuts_and_aborts_under_load_leave_one_record_each_and_no_stuck_counters() {
    let app = TestApp::spawn().await;
    let (status, created) = api(
        &app,
        Method::POST,
        &format!("/api/v1/accounts/{}/keys", app.account_id),
        Some(ADMIN_TOKEN),
        Some(&json!({"name": "load", "limits": {"max_concurrent": 40}})),
    )
    .await;
    assert_eq!(status, 201);
    let key = Arc::new(created["secret"].as_str().unwrap().to_owned());
    until_key_table_shows(&app, &key, |status, _| status == 200).await;

    // Four waves of concurrent requests, each wave scripted alike (so it does not matter
    // in which order its requests reach the upstream): streams cut after two chunks,
    // upstream 502s, clients that leave after the first chunk, and clean streams.
    let cut = Script {
        cut_after_chunks: Some(2),
        chunk_delay: Duration::from_millis(5),
        ..Script::reply("a b c d e f")
    };
    let slow = Script {
        chunk_delay: Duration::from_millis(40),
        ..Script::reply("a b c d e f g h")
    };
    let waves = [
        (40, cut, false),
        (20, Script::status(502), false),
        (20, slow, true),
        (40, Script::reply("a b c"), false),
    ];
    const N: usize = 120;
    let mut statuses = Vec::new();
    for (n, script, leave_early) in waves {
        app.mock.set_default(script);
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let (client, url, key) = (
                app.client.clone(),
                app.url("/v1/chat/completions"),
                key.clone(),
            );
            set.spawn(async move {
                let mut body = chat_body("go");
                body["stream"] = json!(true);
                let Ok(mut resp) = client
                    .post(url)
                    .bearer_auth(key.as_str())
                    .json(&body)
                    .send()
                    .await
                else {
                    return 0;
                };
                let status = resp.status().as_u16();
                if leave_early {
                    let _ = resp.chunk().await;
                    return status;
                }
                while let Ok(Some(_)) = resp.chunk().await {}
                status
            });
        }
        statuses.extend(set.join_all().await);
    }
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 502),
        "{statuses:?}"
    );

    // One record per request, each id once; nothing billed twice.
    let records = app.records(N).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records_again = app.records(N).await;
    assert_eq!(records.len(), N);
    assert_eq!(records_again.len(), N, "no late duplicates");
    let mut ids: Vec<&str> = records.iter().map(|r| &*r.request_id).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), N);
    let by_kind = |kind: &str| {
        records
            .iter()
            .filter(|r| r.error_kind.as_deref() == Some(kind))
            .count()
    };
    assert_eq!(by_kind("upstream_stream_interrupted"), 40);
    assert_eq!(records.iter().filter(|r| r.status == 502).count(), 60);
    assert_eq!(by_kind("client_closed"), 20);
    assert_eq!(records.iter().filter(|r| r.status == 200).count(), 40);
    assert_eq!(
        app.mock.requests().len(),
        N,
        "no retried upstream call after a first byte"
    );

    // Nothing stuck: the route has nothing in flight, and all 40 concurrency slots are free.
    let (_, routes) = api(&app, Method::GET, "/api/v1/routes", Some(ADMIN_TOKEN), None).await;
    assert_eq!(routes["data"][0]["routes"][0]["in_flight"], 0);
    app.mock.set_default(Script {
        delay: Duration::from_millis(300),
        ..Script::reply("x")
    });
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (client, url, key) = (
            app.client.clone(),
            app.url("/v1/chat/completions"),
            key.clone(),
        );
        set.spawn(async move {
            client
                .post(url)
                .bearer_auth(key.as_str())
                .json(&chat_body("x"))
                .send()
                .await
                .map(|r| r.status().as_u16())
                .unwrap_or(0)
        });
    }
    let statuses = set.join_all().await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every concurrency lease was released: {statuses:?}"
    );
}
