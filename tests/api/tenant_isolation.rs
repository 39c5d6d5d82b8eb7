//! Object-level authorization: credentials of account B get 404 for every object of
//! account A, on every route of the management API and every method.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_foreign_account_gets_404_for_every_object_on_every_route() {
    let app = TestApp::spawn().await;
    let admin = Some(ADMIN_TOKEN);
    let mk = |name: &str| json!({"name": name, "owner_email": format!("owner@{name}.example"), "owner_password": "a long password"});
    let (_, a) = api(
        &app,
        Method::POST,
        "/api/v1/accounts",
        admin,
        Some(&mk("alpha")),
    )
    .await;
    let (_, b) = api(
        &app,
        Method::POST,
        "/api/v1/accounts",
        admin,
        Some(&mk("beta")),
    )
    .await;
    let (a, b) = (
        a["id"].as_str().unwrap().to_owned(),
        b["id"].as_str().unwrap().to_owned(),
    );

    // Objects in A: a key, a token, a member.
    let (_, token_a) = api(
        &app,
        Method::POST,
        &format!("/api/v1/accounts/{a}/tokens"),
        admin,
        Some(&json!({"name": "ta", "role": "owner"})),
    )
    .await;
    let (_, key_a) = api(
        &app,
        Method::POST,
        &format!("/api/v1/accounts/{a}/keys"),
        admin,
        Some(&json!({"name": "ka"})),
    )
    .await;
    let (_, members) = api(
        &app,
        Method::GET,
        &format!("/api/v1/accounts/{a}/members"),
        admin,
        None,
    )
    .await;
    let key_id = key_a["key"]["id"].as_str().unwrap().to_owned();
    let token_id = token_a["id"].as_str().unwrap().to_owned();
    let user_id = members["data"][0]["user_id"].as_str().unwrap().to_owned();

    // B's owner token.
    let (_, token_b) = api(
        &app,
        Method::POST,
        &format!("/api/v1/accounts/{b}/tokens"),
        admin,
        Some(&json!({"name": "tb", "role": "owner"})),
    )
    .await;
    let foreign = token_b["secret"].as_str().unwrap().to_owned();

    let mut walked = 0;
    for route in instagen::api::manage::ROUTES {
        let method = Method::from_bytes(route.method.to_uppercase().as_bytes()).unwrap();
        if !route.path.contains("{account}") {
            if route.access == "operator" {
                let (status, _) =
                    api(&app, method, route.path, Some(&foreign), Some(&json!({}))).await;
                assert_eq!(
                    status, 403,
                    "{} {} must be operator-only",
                    route.method, route.path
                );
            }
            continue;
        }
        let path = route
            .path
            .replace("{account}", &a)
            .replace("{key_id}", &key_id)
            .replace("{token_id}", &token_id)
            .replace("{user_id}", &user_id);
        let body: Value = match route.request {
            Some("KeyCreate") => json!({"name": "intruder"}),
            Some("KeyPatch") => json!({"name": "intruder"}),
            Some("MemberAdd") => {
                json!({"email": "x@intruder.example", "role": "owner", "password": "a long password"})
            }
            Some("TokenCreate") => json!({"name": "intruder", "role": "owner"}),
            Some("Rotate") => json!({"grace_seconds": 0}),
            _ => json!({}),
        };
        let (status, err) = api(&app, method, &path, Some(&foreign), Some(&body)).await;
        let expected = if route.access == "operator" { 403 } else { 404 };
        assert_eq!(
            status, expected,
            "{} {} with a foreign credential: {err}",
            route.method, route.path
        );
        walked += 1;
    }
    assert!(walked >= 20, "walked {walked} account routes");

    // Nothing of A changed.
    let (status, key) = api(
        &app,
        Method::GET,
        &format!("/api/v1/accounts/{a}/keys/{key_id}"),
        admin,
        None,
    )
    .await;
    assert_eq!(
        (status, key["name"].as_str(), key["status"].as_str()),
        (200, Some("ka"), Some("active"))
    );
    let secret = key_a["secret"].as_str().unwrap();
    assert_eq!(chat_status(&app, secret, 200).await.0, 200);
    let (_, members) = api(
        &app,
        Method::GET,
        &format!("/api/v1/accounts/{a}/members"),
        admin,
        None,
    )
    .await;
    assert_eq!(members["data"].as_array().unwrap().len(), 1);
}
