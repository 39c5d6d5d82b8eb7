//! Providers managed through the operator API: keys sealed at rest and never shown,
//! traffic following a change at once, config providers overridden and restored.

use mock_upstream::MockUpstream;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::keys::{contains, walk};

const MASTER: &str = "4f1c2a9e8b7d6c5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e";

async fn with_master_key() -> TestApp {
    TestApp::spawn_with(|c| {
        let path = c.server.data_dir.join("master.key");
        std::fs::create_dir_all(&c.server.data_dir).unwrap();
        std::fs::write(&path, MASTER).unwrap();
        c.server.master_key_file = Some(path);
    })
    .await
}

async fn op(app: &TestApp, method: Method, path: &str, body: Option<&Value>) -> (u16, Value) {
    api(app, method, path, Some(ADMIN_TOKEN), body).await
}

#[tokio::test]
async fn operators_manage_providers_with_sealed_keys_and_traffic_follows_at_once() {
    let app = with_master_key().await;
    let other = MockUpstream::start().await.unwrap();
    let secret = format!("sk-live-{}", instagen::keys::random_id(24).unwrap());

    let (status, list) = op(&app, Method::GET, "/api/v1/providers", None).await;
    assert_eq!(status, 200);
    assert_eq!(list["data"][0]["name"], "mock");
    assert_eq!(list["data"][0]["source"], "config");
    assert_eq!(list["data"][0]["models"], json!([MODEL]));

    // Override the config provider by name: a new base URL and a key, no restart.
    let (status, created) = op(
        &app,
        Method::POST,
        "/api/v1/providers",
        Some(
            &json!({"name": "mock", "kind": "openai", "base_url": other.base_url(),
                     "api_key": secret, "region": "eu"}),
        ),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        (
            created["source"].clone(),
            created["overrides_config"].clone(),
            created["has_api_key"].clone()
        ),
        (json!("api"), json!(true), json!(true))
    );
    assert!(
        !created.to_string().contains(&secret),
        "the key is never shown"
    );
    assert_eq!(app.chat(&chat_body("hi")).await.status(), 200);
    assert!(app.mock.requests().is_empty(), "traffic moved at once");
    let seen = &other.requests()[0];
    assert_eq!(
        seen.header("authorization"),
        Some(format!("Bearer {secret}").as_str())
    );
    assert_eq!(app.records(1).await[0].region.as_deref(), Some("eu"));

    // Listing and reading never show it either; a duplicate is a conflict.
    let (_, list) = op(&app, Method::GET, "/api/v1/providers", None).await;
    let (_, one) = op(&app, Method::GET, "/api/v1/providers/mock", None).await;
    assert!(!list.to_string().contains(&secret) && !one.to_string().contains(&secret));
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        1,
        "the override replaces the config one"
    );
    let (status, _) = op(
        &app,
        Method::POST,
        "/api/v1/providers",
        Some(&json!({"name": "mock", "kind": "openai", "base_url": other.base_url()})),
    )
    .await;
    assert_eq!(status, 409);

    // Server-side secrets cannot be named through the API.
    let (status, err) = op(
        &app,
        Method::POST,
        "/api/v1/providers",
        Some(
            &json!({"name": "exfil", "kind": "openai", "base_url": "https://evil.example/v1",
                     "api_key_env": "INSTAGEN_MASTER_KEY"}),
        ),
    )
    .await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (400, Some("api_key_env"))
    );

    // Rotate the key, then remove it.
    let rotated = format!("sk-live-{}", instagen::keys::random_id(24).unwrap());
    let (status, _) = op(
        &app,
        Method::PATCH,
        "/api/v1/providers/mock",
        Some(&json!({"api_key": rotated})),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(app.chat(&chat_body("hi")).await.status(), 200);
    assert_eq!(
        other.requests()[1].header("authorization"),
        Some(format!("Bearer {rotated}").as_str())
    );
    let (status, patched) = op(
        &app,
        Method::PATCH,
        "/api/v1/providers/mock",
        Some(&json!({"api_key": null, "third_party": true})),
    )
    .await;
    assert_eq!(
        (status, patched["has_api_key"].clone()),
        (200, json!(false))
    );
    assert_eq!(app.chat(&chat_body("hi")).await.status(), 200);
    assert_eq!(other.requests()[2].header("authorization"), None);

    // Route health for operators.
    let (status, routes) = op(&app, Method::GET, "/api/v1/routes", None).await;
    assert_eq!(status, 200);
    assert_eq!(routes["data"][0]["model"], MODEL);
    assert_eq!(routes["data"][0]["routes"][0]["healthy"], true);

    // Deleting the override restores the config provider.
    let (status, _) = op(&app, Method::DELETE, "/api/v1/providers/mock", None).await;
    assert_eq!(status, 200);
    assert_eq!(app.chat(&chat_body("hi")).await.status(), 200);
    assert_eq!(app.mock.requests().len(), 1);
    assert_eq!(other.requests().len(), 3);
    let (status, _) = op(&app, Method::DELETE, "/api/v1/providers/mock", None).await;
    assert_eq!(
        status, 404,
        "a config provider cannot be deleted through the API"
    );

    let (_, audit) = op(&app, Method::GET, "/api/v1/audit", None).await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in ["provider.create", "provider.update", "provider.delete"] {
        assert!(actions.contains(&a), "{a} audited");
    }

    // Neither key is anywhere on disk in plaintext (database, WAL, journal, logs).
    let (dir, store) = app.shutdown().await;
    store.close().await;
    for file in walk(dir.path()) {
        let bytes = std::fs::read(&file).unwrap();
        for s in [&secret, &rotated] {
            assert!(
                !contains(&bytes, s.as_bytes()),
                "{} holds a key",
                file.display()
            );
        }
    }
    if let Some(bytes) = store_contents(dir.path()).await {
        for s in [&secret, &rotated] {
            assert!(
                !contains(&bytes, s.as_bytes()),
                "the PostgreSQL store holds a key"
            );
        }
    }
}

