//! Limits and abuse protection on one instance: per key and per account requests and
//! tokens per minute, concurrent requests, in-flight requests per client IP, failed
//! authentications per IP, and JSON depth — each refusal a 429 (or 400) with OpenAI's
//! shape and `x-ratelimit-*` headers.

use std::time::Duration;

use mock_upstream::Script;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::*;

const IP_HEADER: &str = "x-test-client-ip";

async fn spawn() -> TestApp {
    TestApp::spawn_with(|c| {
        c.limits.client_ip_header = Some(IP_HEADER.into());
        c.limits.auth_failures_per_minute = 3;
        c.limits.max_in_flight_per_ip = 2;
    })
    .await
}

async fn key_with(app: &TestApp, limits: Value) -> String {
    let (status, body) = api(
        app,
        Method::POST,
        &format!("/api/v1/accounts/{}/keys", app.account_id),
        Some(ADMIN_TOKEN),
        Some(&json!({"name": "limited", "limits": limits})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let secret = body["secret"].as_str().unwrap().to_owned();
    until_key_table_shows(app, &secret, |status, _| status == 200).await;
    secret
}

async fn chat_from(app: &TestApp, key: &str, ip: &str, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(key)
        .header(IP_HEADER, ip)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn key_requests_per_minute_are_enforced_with_openai_headers() {
    let app = spawn().await;
    let key = key_with(&app, json!({"rpm": 3})).await;
    for remaining in ["2", "1", "0"] {
        let resp = chat_from(&app, &key, "192.0.2.10", &chat_body("hi")).await;
        assert_eq!(resp.status(), 200);
        assert_eq!(
            header(&resp, "x-ratelimit-limit-requests").as_deref(),
            Some("3")
        );
        assert_eq!(
            header(&resp, "x-ratelimit-remaining-requests").as_deref(),
            Some(remaining)
        );
        assert!(
            header(&resp, "x-ratelimit-reset-requests")
                .unwrap()
                .ends_with('s')
        );
    }
    let resp = chat_from(&app, &key, "192.0.2.10", &chat_body("hi")).await;
    let retry: u64 = header(&resp, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(
        header(&resp, "x-ratelimit-remaining-requests").as_deref(),
        Some("0")
    );
    let err = openai_error(resp, 429).await;
    assert_eq!(err["error"]["code"], "rate_limit_exceeded");
    assert_eq!(err["error"]["type"], "requests");
    assert_eq!(
        app.mock.requests().len(),
        3,
        "the refused request never went upstream"
    );
    // The refusal is recorded (free), and an unlimited key is untouched and header-free.
    let records = app.records(4).await;
    assert_eq!(records.iter().filter(|r| r.status == 429).count(), 1);
    let resp = app.chat(&chat_body("hi")).await;
    assert_eq!(resp.status(), 200);
    assert!(header(&resp, "x-ratelimit-limit-requests").is_none());
}

#[tokio::test]
async fn tokens_per_minute_reserve_an_estimate_and_settle_to_actual_usage() {
    let app = spawn().await;
    let key = key_with(&app, json!({"tpm": 400})).await;
    // ~1 KB of prompt: about 260 tokens reserved, but the mock reports ~205 used.
    let big = "word ".repeat(200);
    let resp = chat_from(&app, &key, "192.0.2.11", &chat_body(&big)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        header(&resp, "x-ratelimit-limit-tokens").as_deref(),
        Some("400")
    );
    let left: u64 = header(&resp, "x-ratelimit-remaining-tokens")
        .unwrap()
        .parse()
        .unwrap();
    assert!(left < 150, "the estimate was reserved: {left} left");
    // The second big request does not fit the estimate: refused with the tokens triple.
    let resp = chat_from(&app, &key, "192.0.2.11", &chat_body(&big)).await;
    assert!(header(&resp, "x-ratelimit-reset-tokens").is_some());
    openai_error(resp, 429).await;
    // Small ones still fit, because the first was settled to its actual usage.
    let resp = chat_from(&app, &key, "192.0.2.11", &chat_body("hi")).await;
    assert_eq!(resp.status(), 200);
    let after: u64 = header(&resp, "x-ratelimit-remaining-tokens")
        .unwrap()
        .parse()
        .unwrap();
    let records = app.records(3).await;
    let first = records
        .iter()
        .find(|r| r.status == 200 && r.input_tokens > 100)
        .unwrap();
    let small = serde_json::to_vec(&chat_body("hi")).unwrap().len() as u64;
    assert_eq!(
        400 - after,
        first.input_tokens + first.output_tokens + small / 4 + 1,
        "used = first request's actual tokens + the second's estimate"
    );
}

#[tokio::test]
async fn concurrency_and_in_flight_per_ip_are_capped_for_the_life_of_a_stream() {
    let app = spawn().await;
    let key = key_with(&app, json!({"max_concurrent": 1})).await;
    let slow = || Script {
        chunk_delay: Duration::from_millis(150),
        ..Script::reply("a b c d")
    };
    let mut stream = chat_body("hi");
    stream["stream"] = json!(true);
    app.mock.push(slow());
    let first = chat_from(&app, &key, "192.0.2.20", &stream).await;
    assert_eq!(first.status(), 200);
    // While it streams, the key's second request is refused …
    let resp = chat_from(&app, &key, "192.0.2.21", &chat_body("x")).await;
    assert_eq!(
        openai_error(resp, 429).await["error"]["message"],
        "rate limit reached: concurrent requests for this access key"
    );
    // … and after it ends, admitted again.
    let _ = first.text().await.unwrap();
    assert_eq!(
        chat_from(&app, &key, "192.0.2.21", &chat_body("x"))
            .await
            .status(),
        200
    );

    // Two in flight from one address (cap 2): the third is refused, another address is not.
    app.mock.push(slow());
    app.mock.push(slow());
    let a = chat_from(&app, &app.key, "198.51.100.5", &stream).await;
    let b = chat_from(&app, &app.key, "198.51.100.5", &stream).await;
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (200, 200));
    let resp = chat_from(&app, &app.key, "198.51.100.5", &chat_body("x")).await;
    assert_eq!(
        openai_error(resp, 429).await["error"]["message"],
        "too many requests in flight from this address; retry shortly"
    );
    assert_eq!(
        chat_from(&app, &app.key, "198.51.100.6", &chat_body("x"))
            .await
            .status(),
        200
    );
    drop((a, b)); // the clients go away: their leases go with the streams
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        chat_from(&app, &app.key, "198.51.100.5", &chat_body("x"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn account_limits_bind_every_key_of_the_account() {
    let app = spawn().await;
    let second = key_with(&app, json!({})).await;
    let (status, body) = api(
        &app,
        Method::PATCH,
        &format!("/api/v1/accounts/{}", app.account_id),
        Some(ADMIN_TOKEN),
        Some(&json!({"limits": {"rpm": 2}})),
    )
    .await;
    assert_eq!((status, body["rpm"].clone()), (200, json!(2)));
    until_key_table_shows(&app, &app.key, |_, k| {
        k["data"]["limits"]["account_rpm"] == 2
    })
    .await;
    assert_eq!(
        chat_from(&app, &app.key, "192.0.2.30", &chat_body("x"))
            .await
            .status(),
        200
    );
    assert_eq!(
        chat_from(&app, &second, "192.0.2.31", &chat_body("x"))
            .await
            .status(),
        200
    );
    let resp = chat_from(&app, &second, "192.0.2.32", &chat_body("x")).await;
    assert_eq!(
        openai_error(resp, 429).await["error"]["message"],
        "rate limit reached: requests per minute for this account"
    );
}

#[tokio::test]
async fn failed_authentications_block_the_address_not_valid_keys_elsewhere() {
    let app = spawn().await;
    for _ in 0..3 {
        let resp = chat_from(&app, "ig-notakey", "203.0.113.66", &chat_body("x")).await;
        assert_eq!(resp.status(), 401);
    }
    // That address is now refused even with a valid key, with a Retry-After …
    let resp = chat_from(&app, &app.key, "203.0.113.66", &chat_body("x")).await;
    assert!(
        header(&resp, "retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 30
    );
    assert_eq!(
        openai_error(resp, 429).await["error"]["message"],
        "too many failed authentications from this address; retry after the cool-down"
    );
    // … while the same key from another address works.
    assert_eq!(
        chat_from(&app, &app.key, "203.0.113.67", &chat_body("x"))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn deeply_nested_json_is_refused_before_parsing() {
    let app = spawn().await;
    let nested = format!(
        r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"x"}}],"x":{}{}}}"#,
        "[".repeat(100),
        "]".repeat(100)
    );
    let resp = app
        .client
        .post(app.url("/v1/chat/completions"))
        .bearer_auth(&app.key)
        .header("content-type", "application/json")
        .body(nested)
        .send()
        .await
        .unwrap();
    let err = openai_error(resp, 400).await;
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("nested deeper than 64")
    );
    assert!(app.mock.requests().is_empty());
}

#[tokio::test]
async fn slow_clients_that_never_finish_their_headers_are_disconnected() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(|c| c.server.header_read_timeout_ms = 600).await;
    let mut conn = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    conn.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    // Trickle one header byte every 150 ms: a slowloris keeps the socket busy forever.
    let mut buf = [0u8; 256];
    let closed = loop {
        if conn.write_all(b"X").await.is_err() {
            break true;
        }
        match tokio::time::timeout(Duration::from_millis(150), conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => {
                // hyper may answer 408 before closing.
                assert!(String::from_utf8_lossy(&buf[..n]).contains("408"));
            }
            Err(_) => {}
        }
        if started.elapsed() > Duration::from_secs(5) {
            break false;
        }
    };
    assert!(closed, "the connection was still open after 5 s");
    assert!(started.elapsed() < Duration::from_secs(3));
    // Well-behaved clients are unaffected.
    assert_eq!(app.chat(&chat_body("hi")).await.status(), 200);
}
