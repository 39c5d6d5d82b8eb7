//! The console's session after a page reload: `GET /api/v1/session` returns what login
//! did, the CSRF token included (derived from the session, never stored), and that token
//! authorizes cookie writes; bearer callers have no session and get no CSRF token.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn get_session_returns_the_login_csrf_token_and_it_authorizes_writes() {
    let app = TestApp::spawn().await;
    let (account, email) = create_account_with_owner(&app, "reload").await;
    let resp = app
        .client
        .post(app.url("/api/v1/session"))
        .json(&json!({"email": email, "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let cookie = resp.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let first: Value = resp.json().await.unwrap();
    let csrf = first["csrf_token"].as_str().unwrap().to_owned();
    assert_eq!(csrf.len(), 64, "{first}");
    assert_eq!(first["operator"], false);
    assert_eq!(first["privacy_seen_version"], Value::Null);

    // A reloaded page has only the cookie: the session comes back as login returned it.
    let reloaded = Session {
        cookie: cookie.clone(),
        csrf: String::new(),
    };
    let (status, session) =
        as_user(&app, &reloaded, Method::GET, "/api/v1/session", None, false).await;
    assert_eq!(status, 200, "{session}");
    assert_eq!(session["csrf_token"], first["csrf_token"]);
    assert_eq!(session["expires_ms"], first["expires_ms"]);
    assert_eq!(session["user"], first["user"]);
    assert_eq!(session["user"]["email"], email.as_str());
    assert_eq!(session["operator"], false);
    assert_eq!(session["privacy_seen_version"], Value::Null);
    assert_eq!(session["memberships"][0]["account_id"], account.as_str());
    assert_eq!(session["memberships"][0]["role"], "owner");

    // The recovered token authorizes a cookie write; without it the write is refused.
    let reloaded = Session {
        cookie,
        csrf: session["csrf_token"].as_str().unwrap().to_owned(),
    };
    let keys = format!("/api/v1/accounts/{account}/keys");
    let (status, err) = as_user(
        &app,
        &reloaded,
        Method::POST,
        &keys,
        Some(&json!({"name": "no-csrf"})),
        false,
    )
    .await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (403, Some("csrf_failed"))
    );
    let (status, created) = as_user(
        &app,
        &reloaded,
        Method::POST,
        &keys,
        Some(&json!({"name": "after reload"})),
        true,
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert!(created["secret"].as_str().unwrap().starts_with("ig-"));

    // Another login is another session with its own token; neither works for the other.
    let second = login(&app, &email, "correct horse battery").await;
    assert_ne!(second.csrf, reloaded.csrf);
    let crossed = Session {
        cookie: second.cookie.clone(),
        csrf: reloaded.csrf.clone(),
    };
    let (status, _) = as_user(
        &app,
        &crossed,
        Method::POST,
        &keys,
        Some(&json!({"name": "crossed"})),
        true,
    )
    .await;
    assert_eq!(status, 403, "a CSRF token belongs to its own session");

    // After logout the session is gone.
    let (status, _) = as_user(
        &app,
        &reloaded,
        Method::DELETE,
        "/api/v1/session",
        None,
        true,
    )
    .await;
    assert_eq!(status, 204);
    let (status, err) = as_user(&app, &reloaded, Method::GET, "/api/v1/session", None, false).await;
    assert_eq!(
        (status, err["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (status, _) = as_user(&app, &second, Method::GET, "/api/v1/session", None, false).await;
    assert_eq!(status, 200, "the other session lives on");
}

#[tokio::test]
async fn bearer_callers_have_no_session_and_get_no_csrf_token() {
    let app = TestApp::spawn().await;
    let (account, email) = create_account_with_owner(&app, "bearer").await;
    let (status, token) = api(
        &app,
        Method::POST,
        &format!("/api/v1/accounts/{account}/tokens"),
        Some(ADMIN_TOKEN),
        Some(&json!({"name": "ci", "role": "owner"})),
    )
    .await;
    assert_eq!(status, 201, "{token}");
    let token = token["secret"].as_str().unwrap().to_owned();
    for bearer in [ADMIN_TOKEN, token.as_str()] {
        let (status, body) = api(&app, Method::GET, "/api/v1/session", Some(bearer), None).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "session_required");
        assert!(body.get("csrf_token").is_none(), "{body}");
        assert!(!body.to_string().contains("csrf_token"), "{body}");
    }
    // A bearer credential wins over a cookie sent alongside it.
    let s = login(&app, &email, "correct horse battery").await;
    let resp = app
        .client
        .get(app.url("/api/v1/session"))
        .header("cookie", &s.cookie)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // No credential at all: not authenticated.
    let (status, body) = api(&app, Method::GET, "/api/v1/session", None, None).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
}
