//! Access keys: stored only as keyed hashes; disable/enable/delete take effect within a second.

use std::time::{Duration, Instant};

use instagen::admin::Actor;
use instagen::store::{KeySpec, KeyStatus};

use crate::helpers::*;

async fn status_within(app: &TestApp, expected: u16, within: Duration) -> u16 {
    let deadline = Instant::now() + within;
    loop {
        let s = app.chat(&chat_body("x")).await.status().as_u16();
        if s == expected || Instant::now() > deadline {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn keys_are_stored_only_as_keyed_hashes_never_in_plaintext() {
    let app = TestApp::spawn().await;
    let key = app.key.clone();
    let secret = key.rsplit('-').next().unwrap().to_owned();
    assert_eq!(app.chat(&chat_body("x")).await.status(), 200);
    let (dir, store) = app.shutdown().await;
    store.close().await;
    for file in walk(dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{} holds the key secret",
            file.display()
        );
    }
    if let Some(bytes) = store_contents(dir.path()).await {
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "the PostgreSQL store holds the key secret"
        );
    }
}

pub fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn disable_enable_and_delete_take_effect_within_a_second() {
    let app = TestApp::spawn().await;
    assert_eq!(app.chat(&chat_body("x")).await.status(), 200);

    instagen::admin::set_key_status(
        &app.store,
        &Actor::cli(),
        &app.account_id,
        &app.key_id,
        KeyStatus::Disabled,
    )
    .await
    .unwrap();
    assert_eq!(
        status_within(&app, 401, Duration::from_millis(1500)).await,
        401
    );
    let body = openai_error(app.chat(&chat_body("x")).await, 401).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disabled")
    );

    instagen::admin::set_key_status(
        &app.store,
        &Actor::cli(),
        &app.account_id,
        &app.key_id,
        KeyStatus::Active,
    )
    .await
    .unwrap();
    assert_eq!(
        status_within(&app, 200, Duration::from_millis(1500)).await,
        200
    );

    instagen::admin::set_key_status(
        &app.store,
        &Actor::cli(),
        &app.account_id,
        &app.key_id,
        KeyStatus::Deleted,
    )
    .await
    .unwrap();
    assert_eq!(
        status_within(&app, 401, Duration::from_millis(1500)).await,
        401
    );
    // A deleted key cannot come back.
    assert!(
        instagen::admin::set_key_status(
            &app.store,
            &Actor::cli(),
            &app.account_id,
            &app.key_id,
            KeyStatus::Active
        )
        .await
        .is_err()
    );
    let keys = app.store.list_keys(&app.account_id).await.unwrap();
    assert!(keys.is_empty());
}

#[tokio::test]
async fn a_new_key_works_within_a_second_and_lists_its_usage() {
    let app = TestApp::spawn().await;
    let created = instagen::admin::create_key(
        &app.store,
        &app.hasher,
        &Actor::cli(),
        &app.account_id,
        KeySpec {
            name: "second".to_owned(),
            description: "ci".to_owned(),
            ..KeySpec::default()
        },
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_millis(1500);
    let mut status = 0;
    while Instant::now() < deadline {
        status = app
            .client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(created.secret.expose())
            .json(&chat_body("a b"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16();
        if status == 200 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status, 200);
    app.records(1).await;
    let keys = app.store.list_keys(&app.account_id).await.unwrap();
    let second = keys.iter().find(|k| k.id == created.id).unwrap();
    assert_eq!(
        (
            second.name.as_str(),
            second.description.as_str(),
            second.requests
        ),
        ("second", "ci", 1)
    );
    assert!(second.last_used_ms.is_some());
}

/// Keys made back to back (many within one millisecond) list in the order they were made,
/// and creations racing for the last places of the per-account cap never exceed it.
/// Shared by the SQLite test below and its PostgreSQL twin in `postgres.rs`.
pub(crate) async fn check_creation_order_and_cap(app: &TestApp) {
    const CAP: usize = 12;
    let cli = Actor::cli();
    let create = |name: String| {
        instagen::admin::create_key_capped(
            &app.store,
            &app.hasher,
            &cli,
            &app.account_id,
            KeySpec {
                name,
                ..KeySpec::default()
            },
            CAP,
        )
    };
    let mut made = vec![app.key_id.clone()];
    for i in 0..6 {
        made.push(create(format!("seq{i}")).await.unwrap().id);
    }
    // Seven exist; twelve racing creations leave exactly five of them made.
    let results: Vec<Result<String, instagen::store::StoreError>> =
        futures_util::future::join_all((0..12).map(|i| create(format!("race{i}"))))
            .await
            .into_iter()
            .map(|r| r.map(|k| k.id))
            .collect();
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, CAP - made.len(), "{results:?}");
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(_) | Err(instagen::store::StoreError::KeyLimit(CAP)))),
        "{results:?}"
    );

    let listed = app.store.list_keys(&app.account_id).await.unwrap();
    assert_eq!(listed.len(), CAP);
    let ids: Vec<&str> = listed.iter().map(|k| k.id.as_str()).collect();
    assert_eq!(&ids[..made.len()], &made[..], "made one after another");
    assert!(
        listed.windows(2).all(|w| w[0].created_ms < w[1].created_ms),
        "creation times within an account are distinct and ordered"
    );
    // Pages of five walk the same order.
    let mut paged = Vec::new();
    let mut after: Option<(i64, String)> = None;
    loop {
        let page = app
            .store
            .list_keys_page(
                &app.account_id,
                false,
                after.as_ref().map(|(t, id)| (*t, id.as_str())),
                5,
            )
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.created_ms, last.id.clone()));
        paged.extend(page.iter().map(|k| k.id.clone()));
    }
    assert_eq!(paged, ids);
}

#[tokio::test]
async fn keys_made_within_a_millisecond_list_in_order_and_racing_creations_keep_the_cap() {
    let app = TestApp::spawn().await;
    check_creation_order_and_cap(&app).await;
}
