//! Alerts before the money runs out: a crossed threshold sends one signed webhook (retried
//! with backoff until the receiver takes it) and emails the account's owners, once per
//! period, every attempt in the delivery log; a receiver that keeps failing is given up;
//! a webhook to an inside address is refused; a new privacy-policy version emails every
//! user once. Real receivers: an HTTP server and an SMTP server in the test process.

use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit, Mac};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::helpers::*;
use crate::receivers::{SmtpSink, WebhookReceiver};
use instagen::config::{Config, SmtpSecurity};

/// Mail through the sink; checks and deliveries every few tens of milliseconds.
fn alerting(c: &mut Config, smtp_port: u16) {
    c.email.smtp_host = Some("127.0.0.1".into());
    c.email.smtp_port = Some(smtp_port);
    c.email.security = SmtpSecurity::None;
    c.email.from = "InstaGen Alerts <alerts@instagen.test>".into();
    c.alerts.check_interval_ms = 100;
    c.alerts.deliver_interval_ms = 50;
    c.alerts.retry_base_ms = 100;
    c.alerts.allow_private_webhooks = true;
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Checks `x-instagen-signature: t=<unix s>,v1=<hex HMAC-SHA-256(secret, "t.body")>`.
fn verify(secret: &str, header: &str, body: &[u8]) {
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v)| Some((t.strip_prefix("t=")?, v.strip_prefix("v1=")?)))
        .unwrap_or_else(|| panic!("signature header shape: {header}"));
    let age = instagen::time::now_ms() / 1000 - t.parse::<i64>().unwrap();
    assert!((0..60).contains(&age), "signed now: {header}");
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(body);
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(v1, want, "the signature verifies with the rule's secret");
}

async fn create_alert(app: &TestApp, account: &str, spec: Value) -> Value {
    let (status, alert) = api(
        app,
        Method::POST,
        &format!("/api/v1/accounts/{account}/alerts"),
        Some(ADMIN_TOKEN),
        Some(&spec),
    )
    .await;
    assert_eq!(status, 201, "{alert}");
    alert
}

