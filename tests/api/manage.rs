//! The management API: a user created by an operator logs in and runs the whole key
//! lifecycle through the API alone, each step checked from `/v1`; roles, CSRF,
//! credential separation, audit entries, security events and input validation.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// An operator creates account `name` with an owner; returns (account id, owner session).
async fn account_with_owner(app: &TestApp, name: &str) -> (String, Session) {
    let (account, email) = create_account_with_owner(app, name).await;
    let session = login(app, &email, "correct horse battery").await;
    (account, session)
}

#[tokio::test]
async fn a_new_user_runs_the_whole_key_lifecycle_through_the_api_alone() {
    let app = TestApp::spawn().await;
    let (account, owner) = account_with_owner(&app, "lifecycle").await;
    let keys = format!("/api/v1/accounts/{account}/keys");

    // Create: the secret is shown once and works on /v1.
    let (status, created) = as_user(
        &app,
        &owner,
        Method::POST,
        &keys,
        Some(&json!({"name": "ci", "description": "pipeline"})),
        true,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(chat_status(&app, &secret, 200).await.0, 200);
    assert_eq!(chat_status(&app, &secret, 200).await.0, 200);

    // Usage statistics per key, from the rollups.
    let key_path = format!("{keys}/{id}");
    let mut stats = Value::Null;
    for _ in 0..50 {
        let (_, k) = as_user(&app, &owner, Method::GET, &key_path, None, false).await;
        if k["usage"]["all_time"]["requests"] == 2 {
            stats = k;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stats["usage"]["last_24h"]["requests"], 2, "{stats}");
    assert_eq!(stats["usage"]["last_30d"]["input_tokens"], 4);
    assert_eq!(
        stats["usage"]["all_time"]["cost_usd"],
        format!("0.{:09}", 2 * test_cost(2, 0, 5))
    );
    assert!(stats["usage"]["last_used_ms"].is_i64());
    let (_, list) = as_user(&app, &owner, Method::GET, &keys, None, false).await;
    assert!(
        !list.to_string().contains(&secret[secret.len() - 20..]),
        "listings never show secrets"
    );

    // Update.
    let (status, k) = as_user(
        &app,
        &owner,
        Method::PATCH,
        &key_path,
        Some(&json!({"name": "ci-2", "limits": {"rpm": 60}})),
        true,
    )
    .await;
    assert_eq!(
        (status, k["name"].as_str(), k["limits"]["rpm"].as_i64()),
        (200, Some("ci-2"), Some(60))
    );

    // Rotate with a grace period: both secrets work.
    let (status, rotated) = as_user(
        &app,
        &owner,
        Method::POST,
        &format!("{key_path}/rotate"),
        Some(&json!({"grace_seconds": 60})),
        true,
    )
    .await;
    assert_eq!(status, 200, "{rotated}");
    let second = rotated["secret"].as_str().unwrap().to_owned();
    assert_ne!(second, secret);
    assert!(rotated["previous_secret_valid_until_ms"].is_i64());
    assert_eq!(chat_status(&app, &second, 200).await.0, 200);
    assert_eq!(
        chat_status(&app, &secret, 200).await.0,
        200,
        "old secret works during the grace period"
    );

    // Rotate with no grace: the previous secret stops at once.
    let (_, rotated) = as_user(
        &app,
        &owner,
        Method::POST,
        &format!("{key_path}/rotate"),
        Some(&json!({"grace_seconds": 0})),
        true,
    )
    .await;
    let third = rotated["secret"].as_str().unwrap().to_owned();
    assert_eq!(chat_status(&app, &third, 200).await.0, 200);
    assert_eq!(chat_status(&app, &second, 401).await.0, 401);
    assert_eq!(chat_status(&app, &secret, 401).await.0, 401);

    // Disable / enable.
    assert_eq!(
        as_user(
            &app,
            &owner,
            Method::POST,
            &format!("{key_path}/disable"),
            None,
            true
        )
        .await
        .0,
        200
    );
    let (status, body) = chat_status(&app, &third, 401).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["message"], "this access key is disabled");
    assert_eq!(
        as_user(
            &app,
            &owner,
            Method::POST,
            &format!("{key_path}/enable"),
            None,
            true
        )
        .await
        .0,
        200
    );
    assert_eq!(chat_status(&app, &third, 200).await.0, 200);

    // Delete: permanent.
    assert_eq!(
        as_user(&app, &owner, Method::DELETE, &key_path, None, true)
            .await
            .0,
        204
    );
    let (status, body) = chat_status(&app, &third, 401).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["message"], "this access key has been revoked");
    assert_eq!(
        as_user(&app, &owner, Method::GET, &key_path, None, false)
            .await
            .0,
        404
    );
    assert_eq!(
        as_user(
            &app,
            &owner,
            Method::POST,
            &format!("{key_path}/enable"),
            None,
            true
        )
        .await
        .0,
        404
    );
    // Its past usage stays attributed to its id.
    let records = app
        .store
        .usage_records(&account, 0, i64::MAX)
        .await
        .unwrap();
    assert!(records.iter().filter(|r| *r.key_id == *id).count() >= 4);
    let (_, all) = as_user(
        &app,
        &owner,
        Method::GET,
        &format!("{keys}?include_deleted=true"),
        None,
        false,
    )
    .await;
    let gone = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == id.as_str())
        .unwrap();
    assert_eq!(
        (gone["status"].as_str(), gone["name"].as_str()),
        (Some("deleted"), Some("ci-2"))
    );
    assert!(gone["usage"]["all_time"]["requests"].as_i64().unwrap() >= 4);
    let (_, live) = as_user(&app, &owner, Method::GET, &keys, None, false).await;
    assert!(
        live["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|k| k["id"] != id.as_str())
    );

    // Logout ends the session.
    assert_eq!(
        as_user(&app, &owner, Method::DELETE, "/api/v1/session", None, true)
            .await
            .0,
        204
    );
    assert_eq!(
        as_user(&app, &owner, Method::GET, &keys, None, false)
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn expired_keys_and_allowed_models_are_enforced_on_v1() {
    let app = TestApp::spawn().await;
    let (account, owner) = account_with_owner(&app, "limits").await;
    let keys = format!("/api/v1/accounts/{account}/keys");
    // Four seconds to live: time enough for the key table to pick it up on a busy machine.
    let soon = instagen::time::now_ms() + 4_000;
    let (_, created) = as_user(
        &app,
        &owner,
        Method::POST,
        &keys,
        Some(&json!({"name": "short", "expires_ms": soon})),
        true,
    )
    .await;
    let short = created["secret"].as_str().unwrap().to_owned();
    assert_eq!(chat_status(&app, &short, 200).await.0, 200);
    let left = soon + 100 - instagen::time::now_ms();
    tokio::time::sleep(Duration::from_millis(u64::try_from(left).unwrap_or(0))).await;
    let (status, body) = chat_status(&app, &short, 401).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["message"], "this access key has expired");

    let (_, created) = as_user(
        &app,
        &owner,
        Method::POST,
        &keys,
        Some(&json!({"name": "narrow", "allowed_models": ["other-model"]})),
        true,
    )
    .await;
    let narrow = created["secret"].as_str().unwrap().to_owned();
    let (status, body) = chat_status(&app, &narrow, 403).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "model_not_allowed");
    let models: Value = app
        .client
        .get(app.url("/v1/models"))
        .bearer_auth(&narrow)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["data"], json!([]));
}

