//! Every management credential derives from a membership and dies with it: removing a
//! member or lowering their role revokes their sessions and the tokens they created, a
//! token is never worth more than its creator's current role, and an account always
//! keeps an owner.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

/// An account with a first owner (session) and a second member of `role`, logged in;
/// returns (account, first owner, second member's session, second member's user id).
async fn account_with_two(
    app: &TestApp,
    name: &str,
    role: &str,
) -> (String, Session, Session, String) {
    let (account, email) = create_account_with_owner(app, name).await;
    let owner = login(app, &email, "correct horse battery").await;
    let second = format!("second@{name}.example");
    let user_id = invite_and_accept(
        app,
        &owner,
        &account,
        &second,
        role,
        "another long password",
    )
    .await;
    let session = login(app, &second, "another long password").await;
    (account, owner, session, user_id)
}

async fn create_token(app: &TestApp, s: &Session, account: &str, role: &str) -> (String, String) {
    let (status, body) = as_user(
        app,
        s,
        Method::POST,
        &format!("/api/v1/accounts/{account}/tokens"),
        Some(&json!({"name": format!("{role} token"), "role": role})),
        true,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_str().unwrap().to_owned(),
        body["secret"].as_str().unwrap().to_owned(),
    )
}

#[tokio::test]
async fn removed_owner_loses_tokens_and_sessions() {
    let app = TestApp::spawn().await;
    let (account, owner, second, second_id) = account_with_two(&app, "removal", "owner").await;
    let (token_id, token) = create_token(&app, &second, &account, "owner").await;
    // A token made with that token derives from the same user.
    let (status, made) = api(
        &app,
        Method::POST,
        &format!("/api/v1/accounts/{account}/tokens"),
        Some(&token),
        Some(&json!({"name": "child", "role": "member"})),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    let child = made["secret"].as_str().unwrap().to_owned();
    let keys = format!("/api/v1/accounts/{account}/keys");
    assert_eq!(
        api(&app, Method::GET, &keys, Some(&token), None).await.0,
        200
    );

    // The list says who created each token.
    let (_, list) = as_user(
        &app,
        &owner,
        Method::GET,
        &format!("/api/v1/accounts/{account}/tokens"),
        None,
        false,
    )
    .await;
    let listed = list["data"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|t| t["id"] == token_id.as_str() && t["created_by"] == second_id.as_str()),
        "{list}"
    );
    assert!(
        listed.iter().all(|t| t["created_by"] == second_id.as_str()),
        "{list}"
    );

    let (status, _) = as_user(
        &app,
        &owner,
        Method::DELETE,
        &format!("/api/v1/accounts/{account}/members/{second_id}"),
        None,
        true,
    )
    .await;
    assert_eq!(status, 204);

    for t in [&token, &child] {
        assert_eq!(api(&app, Method::GET, &keys, Some(t), None).await.0, 401);
        // Nor can they add themselves back.
        let back = json!({"email": "second@removal.example", "role": "owner"});
        let members = format!("/api/v1/accounts/{account}/members");
        assert_eq!(
            api(&app, Method::POST, &members, Some(t), Some(&back))
                .await
                .0,
            401
        );
    }
    let (status, _) = as_user(&app, &second, Method::GET, &keys, None, false).await;
    assert_eq!(status, 401, "the removed member's session is revoked");
    let (_, list) = as_user(
        &app,
        &owner,
        Method::GET,
        &format!("/api/v1/accounts/{account}/tokens"),
        None,
        false,
    )
    .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0, "{list}");
}

