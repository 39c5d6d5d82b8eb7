//! The operator's privacy policy: served publicly (InstaGen's own by default, or the
//! configured text, version and contact), acknowledged per user and version, asked again
//! when the operator changes the version; a bad `privacy.text_file` is a config error.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const ACK: &str = "/api/v1/me/privacy";

/// `POST /api/v1/me/privacy {"version"}` as the user of `s`, with or without its CSRF token.
async fn acknowledge(app: &TestApp, s: &Session, version: &str, csrf: bool) -> (u16, Value) {
    as_user(
        app,
        s,
        Method::POST,
        ACK,
        Some(&json!({ "version": version })),
        csrf,
    )
    .await
}

#[tokio::test]
async fn the_default_policy_is_served_publicly() {
    let app = TestApp::spawn().await;
    let (status, policy) = api(&app, Method::GET, "/api/v1/privacy", None, None).await;
    assert_eq!(status, 200, "{policy}");
    assert_eq!(policy["version"], "1");
    assert_eq!(policy["contact"], Value::Null);
    let text = policy["text"].as_str().unwrap();
    assert_eq!(text, instagen::config::DEFAULT_PRIVACY_POLICY);
    for promise in [
        "never reach disk",
        "keyed hashes",
        "client IP",
        "Export your usage as CSV or JSON",
        "Billing records are kept",
    ] {
        assert!(
            text.contains(promise),
            "the default policy says `{promise}`"
        );
    }
}

#[tokio::test]
async fn a_configured_policy_text_version_and_contact_are_served() {
    let app = TestApp::spawn_with(|c| {
        c.privacy.version = "2026-11".to_owned();
        c.privacy.text = Some("# Our policy\n\nWe keep nothing you send.\n".to_owned());
        c.privacy.contact = Some("privacy@example.com".to_owned());
    })
    .await;
    let (status, policy) = api(&app, Method::GET, "/api/v1/privacy", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        policy,
        json!({"version": "2026-11", "text": "# Our policy\n\nWe keep nothing you send.\n",
               "contact": "privacy@example.com"})
    );
}

#[tokio::test]
async fn a_user_acknowledges_the_version_in_force_and_a_new_version_asks_again() {
    let app = TestApp::spawn().await;
    let (status, _) = api(
        &app,
        Method::POST,
        "/api/v1/accounts",
        Some(ADMIN_TOKEN),
        Some(&json!({"name": "readers", "owner_email": "reader@readers.example", "owner_password": "correct horse battery"})),
    )
    .await;
    assert_eq!(status, 201);
    let s = login(&app, "reader@readers.example", "correct horse battery").await;
    let seen = |body: &Value| body["privacy_seen_version"].clone();

    let (_, me) = as_user(&app, &s, Method::GET, "/api/v1/me", None, false).await;
    assert_eq!(seen(&me), Value::Null, "{me}");
    let (_, session) = as_user(&app, &s, Method::GET, "/api/v1/session", None, false).await;
    assert_eq!(seen(&session), Value::Null);

    // A stale or unknown version is refused, naming the field; the write needs CSRF.
    let (status, err) = acknowledge(&app, &s, "0", true).await;
    assert_eq!(status, 400, "{err}");
    assert_eq!(err["error"]["field"], "version");
    let (status, _) = acknowledge(&app, &s, "1", false).await;
    assert_eq!(status, 403);
    let (_, me) = as_user(&app, &s, Method::GET, "/api/v1/me", None, false).await;
    assert_eq!(seen(&me), Value::Null, "nothing recorded yet");

    let (status, body) = acknowledge(&app, &s, "1", true).await;
    assert_eq!((status, body), (200, json!({"privacy_seen_version": "1"})));
    let (status, _) = acknowledge(&app, &s, "1", true).await;
    assert_eq!(status, 200, "acknowledging again is fine");
    let (_, me) = as_user(&app, &s, Method::GET, "/api/v1/me", None, false).await;
    assert_eq!(seen(&me), "1");
    assert_eq!(me["user"]["privacy_seen_version"], "1");
    let (_, session) = as_user(&app, &s, Method::GET, "/api/v1/session", None, false).await;
    assert_eq!(seen(&session), "1");

    // Audited once, naming the user.
    let (_, audit) = api(&app, Method::GET, "/api/v1/audit", Some(ADMIN_TOKEN), None).await;
    let acks: Vec<&Value> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "privacy.acknowledged")
        .collect();
    assert_eq!(acks.len(), 1, "{audit}");
    assert_eq!(acks[0]["target_id"], me["user"]["id"]);
    assert_eq!(acks[0]["actor_kind"], "user");

    // Tokens have no user to record this for.
    let (status, err) = api(
        &app,
        Method::POST,
        ACK,
        Some(ADMIN_TOKEN),
        Some(&json!({"version": "1"})),
    )
    .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (400, Some("session_required"))
    );

    // The operator publishes version 2 and restarts on the same data: the user's
    // acknowledgement is now stale, and only version 2 is accepted.
    let app = app
        .restart_with(|c| c.privacy.version = "2".to_owned())
        .await;
    let (_, policy) = api(&app, Method::GET, "/api/v1/privacy", None, None).await;
    assert_eq!(policy["version"], "2");
    let (status, session) = as_user(&app, &s, Method::GET, "/api/v1/session", None, false).await;
    assert_eq!(status, 200, "the session survives the restart");
    assert_eq!(seen(&session), "1");
    assert_ne!(
        seen(&session),
        policy["version"],
        "stale: the console asks again"
    );
    assert_eq!(session["csrf_token"].as_str(), Some(s.csrf.as_str()));
    let (status, err) = acknowledge(&app, &s, "1", true).await;
    assert_eq!(
        (status, err["error"]["field"].as_str()),
        (400, Some("version"))
    );
    let (status, _) = acknowledge(&app, &s, "2", true).await;
    assert_eq!(status, 200);
    let (_, me) = as_user(&app, &s, Method::GET, "/api/v1/me", None, false).await;
    assert_eq!(seen(&me), "2");
}

#[test]
fn an_unreadable_privacy_text_file_is_a_config_error_exit_64() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("instagen.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"{d}\"\n[privacy]\ntext_file = \"{d}/missing-policy.md\"\n",
            d = dir.path().display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_instagen"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("privacy.text_file"), "{stderr}");
}
