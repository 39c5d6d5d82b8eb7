//! What a careless or hostile client sends gets a clear, bounded answer in the shape of
//! the API it called: stalled bodies, oversized heads and names, impossible dates — and
//! the files the server keeps are private to its user.

use std::time::Duration;

use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// Sends a request head promising a body, a few bytes of it, then nothing; returns what
/// the server answered and whether it closed the connection afterwards.
async fn stall_body(app: &TestApp, path: &str, auth: &str) -> (String, bool) {
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {auth}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"mod"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
    let closed = read.is_ok();
    (String::from_utf8_lossy(&answer).into_owned(), closed)
}

#[tokio::test]
async fn stalled_bodies_get_408_and_the_connection_closes() {
    let app = TestApp::spawn_with(|c| c.server.body_timeout_ms = 300).await;
    let (answer, closed) = stall_body(&app, "/v1/chat/completions", &app.key.clone()).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains("\"request_timeout\""),
        "OpenAI-shaped: {answer}"
    );
    assert!(closed, "the connection is closed after a stalled body");

    let path = format!("/api/v1/accounts/{}/keys", app.account_id);
    let (answer, closed) = stall_body(&app, &path, ADMIN_TOKEN).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"body_timeout\""), "our JSON: {answer}");
    assert!(closed);
    // The server still answers everyone else.
    assert_eq!(app.chat(&chat_body("hi")).await.status(), 200);
}

#[tokio::test]
async fn oversized_heads_and_names_get_bounded_errors_in_the_apis_shape() {
    let app = TestApp::spawn_with(|c| c.server.max_header_bytes = 8 * 1024).await;
    let big = "x".repeat(10 * 1024);
    let resp = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&app.key)
        .header("x-padding", &big)
        .json(&chat_body("hi"))
        .send()
        .await
        .unwrap();
    let body = openai_error(resp, 431).await;
    assert_eq!(body["error"]["code"], "request_header_fields_too_large");
    // The Messages API's clients read Anthropic's shape, even for a head refused before
    // any route ran.
    let resp = app
        .client
        .post(app.url("/v1/messages"))
        .header("x-api-key", &app.key)
        .header("anthropic-version", "2023-06-01")
        .header("x-padding", &big)
        .json(&serde_json::json!({"model": "m", "max_tokens": 8, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error", "Anthropic-shaped: {body}");
    assert!(body["error"]["type"].is_string(), "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    let resp = app
        .client
        .get(app.url("/api/v1/accounts"))
        .bearer_auth(ADMIN_TOKEN)
        .header("x-padding", &big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "headers_too_large");

    // A megabyte of model name is not echoed back.
    let model = "m".repeat(1 << 20);
    let resp = app
        .chat(&serde_json::json!({"model": model, "messages": [{"role": "user", "content": "x"}]}))
        .await;
    let body = openai_error(resp, 404).await;
    assert!(
        body["error"]["message"].as_str().unwrap().len() < 200,
        "{body}"
    );

    // Management bodies over the limit get our JSON, not plain text.
    let resp = app
        .client
        .post(app.url("/api/v1/accounts"))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body(vec![b' '; 3 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "body_too_large");
}

#[tokio::test]
async fn impossible_dates_are_400s_naming_the_field_never_a_panic() {
    let app = TestApp::spawn().await;
    let base = format!("/api/v1/accounts/{}", app.account_id);
    for query in [
        "usage?from=2026-01-01T00:00:00%2B12%C3%A90",
        "usage?to=2026-02-31",
        "usage/export?from=2026-01-01T00:00:00%2B99:99",
        "usage/summary?from=%C3%A9%C3%A9%C3%A9%C3%A9%C3%A9",
    ] {
        let (status, body) = api(
            &app,
            Method::GET,
            &format!("{base}/{query}"),
            Some(ADMIN_TOKEN),
            None,
        )
        .await;
        assert_eq!(status, 400, "{query}: {body}");
        let field = body["error"]["field"].as_str().unwrap_or_default();
        assert!(field == "from" || field == "to", "{query}: {body}");
    }
    assert_eq!(app.chat(&chat_body("still up")).await.status(), 200);

    // With no records yet in range, totals are zeros, the cost included.
    let (status, body) = api(
        &app,
        Method::GET,
        &format!("{base}/usage?from=2000-01-01&to=2000-01-02"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["totals"]["cost_usd"], "0.000000000", "{body}");
}

#[cfg(unix)]
#[tokio::test]
async fn the_data_dir_and_database_are_private_to_the_server() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::spawn().await;
    assert_eq!(app.chat(&chat_body("hi")).await.status(), 200);
    app.records(1).await;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = app.data_dir();
    assert_eq!(mode(&dir), 0o700);
    for entry in walk(&dir) {
        let m = mode(&entry);
        if entry.is_dir() {
            assert_eq!(m, 0o700, "{}", entry.display());
        } else {
            assert_eq!(m & 0o077, 0, "{} is {m:o}", entry.display());
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

#[tokio::test]
async fn lists_are_paged_and_keys_per_account_are_capped() {
    let app = TestApp::spawn_with(|c| c.accounts.max_keys_per_account = 5).await;
    let keys = format!("/api/v1/accounts/{}/keys", app.account_id);
    // The test key is the first; four more fill the cap.
    let mut made = Vec::new();
    for i in 0..4 {
        let (status, body) = api(
            &app,
            Method::POST,
            &keys,
            Some(ADMIN_TOKEN),
            Some(&serde_json::json!({"name": format!("k{i}")})),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        made.push(body["key"]["id"].as_str().unwrap().to_owned());
    }
    let (status, body) = api(
        &app,
        Method::POST,
        &keys,
        Some(ADMIN_TOKEN),
        Some(&serde_json::json!({"name": "one too many"})),
    )
    .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (409, Some("key_limit")),
        "{body}"
    );

    // Pages of two: every key once, in creation order, then no cursor.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("{keys}?limit=2&cursor={c}"),
            None => format!("{keys}?limit=2"),
        };
        let (status, page) = api(&app, Method::GET, &path, Some(ADMIN_TOKEN), None).await;
        assert_eq!(status, 200, "{page}");
        let data = page["data"].as_array().unwrap();
        assert!(data.len() <= 2);
        seen.extend(data.iter().map(|k| k["id"].as_str().unwrap().to_owned()));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(seen[0], app.key_id);
    assert_eq!(&seen[1..], &made[..]);
    let (status, body) = api(
        &app,
        Method::GET,
        &format!("{keys}?limit=0"),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(
        (status, body["error"]["field"].as_str()),
        (400, Some("limit")),
        "{body}"
    );
    for list in ["members", "tokens", "audit", "security-events"] {
        let path = format!("/api/v1/accounts/{}/{list}?limit=1", app.account_id);
        let (status, body) = api(&app, Method::GET, &path, Some(ADMIN_TOKEN), None).await;
        assert_eq!(status, 200, "{list}: {body}");
        assert!(
            body["data"].as_array().unwrap().len() <= 1,
            "{list}: {body}"
        );
        assert!(body.get("next_cursor").is_some(), "{list}: {body}");
    }

    // A deleted key frees its place.
    let (status, _) = api(
        &app,
        Method::DELETE,
        &format!("{keys}/{}", made[0]),
        Some(ADMIN_TOKEN),
        None,
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = api(
        &app,
        Method::POST,
        &keys,
        Some(ADMIN_TOKEN),
        Some(&serde_json::json!({"name": "again"})),
    )
    .await;
    assert_eq!(status, 201);
}