#[tokio::test]
async fn a_demoted_owners_tokens_never_exceed_their_new_role() {
    let app = TestApp::spawn().await;
    let (account, owner, second, second_id) = account_with_two(&app, "demotion", "owner").await;
    let (_, owner_token) = create_token(&app, &second, &account, "owner").await;
    let (_, viewer_token) = create_token(&app, &second, &account, "viewer").await;
    let (status, body) = as_user(
        &app,
        &owner,
        Method::POST,
        &format!("/api/v1/accounts/{account}/members"),
        Some(&json!({"email": "second@demotion.example", "role": "viewer"})),
        true,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let keys = format!("/api/v1/accounts/{account}/keys");
    assert_eq!(
        api(&app, Method::GET, &keys, Some(&owner_token), None)
            .await
            .0,
        401,
        "revoked"
    );
    assert_eq!(
        api(&app, Method::GET, &keys, Some(&viewer_token), None)
            .await
            .0,
        200,
        "within the new role"
    );
    assert_eq!(
        api(
            &app,
            Method::POST,
            &keys,
            Some(&viewer_token),
            Some(&json!({"name": "x"}))
        )
        .await
        .0,
        403
    );
    let _ = second_id;
}

#[tokio::test]
async fn an_account_always_keeps_an_owner() {
    let app = TestApp::spawn().await;
    let (account, email) = create_account_with_owner(&app, "sole").await;
    let owner = login(&app, &email, "correct horse battery").await;
    let members = format!("/api/v1/accounts/{account}/members");
    let (_, list) = as_user(&app, &owner, Method::GET, &members, None, false).await;
    let me = list["data"][0]["user_id"].as_str().unwrap().to_owned();

    let (status, body) = as_user(
        &app,
        &owner,
        Method::DELETE,
        &format!("{members}/{me}"),
        None,
        true,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("last_owner")),
        "{body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("at least one owner")
    );
    let (status, body) = as_user(
        &app,
        &owner,
        Method::POST,
        &members,
        Some(&json!({"email": email, "role": "member"})),
        true,
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("last_owner")),
        "{body}"
    );

    // With a second owner, the first may step down.
    invite_and_accept(
        &app,
        &owner,
        &account,
        "next@sole.example",
        "owner",
        "another long password",
    )
    .await;
    let (status, _) = as_user(
        &app,
        &owner,
        Method::DELETE,
        &format!("{members}/{me}"),
        None,
        true,
    )
    .await;
    assert_eq!(status, 204);
}