#[tokio::test]
async fn cookie_writes_need_the_csrf_token() {
    let app = TestApp::spawn().await;
    let (account, owner) = account_with_owner(&app, "csrf").await;
    let keys = format!("/api/v1/accounts/{account}/keys");
    let (status, body) = as_user(
        &app,
        &owner,
        Method::POST,
        &keys,
        Some(&json!({"name": "x"})),
        false,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("csrf_failed"))
    );
    assert_eq!(
        as_user(&app, &owner, Method::GET, &keys, None, false)
            .await
            .0,
        200
    );
    assert_eq!(
        as_user(
            &app,
            &owner,
            Method::POST,
            &keys,
            Some(&json!({"name": "x"})),
            true
        )
        .await
        .0,
        201
    );
}

#[tokio::test]
async fn viewers_read_but_cannot_write_and_members_cannot_manage_tokens() {
    let app = TestApp::spawn().await;
    let (account, owner) = account_with_owner(&app, "roles").await;
    for (email, role) in [
        ("viewer@roles.example", "viewer"),
        ("member@roles.example", "member"),
    ] {
        invite_and_accept(&app, &owner, &account, email, role, "a long password").await;
    }
    let viewer = login(&app, "viewer@roles.example", "a long password").await;
    let keys = format!("/api/v1/accounts/{account}/keys");
    assert_eq!(
        as_user(&app, &viewer, Method::GET, &keys, None, false)
            .await
            .0,
        200
    );
    let (status, body) = as_user(
        &app,
        &viewer,
        Method::POST,
        &keys,
        Some(&json!({"name": "nope"})),
        true,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let member = login(&app, "member@roles.example", "a long password").await;
    assert_eq!(
        as_user(
            &app,
            &member,
            Method::POST,
            &keys,
            Some(&json!({"name": "yes"})),
            true
        )
        .await
        .0,
        201
    );
    let tokens = format!("/api/v1/accounts/{account}/tokens");
    assert_eq!(
        as_user(
            &app,
            &member,
            Method::POST,
            &tokens,
            Some(&json!({"name": "t", "role": "member"})),
            true
        )
        .await
        .0,
        403
    );
    assert_eq!(
        as_user(&app, &member, Method::GET, "/api/v1/users", None, false)
            .await
            .0,
        403
    );
}

#[tokio::test]
async fn access_keys_and_management_tokens_never_cross_over() {
    let app = TestApp::spawn().await;
    let (account, owner) = account_with_owner(&app, "kinds").await;
    let (status, body) = api(&app, Method::GET, "/api/v1/me", Some(&app.key), None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("wrong_credential_kind"))
    );

    let (status, token) = as_user(
        &app,
        &owner,
        Method::POST,
        &format!("/api/v1/accounts/{account}/tokens"),
        Some(&json!({"name": "automation", "role": "member"})),
        true,
    )
    .await;
    assert_eq!(status, 201, "{token}");
    let token = token["secret"].as_str().unwrap().to_owned();
    assert!(token.starts_with("igm-"));
    let (status, body) = chat_status(&app, &token, 401).await;
    assert_eq!(status, 401);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("management tokens")
    );

    // The token works on the management API, within its account and role.
    let (status, _) = api(
        &app,
        Method::POST,
        &format!("/api/v1/accounts/{account}/keys"),
        Some(&token),
        Some(&json!({"name": "via-token"})),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(
        api(
            &app,
            Method::GET,
            &format!("/api/v1/accounts/{account}/audit"),
            Some(&token),
            None
        )
        .await
        .0,
        403
    );
}