async fn deliveries(app: &TestApp, account: &str) -> Vec<Value> {
    let (status, log) = api(
        app,
        Method::GET,
        &format!("/api/v1/accounts/{account}/alert-deliveries"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{log}");
    log["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_crossed_spend_threshold_sends_one_signed_webhook_retried_until_taken_and_emails_the_owners()
 {
    let sink = SmtpSink::start().await;
    let hooks = WebhookReceiver::start(&[500, 503]).await;
    let port = sink.port;
    let app = TestApp::spawn_with(|c| alerting(c, port)).await;
    let (account, owner) = create_account_with_owner(&app, "initech").await;
    let (status, key) = api(
        &app,
        Method::POST,
        &format!("/api/v1/accounts/{account}/keys"),
        Some(ADMIN_TOKEN),
        Some(&json!({"name": "bot", "limits": {"spend_limit_usd": "0.0001", "spend_limit_period": "day"}})),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    let key_id = key["key"]["id"].as_str().unwrap().to_owned();
    let alert = create_alert(
        &app,
        &account,
        json!({"kind": "key_spend", "key_id": key_id, "threshold_percent": 1,
               "webhook_url": hooks.url, "email": true}),
    )
    .await;
    let secret = alert["webhook_secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let (_, listed) = api(
        &app,
        Method::GET,
        &format!("/api/v1/accounts/{account}/alerts"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(listed["data"][0]["threshold_percent"], 1);
    assert!(
        listed["data"][0].get("webhook_secret").is_none(),
        "the secret is shown once"
    );

    // One request spends ~3% of the key's limit: the 1% alert fires.
    let mut body = chat_body("CANARY-alert-prompt what is two plus two");
    body["max_tokens"] = json!(5);
    let send = || async {
        app.client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(key["secret"].as_str().unwrap())
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    while send().await != 200 {
        assert!(Instant::now() < deadline, "the new key never worked");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_for("the webhook to be taken", || {
        hooks.calls().iter().any(|h| h.answered == 200)
    })
    .await;
    wait_for("the owner's email", || !sink.mails().is_empty()).await;

    let calls = hooks.calls();
    assert_eq!(
        calls.iter().map(|h| h.answered).collect::<Vec<_>>(),
        vec![500, 503, 200],
        "retried until taken"
    );
    let delivery_id = calls[0].headers["x-instagen-delivery"].clone();
    for h in &calls {
        assert_eq!(h.headers["x-instagen-delivery"], delivery_id);
        assert_eq!(h.headers["x-instagen-event"], "alert.key_spend");
        verify(
            &secret,
            h.headers["x-instagen-signature"].to_str().unwrap(),
            &h.body,
        );
    }
    let event: Value = serde_json::from_slice(&calls[2].body).unwrap();
    assert_eq!(event["type"], "alert.key_spend");
    assert_eq!(event["account_id"], json!(account));
    assert_eq!(event["rule_id"], alert["id"]);
    assert_eq!(event["data"]["key_id"], json!(key_id));
    assert_eq!(event["data"]["limit_usd"], "0.000100000");
    assert_eq!(event["data"]["period"], "day");
    assert!(event["data"]["percent"].as_i64().unwrap() >= 1, "{event}");
    let body = String::from_utf8_lossy(&calls[2].body).to_string();
    assert!(!body.contains("CANARY"), "metadata only: {body}");

    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, vec![owner.clone()]);
    assert!(
        mails[0].from.contains("alerts@instagen.test"),
        "{}",
        mails[0].data
    );
    assert!(
        mails[0].data.contains("InstaGen alert: key bot has used"),
        "{}",
        mails[0].data
    );
    assert!(!mails[0].data.contains("CANARY"));

    // The delivery log shows both, with their attempts (the webhook's is written once
    // its 200 has come back, which may be just after the receiver saw the call).
    let deadline = Instant::now() + Duration::from_secs(5);
    let log = loop {
        let log = deliveries(&app, &account).await;
        let delivered = |d: &Value| d["channel"] == "webhook" && d["status"] == "delivered";
        if log.iter().any(delivered) || Instant::now() > deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let webhook = log.iter().find(|d| d["channel"] == "webhook").unwrap();
    assert_eq!(
        (
            &webhook["status"],
            &webhook["attempts"],
            &webhook["last_status"]
        ),
        (&json!("delivered"), &json!(3), &json!(200))
    );
    let email = log.iter().find(|d| d["channel"] == "email").unwrap();
    assert_eq!(
        (&email["status"], &email["target"]),
        (&json!("delivered"), &json!(owner))
    );

    // More spend in the same period alerts nobody again.
    assert_eq!(send().await, 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(hooks.calls().len(), 3);
    assert_eq!(sink.mails().len(), 1);
    assert_eq!(deliveries(&app, &account).await.len(), 2);
}

#[tokio::test]
async fn a_receiver_that_keeps_failing_is_given_up_and_an_inside_address_is_refused() {
    let hooks = WebhookReceiver::start(&[500; 10]).await;
    let sink = SmtpSink::start().await;
    let port = sink.port;
    let app = TestApp::spawn_with(|c| {
        alerting(c, port);
        c.alerts.max_attempts = 3;
    })
    .await;
    // The balance is 0: below $1 at once.
    let account = app.account_id.clone();
    create_alert(
        &app,
        &account,
        json!({"kind": "balance_below", "threshold_usd": "1", "webhook_url": hooks.url}),
    )
    .await;
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while log.first().is_none_or(|d: &Value| d["status"] != "failed") {
        assert!(Instant::now() < deadline, "never given up: {log:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        log = deliveries(&app, &account).await;
    }
    assert_eq!(log.len(), 1);
    assert_eq!(
        (&log[0]["attempts"], &log[0]["last_status"]),
        (&json!(3), &json!(500))
    );
    assert_eq!(hooks.calls().len(), 3);
    let event: Value = serde_json::from_slice(&hooks.calls()[0].body).unwrap();
    assert_eq!(event["data"]["threshold_usd"], "1.000000000");

    // Without `allow_private_webhooks` a loopback receiver is never called.
    let hooks = WebhookReceiver::start(&[]).await;
    let app = TestApp::spawn_with(|c| {
        alerting(c, port);
        c.alerts.allow_private_webhooks = false;
        c.alerts.max_attempts = 1;
    })
    .await;
    let account = app.account_id.clone();
    create_alert(
        &app,
        &account,
        json!({"kind": "balance_below", "threshold_usd": "1", "webhook_url": hooks.url}),
    )
    .await;
    let mut log = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    while log.first().is_none_or(|d: &Value| d["status"] != "failed") {
        assert!(Instant::now() < deadline, "never refused: {log:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
        log = deliveries(&app, &account).await;
    }
    assert!(
        log[0]["last_error"].as_str().unwrap().contains("private"),
        "{log:?}"
    );
    assert!(hooks.calls().is_empty());
}

#[tokio::test]
async fn alert_rules_are_checked_where_they_enter() {
    let app = TestApp::spawn().await;
    let account = app.account_id.clone();
    for (spec, field) in [
        (
            json!({"kind": "key_spend", "threshold_percent": 50, "email": true}),
            "key_id",
        ),
        (
            json!({"kind": "key_spend", "key_id": app.key_id, "threshold_percent": 50, "email": true}),
            "key_id",
        ),
        (
            json!({"kind": "balance_below", "threshold_usd": "-1", "email": true}),
            "threshold_usd",
        ),
        (
            json!({"kind": "daily_spend", "threshold_usd": "abc", "email": true}),
            "threshold_usd",
        ),
        (
            json!({"kind": "daily_spend", "threshold_usd": "5"}),
            "webhook_url",
        ),
        (
            json!({"kind": "daily_spend", "threshold_usd": "5", "webhook_url": "ftp://x"}),
            "webhook_url",
        ),
        (
            json!({"kind": "daily_spend", "threshold_usd": "5", "threshold_percent": 3, "email": true}),
            "threshold_percent",
        ),
        (json!({"kind": "weekly", "email": true}), "kind"),
    ] {
        let (status, e) = api(
            &app,
            Method::POST,
            &format!("/api/v1/accounts/{account}/alerts"),
            Some(ADMIN_TOKEN),
            Some(&spec),
        )
        .await;
        assert_eq!(status, 400, "{spec} → {e}");
        assert_eq!(e["error"]["field"], field, "{spec} → {e}");
    }
    let alert = create_alert(
        &app,
        &account,
        json!({"kind": "daily_spend", "threshold_usd": "5", "email": true}),
    )
    .await;
    assert!(
        alert.get("webhook_secret").is_none(),
        "no webhook, no secret"
    );
    let path = format!(
        "/api/v1/accounts/{account}/alerts/{}",
        alert["id"].as_str().unwrap()
    );
    let (status, _) = api(&app, Method::DELETE, &path, Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 204);
    let (status, _) = api(&app, Method::DELETE, &path, Some(ADMIN_TOKEN), None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_new_privacy_policy_version_emails_every_user_once() {
    let sink = SmtpSink::start().await;
    let port = sink.port;
    let app = TestApp::spawn_with(|c| alerting(c, port)).await;
    let (_, first) = create_account_with_owner(&app, "umbrella").await;
    let (_, second) = create_account_with_owner(&app, "cyberdyne").await;
    // The first version is nobody's news.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sink.mails().is_empty());
    let v2 = |c: &mut Config| {
        alerting(c, port);
        c.privacy.version = "2026-12".into();
        c.privacy.contact = Some("privacy@instagen.test".into());
    };
    let app = app.restart_with(v2).await;
    wait_for("two notices", || sink.mails().len() >= 2).await;
    let mut to: Vec<String> = sink.mails().iter().flat_map(|m| m.to.clone()).collect();
    to.sort();
    let mut want = vec![first, second];
    want.sort();
    assert_eq!(to, want);
    for m in sink.mails() {
        assert!(
            m.data
                .contains("privacy policy has changed (version 2026-12)"),
            "{}",
            m.data
        );
        assert!(m.data.contains("privacy@instagen.test"), "{}", m.data);
    }
    // Restarting with the same version tells nobody again.
    let _app = app.restart_with(v2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.mails().len(), 2);
}