async fn try_login(app: &TestApp, email: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/session"))
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn failed_logins_are_throttled_and_seen_by_operators_and_owners() {
    let app = TestApp::spawn_with(|c| c.limits.auth_failures_per_minute = 5).await;
    let (account, email) = create_account_with_owner(&app, "guarded").await;
    for _ in 0..5 {
        assert_eq!(try_login(&app, &email, "wrong guess").await.status(), 401);
    }
    // Blocked now, even with the right password.
    let resp = try_login(&app, &email, "correct horse battery").await;
    assert_eq!(resp.status(), 429);
    assert!(resp.headers().contains_key("retry-after"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_attempts");

    // Operators see the failures by truncated address, the account's owners by account.
    let mut seen = (false, false);
    for _ in 0..50 {
        let (_, all) = api(
            &app,
            Method::GET,
            "/api/v1/security-events",
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
        let (_, mine) = api(
            &app,
            Method::GET,
            &format!("/api/v1/accounts/{account}/security-events"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
        let has = |v: &Value, ip: bool| {
            v["data"].as_array().unwrap().iter().any(|e| {
                e["kind"] == "login_failed"
                    && e["count"].as_i64() >= Some(5)
                    && (e["client_ip"] == "127.0.0.0/24") == ip
            })
        };
        seen = (has(&all, true), has(&mine, false));
        if seen == (true, true) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen, (true, true));
    let (_, all) = api(
        &app,
        Method::GET,
        "/api/v1/security-events",
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert!(
        !all.to_string().contains("guarded.example"),
        "no email in events: {all}"
    );
}

#[tokio::test]
async fn another_sites_pages_cannot_log_in_or_write() {
    let app = TestApp::spawn().await;
    let (account, email) = create_account_with_owner(&app, "origin").await;
    // Login CSRF: a form post from elsewhere, as text/plain.
    let resp = app
        .client
        .post(app.url("/api/v1/session"))
        .header("origin", "https://evil.example")
        .header("content-type", "text/plain")
        .body(json!({"email": email, "password": "correct horse battery"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "cross_origin");
    let owner = login(&app, &email, "correct horse battery").await;
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/accounts/{account}/keys")))
        .header("cookie", &owner.cookie)
        .header("x-csrf-token", &owner.csrf)
        .header("sec-fetch-site", "cross-site")
        .json(&json!({"name": "forged"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // The console's own pages (same origin) work.
    let resp = app
        .client
        .post(app.url(&format!("/api/v1/accounts/{account}/keys")))
        .header("cookie", &owner.cookie)
        .header("x-csrf-token", &owner.csrf)
        .header("origin", format!("http://{}", app.addr))
        .header("sec-fetch-site", "same-origin")
        .json(&json!({"name": "mine"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn invitations_need_consent_and_never_reveal_whether_an_email_has_a_login() {
    let app = TestApp::spawn().await;
    let (account, email) = create_account_with_owner(&app, "inviter").await;
    let owner = login(&app, &email, "correct horse battery").await;
    // Someone with a login, in another tenant.
    let (_, bob_email) = create_account_with_owner(&app, "elsewhere").await;
    let members = format!("/api/v1/accounts/{account}/members");
    let invite = |who: &str| json!({"email": who, "role": "member"});
    let (status, known) = as_user(
        &app,
        &owner,
        Method::POST,
        &members,
        Some(&invite(&bob_email)),
        true,
    )
    .await;
    assert_eq!(status, 202, "{known}");
    let (status, unknown) = as_user(
        &app,
        &owner,
        Method::POST,
        &members,
        Some(&invite("nobody@nowhere.example")),
        true,
    )
    .await;
    assert_eq!(status, 202, "{unknown}");
    let shape = |v: &Value| {
        let mut keys: Vec<String> = v["invitation"]
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(
        shape(&known),
        shape(&unknown),
        "the same answer whether a login exists"
    );
    assert!(!known.to_string().contains("user_id"), "{known}");
    // An owner cannot set anyone's password.
    let (status, body) = as_user(
        &app,
        &owner,
        Method::POST,
        &members,
        Some(&json!({"email": "x@y.example", "role": "member", "password": "a long password"})),
        true,
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("password")),
        "{body}"
    );

    // Bob is not a member until he accepts, and his token path is refused: he signs in.
    let bob = login(&app, &bob_email, "correct horse battery").await;
    let keys = format!("/api/v1/accounts/{account}/keys");
    assert_eq!(
        as_user(&app, &bob, Method::GET, &keys, None, false).await.0,
        404
    );
    let resp = app
        .client
        .post(app.url("/api/v1/invitations/accept"))
        .json(&json!({"token": known["token"], "password": "whatever long enough"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    let (status, mine) = as_user(
        &app,
        &bob,
        Method::GET,
        "/api/v1/me/invitations",
        None,
        false,
    )
    .await;
    assert_eq!(status, 200);
    let id = mine["data"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(mine["data"][0]["account_name"], "inviter");
    let (status, m) = as_user(
        &app,
        &bob,
        Method::POST,
        &format!("/api/v1/me/invitations/{id}/accept"),
        None,
        true,
    )
    .await;
    assert_eq!((status, m["role"].as_str()), (201, Some("member")), "{m}");
    assert_eq!(
        as_user(&app, &bob, Method::GET, &keys, None, false).await.0,
        200
    );

    // The other invitation is pending; revoked, its token no longer works.
    let (_, pending) = as_user(
        &app,
        &owner,
        Method::GET,
        &format!("/api/v1/accounts/{account}/invitations"),
        None,
        false,
    )
    .await;
    let pending = pending["data"].as_array().unwrap().clone();
    assert_eq!(pending.len(), 1);
    let other = pending[0]["id"].as_str().unwrap();
    let (status, _) = as_user(
        &app,
        &owner,
        Method::DELETE,
        &format!("/api/v1/accounts/{account}/invitations/{other}"),
        None,
        true,
    )
    .await;
    assert_eq!(status, 204);
    let resp = app
        .client
        .post(app.url("/api/v1/invitations/accept"))
        .json(&json!({"token": unknown["token"], "password": "a long password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn two_owners_demoting_each_other_at_once_leave_one_owner() {
    let app = TestApp::spawn().await;
    for round in 0..5 {
        let name = format!("race{round}");
        let (account, first, second, _) = account_with_two(&app, &name, "owner").await;
        let members = format!("/api/v1/accounts/{account}/members");
        let demote_second = json!({"email": format!("second@{name}.example"), "role": "member"});
        let demote_first = json!({"email": format!("owner@{name}.example"), "role": "member"});
        let (a, b) = tokio::join!(
            as_user(
                &app,
                &first,
                Method::POST,
                &members,
                Some(&demote_second),
                true
            ),
            as_user(
                &app,
                &second,
                Method::POST,
                &members,
                Some(&demote_first),
                true
            ),
        );
        assert!(a.0 == 201 || b.0 == 201, "{a:?} {b:?}");
        let (_, list) = api(&app, Method::GET, &members, Some(ADMIN_TOKEN), None).await;
        let owners = list["data"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["role"] == "owner")
            .count();
        assert_eq!(owners, 1, "round {round}: {list}");
    }
}