#[tokio::test]
async fn every_management_action_is_audited_without_secrets() {
    let app = TestApp::spawn().await;
    let (account, owner) = account_with_owner(&app, "audited").await;
    let keys = format!("/api/v1/accounts/{account}/keys");
    let (_, created) = as_user(
        &app,
        &owner,
        Method::POST,
        &keys,
        Some(&json!({"name": "k"})),
        true,
    )
    .await;
    let id = created["key"]["id"].as_str().unwrap();
    let secret = created["secret"].as_str().unwrap();
    let key_path = format!("{keys}/{id}");
    as_user(
        &app,
        &owner,
        Method::PATCH,
        &key_path,
        Some(&json!({"description": "d"})),
        true,
    )
    .await;
    let (_, rotated) = as_user(
        &app,
        &owner,
        Method::POST,
        &format!("{key_path}/rotate"),
        None,
        true,
    )
    .await;
    as_user(
        &app,
        &owner,
        Method::POST,
        &format!("{key_path}/disable"),
        None,
        true,
    )
    .await;
    as_user(
        &app,
        &owner,
        Method::POST,
        &format!("{key_path}/enable"),
        None,
        true,
    )
    .await;
    as_user(&app, &owner, Method::DELETE, &key_path, None, true).await;
    let (_, token) = as_user(
        &app,
        &owner,
        Method::POST,
        &format!("/api/v1/accounts/{account}/tokens"),
        Some(&json!({"name": "t", "role": "viewer"})),
        true,
    )
    .await;
    let (status, audit) = as_user(
        &app,
        &owner,
        Method::GET,
        &format!("/api/v1/accounts/{account}/audit"),
        None,
        false,
    )
    .await;
    assert_eq!(status, 200);
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "account.create",
        "member.set",
        "key.create",
        "key.update",
        "key.rotate",
        "key.disable",
        "key.enable",
        "key.delete",
        "token.create",
    ] {
        assert!(actions.contains(&a), "missing {a} in {actions:?}");
    }
    let entry = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "key.create")
        .unwrap();
    assert_eq!(entry["target_id"], id);
    assert_eq!(entry["actor_kind"], "user");
    assert_eq!(entry["client_ip"], "127.0.0.0/24");
    let text = audit.to_string();
    for s in [
        secret,
        rotated["secret"].as_str().unwrap(),
        token["secret"].as_str().unwrap(),
    ] {
        assert!(
            !text.contains(&s[s.len() - 30..]),
            "the audit log never holds a secret"
        );
    }
}

