//! Nothing billed is lost: graceful shutdown flushes every record, and a record whose
//! response completed survives `kill -9` of the gateway, landing exactly once.

use std::collections::HashSet;

use futures_util::StreamExt;

use crate::helpers::*;

async fn complete_requests(base: &str, key: &str, n: usize) -> HashSet<String> {
    let client = reqwest::Client::new();
    let mut ids = HashSet::new();
    for i in 0..n {
        let mut body = chat_body("one two three");
        if i % 2 == 1 {
            body["stream"] = serde_json::json!(true);
        }
        let resp = client
            .post(format!("{base}/v1/chat/completions"))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        ids.insert(resp.headers()["x-request-id"].to_str().unwrap().to_owned());
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            chunk.unwrap();
        }
    }
    ids
}

async fn stored_ids(store: &instagen::store::Store, account: &str) -> Vec<String> {
    store
        .usage_records(account, 0, i64::MAX)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.request_id.to_string())
        .collect()
}

#[tokio::test]
async fn completed_requests_survive_kill_9_and_are_recorded_exactly_once() {
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_process_config(dir.path(), &mock.base_url(), "info");
    let (account, key, store) = provision(&config).await;
    let log = dir.path().join("server.log");
    let server = ServerProcess::start(&config, &log).await;

    // Hold the database's write lock so the batch writer cannot commit anything:
    // every record then lives only in the journal when the gateway is killed.
    let blocker = UsageWriteBlocker::hold(&store_url_for(dir.path())).await;

    let ids = complete_requests(&server.base, &key, 12).await;
    server.kill9();
    blocker.release().await;
    assert!(
        stored_ids(&store, &account).await.is_empty(),
        "the writer was blocked: nothing committed before the kill; server log:\n{}",
        log_tail(&log)
    );

    let server = ServerProcess::start(&config, &log).await;
    let stored = stored_ids(&store, &account).await;
    assert_eq!(
        stored.iter().cloned().collect::<HashSet<_>>(),
        ids,
        "every completed request recovered from the journal; server log:\n{}",
        server.log_tail()
    );
    assert_eq!(stored.len(), ids.len(), "none twice");
    server.kill9();

    // Replaying again (nothing left, or an old segment) never duplicates.
    let server = ServerProcess::start(&config, &log).await;
    assert_eq!(
        stored_ids(&store, &account).await.len(),
        ids.len(),
        "server log:\n{}",
        server.log_tail()
    );
    server.terminate();
}

#[tokio::test]
async fn sigterm_flushes_every_record_and_leaves_the_journal_empty() {
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_process_config(dir.path(), &mock.base_url(), "info");
    let (account, key, store) = provision(&config).await;
    let server = ServerProcess::start(&config, &dir.path().join("server.log")).await;
    let ids = complete_requests(&server.base, &key, 20).await;
    server.terminate();
    let stored: HashSet<String> = stored_ids(&store, &account).await.into_iter().collect();
    assert_eq!(stored, ids);
    let journal_bytes: u64 = std::fs::read_dir(dir.path().join("journal"))
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(
        journal_bytes, 0,
        "a clean shutdown leaves nothing to replay"
    );
}

/// `server.worker_threads = 1` (and one core) runs the server on its main thread alone,
/// with no runtime worker beside it: it answers plain and streamed requests, and a clean
/// shutdown still records every one of them.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_one_thread_server_answers_and_records_every_request() {
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_process_config(dir.path(), &mock.base_url(), "info");
    set_worker_threads(&config, 1);
    let (account, key, store) = provision(&config).await;
    let server = ServerProcess::start(&config, &dir.path().join("server.log")).await;
    // A multi-thread runtime would start its one worker at once; the blocking pool's
    // threads, which share the name, start only when something blocking is handed over.
    let workers = runtime_threads(server.child.id());
    assert_eq!(workers, 0, "a runtime worker beside the main thread");
    let ids = complete_requests(&server.base, &key, 10).await;
    server.terminate();
    let stored: HashSet<String> = stored_ids(&store, &account).await.into_iter().collect();
    assert_eq!(stored, ids);
}

#[tokio::test]
async fn in_process_graceful_shutdown_drains_records() {
    let app = TestApp::spawn().await;
    for _ in 0..5 {
        assert_eq!(app.chat(&chat_body("x y")).await.status(), 200);
    }
    let account = app.account_id.clone();
    let (_dir, store) = app.shutdown().await;
    assert_eq!(stored_ids(&store, &account).await.len(), 5);
}

#[tokio::test]
async fn kill_9_under_concurrent_load_loses_no_completed_request_and_duplicates_none() {
    use std::sync::{Arc, Mutex};
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    mock.set_default(mock_upstream::Script {
        chunk_delay: std::time::Duration::from_millis(3),
        ..mock_upstream::Script::reply("a b c d e f")
    });
    let dir = tempfile::tempdir().unwrap();
    let config = write_process_config(dir.path(), &mock.base_url(), "info");
    let (account, key, store) = provision(&config).await;
    let log = dir.path().join("server.log");
    let server = ServerProcess::start(&config, &log).await;

    // Sixteen clients in a loop, half streaming; a request counts as complete only when its
    // whole response (to `[DONE]` for streams) arrived.
    let completed = Arc::new(Mutex::new(HashSet::new()));
    let mut load = tokio::task::JoinSet::new();
    for c in 0..16 {
        let (base, key, completed) = (server.base.clone(), key.clone(), completed.clone());
        load.spawn(async move {
            let client = reqwest::Client::new();
            for i in 0.. {
                let mut body = chat_body("load");
                let stream = (c + i) % 2 == 1;
                body["stream"] = serde_json::json!(stream);
                let Ok(resp) = client
                    .post(format!("{base}/v1/chat/completions"))
                    .bearer_auth(&key)
                    .json(&body)
                    .send()
                    .await
                else {
                    return;
                };
                let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
                let Ok(text) = resp.text().await else { return };
                let whole = if stream {
                    text.ends_with("data: [DONE]\n\n")
                } else {
                    serde_json::from_str::<serde_json::Value>(&text).is_ok()
                };
                if whole {
                    completed.lock().unwrap().insert(id);
                }
            }
        });
    }
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    server.kill9();
    load.join_all().await;
    let completed = completed.lock().unwrap().clone();
    assert!(completed.len() > 50, "the load ran: {}", completed.len());

    let server = ServerProcess::start(&config, &log).await;
    let stored = stored_ids(&store, &account).await;
    let unique: HashSet<String> = stored.iter().cloned().collect();
    assert_eq!(unique.len(), stored.len(), "no request recorded twice");
    let missing: Vec<_> = completed.difference(&unique).collect();
    assert!(
        missing.is_empty(),
        "{} of {} completed requests have no record; server log:\n{}",
        missing.len(),
        completed.len(),
        server.log_tail()
    );
    server.terminate();
}
