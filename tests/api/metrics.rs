//! Prometheus `/metrics`: requests, tokens, cost, latency and TTFT by model, HTTP
//! responses, limiter refusals, route health and the usage pipeline — for operators only
//! on the main listener, or open on a separate internal listener. Labels never carry key
//! or account ids, addresses or content.

use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

async fn scrape(app: &TestApp, url: &str, bearer: Option<&str>) -> (u16, String) {
    let mut req = app.client.get(url);
    if let Some(b) = bearer {
        req = req.bearer_auth(b);
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn operators_scrape_bounded_metrics_of_requests_tokens_cost_and_routes() {
    let app = TestApp::spawn().await;
    let secret = "CANARYMETRICS0123";
    assert_eq!(app.chat(&chat_body(secret)).await.status(), 200);
    let mut stream = chat_body("s");
    stream["stream"] = json!(true);
    let _ = app.chat(&stream).await.text().await.unwrap();
    let _ = app
        .post(
            "/v1/chat/completions",
            &json!({"model": "nope", "messages": []}),
        )
        .await;
    app.records(3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let url = app.url("/metrics");
    assert_eq!(scrape(&app, &url, None).await.0, 401);
    assert_eq!(
        scrape(&app, &url, Some(&app.key)).await.0,
        401,
        "an access key is not an operator"
    );
    let (status, text) = scrape(&app, &url, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200);
    for line in [
        format!(
            "instagen_requests_total{{model=\"{MODEL}\",endpoint=\"chat.completions\",status=\"200\"}} 2"
        ),
        "instagen_requests_total{model=\"none\",endpoint=\"chat.completions\",status=\"404\"} 1"
            .to_owned(),
        format!("instagen_route_healthy{{model=\"{MODEL}\",provider=\"mock\"}} 1"),
        "instagen_http_responses_total{route=\"/v1/chat/completions\",status=\"404\"} 1".to_owned(),
        "instagen_limiter_rejections_total{reason=\"key_rpm_limit\"} 0".to_owned(),
    ] {
        assert!(text.contains(&line), "missing `{line}` in\n{text}");
    }
    assert!(text.contains(&format!(
        "instagen_time_to_first_token_seconds_count{{model=\"{MODEL}\"}} 1"
    )));
    assert!(text.contains(&format!(
        "instagen_tokens_total{{model=\"{MODEL}\",kind=\"output\"}}"
    )));
    assert!(text.contains(&format!(
        "instagen_cost_usd_total{{model=\"{MODEL}\"}} 0.0000"
    )));
    assert!(text.contains("instagen_usage_queue_depth 0"));
    for private in [
        app.key_id.as_str(),
        app.account_id.as_str(),
        "127.0.0.1",
        secret,
    ] {
        assert!(!text.contains(private), "{private} leaked into metrics");
    }
}

#[tokio::test]
async fn a_separate_metrics_listener_serves_them_without_credentials() {
    let port = free_port();
    let app = TestApp::spawn_with(move |c| {
        c.server.metrics_listen = Some(format!("127.0.0.1:{port}").parse().unwrap());
    })
    .await;
    assert_eq!(app.chat(&chat_body("x")).await.status(), 200);
    app.records(1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, text) = scrape(&app, &format!("http://127.0.0.1:{port}/metrics"), None).await;
    assert_eq!(status, 200);
    assert!(text.contains("# TYPE instagen_requests_total counter"));
    assert!(text.contains("status=\"200\"} 1"));
    // Not on the public listener then.
    assert_eq!(
        scrape(&app, &app.url("/metrics"), Some(ADMIN_TOKEN))
            .await
            .0,
        404
    );
}