#[tokio::test]
async fn failed_v1_authentications_are_counted_per_key_for_the_owner() {
    let app = TestApp::spawn().await;
    let (account, owner) = account_with_owner(&app, "watched").await;
    let keys = format!("/api/v1/accounts/{account}/keys");
    let (_, created) = as_user(
        &app,
        &owner,
        Method::POST,
        &keys,
        Some(&json!({"name": "k"})),
        true,
    )
    .await;
    let secret = created["secret"].as_str().unwrap().to_owned();
    let id = created["key"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        chat_status(&app, &secret, 200).await.0,
        200,
        "the key is live"
    );
    as_user(
        &app,
        &owner,
        Method::POST,
        &format!("{keys}/{id}/disable"),
        None,
        true,
    )
    .await;
    let (status, body) = chat_status(&app, &secret, 401).await;
    assert_eq!(
        (status, body["error"]["message"].as_str()),
        (401, Some("this access key is disabled"))
    );
    for _ in 0..2 {
        assert_eq!(app.chat(&chat_body("x")).await.status(), 200);
        let resp = app
            .client
            .post(app.url("/v1/chat/completions"))
            .bearer_auth(&secret)
            .json(&chat_body("x"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
    }
    let mut events = Value::Null;
    for _ in 0..40 {
        let (_, e) = as_user(
            &app,
            &owner,
            Method::GET,
            &format!("/api/v1/accounts/{account}/security-events"),
            None,
            false,
        )
        .await;
        // Events are counted per hour: summed, should the three straddle an hour's turn.
        let disabled: i64 = e["data"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|x| x["kind"] == "key_disabled")
            .map(|x| x["count"].as_i64().unwrap_or(0))
            .sum();
        if disabled >= 3 {
            events = e;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows: Vec<&Value> = events["data"]
        .as_array()
        .expect("security events")
        .iter()
        .filter(|x| x["kind"] == "key_disabled")
        .collect();
    assert!(rows.iter().all(|e| e["key_id"] == id), "{events}");
    assert!(!events.to_string().contains(&secret[secret.len() - 20..]));

    // A key id that names no key is counted per truncated client IP, for operators.
    let bogus = "ig-zzzzzzzzzzzzzzzz-0123456789012345678901234567890123456789";
    let resp = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(bogus)
        .json(&chat_body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let mut found = false;
    for _ in 0..40 {
        let (_, all) = api(
            &app,
            Method::GET,
            "/api/v1/security-events",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
        found = all["data"].as_array().unwrap().iter().any(|e| {
            e["kind"] == "key_unknown" && e["client_ip"] == "127.0.0.0/24" && e["key_id"].is_null()
        });
        if found {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(found, "per-IP event visible to operators");
    assert_eq!(
        as_user(
            &app,
            &owner,
            Method::GET,
            "/api/v1/security-events",
            None,
            false
        )
        .await
        .0,
        403
    );
}

#[tokio::test]
async fn invalid_input_gets_a_4xx_naming_the_field() {
    let app = TestApp::spawn().await;
    let (account, owner) = account_with_owner(&app, "strict").await;
    let keys = format!("/api/v1/accounts/{account}/keys");
    let cases = [
        (json!({"name": ""}), "name"),
        (json!({"nme": "x"}), "nme"),
        (json!({"name": "x", "limits": {"rpm": -1}}), "limits.rpm"),
        (
            json!({"name": "x", "limits": {"spend_limit_usd": "1.0000000001"}}),
            "limits.spend_limit_usd",
        ),
        (json!({"name": 5}), ""),
    ];
    for (body, field) in cases {
        let (status, err) = as_user(&app, &owner, Method::POST, &keys, Some(&body), true).await;
        assert_eq!(status, 400, "{body} -> {err}");
        assert_eq!(err["error"]["code"], "invalid_request");
        if !field.is_empty() {
            assert_eq!(err["error"]["field"], field, "{err}");
        }
    }
    let (status, err) = as_user(
        &app,
        &owner,
        Method::POST,
        &format!("{keys}/nope/rotate"),
        Some(&json!({"grace_seconds": -5})),
        true,
    )
    .await;
    assert!(status == 400 || status == 404, "{err}");
    let (status, err) = api(
        &app,
        Method::POST,
        "/api/v1/session",
        None,
        Some(&json!({"email": "x@y.z", "password": "wrong password"})),
    )
    .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (status, _) = api(
        &app,
        Method::POST,
        "/api/v1/signup",
        None,
        Some(&json!({"email": "a@b.co", "password": "long enough pw", "account_name": "x"})),
    )
    .await;
    assert_eq!(status, 403, "sign-up is closed by default");
}

#[tokio::test]
async fn open_signup_creates_an_account_owned_by_the_new_user() {
    let app = TestApp::spawn_with(|c| c.accounts.open_signup = true).await;
    let (status, body) = api(&app, Method::POST, "/api/v1/signup", None, Some(&json!({"email": "new@user.example", "password": "long enough pw", "account_name": "newco"}))).await;
    assert_eq!(status, 201, "{body}");
    let account = body["account"]["id"].as_str().unwrap().to_owned();
    let s = login(&app, "new@user.example", "long enough pw").await;
    let (status, view) = as_user(
        &app,
        &s,
        Method::GET,
        &format!("/api/v1/accounts/{account}"),
        None,
        false,
    )
    .await;
    assert_eq!((status, view["your_role"].as_str()), (200, Some("owner")));
}

#[tokio::test]
async fn openapi_document_describes_every_route_and_the_router_serves_each() {
    let app = TestApp::spawn().await;
    let (status, doc) = api(&app, Method::GET, "/api/openapi.json", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["components"]["schemas"]["Error"].is_object());
    // The router is built from ROUTES, so each way round: as many operations documented as
    // the table holds, and each of them served.
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|ops| ops.as_object().unwrap().len())
        .sum();
    assert_eq!(documented, instagen::api::manage::ROUTES.len());
    for route in instagen::api::manage::ROUTES {
        assert!(
            doc["paths"][route.path][route.method].is_object(),
            "{} {} undocumented",
            route.method,
            route.path
        );
        let path = route
            .path
            .replace("{account}", "acct_none")
            .replace("{key_id}", "k")
            .replace("{user_id}", "u")
            .replace("{token_id}", "t");
        let method = Method::from_bytes(route.method.to_uppercase().as_bytes()).unwrap();
        let (status, body) = api(&app, method, &path, Some(ADMIN_TOKEN), Some(&json!({}))).await;
        assert!(
            status != 405 && body["error"]["message"] != "unknown API route",
            "{} {} is not routed",
            route.method,
            route.path
        );
        assert!(
            status < 500,
            "{} {} -> {status} {body}",
            route.method,
            route.path
        );
    }
}