#[tokio::test]
async fn without_a_master_key_no_provider_key_is_stored_and_used_providers_stay() {
    let app = TestApp::spawn().await;
    let other = MockUpstream::start().await.unwrap();
    let (status, err) = op(
        &app,
        Method::POST,
        "/api/v1/providers",
        Some(
            &json!({"name": "vendor", "kind": "anthropic", "base_url": other.base_url(),
                     "api_key": "sk-ant-x"}),
        ),
    )
    .await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (400, Some("api_key"))
    );
    let (status, created) = op(
        &app,
        Method::POST,
        "/api/v1/providers",
        Some(&json!({"name": "vendor", "kind": "anthropic", "base_url": other.base_url()})),
    )
    .await;
    assert_eq!(
        (status, created["has_api_key"].clone()),
        (201, json!(false))
    );
    for bad in [
        json!({"name": "bad name", "kind": "openai", "base_url": "http://x"}),
        json!({"name": "b", "kind": "openai", "base_url": "ftp://x"}),
        json!({"name": "b", "kind": "nope", "base_url": "http://x"}),
        json!({"name": "b", "kind": "openai", "base_url": "http://x", "surprise": 1}),
    ] {
        let (status, _) = op(&app, Method::POST, "/api/v1/providers", Some(&bad)).await;
        assert_eq!(status, 400, "{bad}");
    }
    let (status, _) = op(
        &app,
        Method::PATCH,
        "/api/v1/providers/vendor",
        Some(&json!({"name": "renamed"})),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _) = op(&app, Method::DELETE, "/api/v1/providers/vendor", None).await;
    assert_eq!(status, 200);
    let (_, list) = op(&app, Method::GET, "/api/v1/providers", None).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}
