//! Uploads are processed in memory for the life of the request: audio transcriptions as
//! multipart forms and images as data URLs in chat content reach the provider intact,
//! are metered, and (see `privacy.rs`) leave no trace on disk.

use mock_upstream::{MockUpstream, Script};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::routing::provider;

/// A multipart form: text fields, then a file.
pub fn form(fields: &[(&str, &str)], file: Option<(&str, &[u8])>) -> (String, Vec<u8>) {
    let boundary = "----instagen-test-boundary";
    let mut body = Vec::new();
    for (name, value) in fields {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    if let Some((filename, bytes)) = file {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\nContent-Type: audio/wav\r\n\r\n")
                .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn transcribe(app: &TestApp, content_type: &str, body: Vec<u8>) -> reqwest::Response {
    app.client
        .post(app.url("/v1/audio/transcriptions"))
        .bearer_auth(&app.key)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap()
}

fn audio() -> Vec<u8> {
    // Binary audio-like bytes, including CR LF and dashes that must not confuse the parser.
    (0..4_000u32)
        .map(|i| (i * 7 % 256) as u8)
        .chain(*b"\r\n--\r\n")
        .collect()
}

#[tokio::test]
async fn audio_transcriptions_reach_the_provider_intact_and_are_metered() {
    let app = TestApp::spawn().await;
    let audio = audio();
    app.mock.push(Script::reply("hello from the recording"));
    let (ct, body) = form(
        &[("model", MODEL), ("language", "en"), ("user", "alice")],
        Some(("meeting-alice.wav", &audio)),
    );
    let resp = transcribe(&app, &ct, body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["cache-control"],
        "no-store",
        "never cached anywhere"
    );
    let out: Value = resp.json().await.unwrap();
    assert_eq!(out["text"], "hello from the recording");

    let seen = &app.mock.requests()[0];
    assert_eq!(seen.path, "/v1/audio/transcriptions");
    assert!(
        seen.body
            .windows(audio.len())
            .any(|w| w == audio.as_slice()),
        "the file arrives byte for byte"
    );
    let text = String::from_utf8_lossy(&seen.body);
    assert!(text.contains(&format!("name=\"model\"\r\n\r\n{UPSTREAM_MODEL}\r\n")));
    assert!(
        text.contains("filename=\"meeting-alice.wav\""),
        "a first party gets the form as sent"
    );
    let r = &app.records(1).await[0];
    assert_eq!(&*r.endpoint, "audio.transcriptions");
    assert_eq!((r.status, r.estimated), (200, false));
    assert_eq!(r.output_tokens, 4);
    assert!(r.input_tokens >= 40, "upstream-reported audio tokens");
    assert!(r.cost_nanos > 0);

    // A plain-text transcript passes through with its content type; tokens are estimated.
    app.mock.push(Script::reply("just text"));
    let (ct, body) = form(
        &[("model", MODEL), ("response_format", "text")],
        Some(("a.wav", &audio)),
    );
    let resp = transcribe(&app, &ct, body).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(resp.text().await.unwrap(), "just text");
    let records = app.records(2).await;
    assert!(records.iter().any(|r| r.estimated && r.output_tokens >= 2));
}

#[tokio::test]
async fn malformed_uploads_get_clear_openai_errors_and_third_parties_get_a_minimal_form() {
    let vendor = MockUpstream::start().await.unwrap();
    let base = vendor.base_url();
    let app = TestApp::spawn_with(move |c| {
        c.providers.push(provider("vendor", base, true));
        c.models[0].provider = Some("vendor".into());
    })
    .await;
    // Not a form, no file, no model.
    let resp = app
        .post("/v1/audio/transcriptions", &json!({"model": MODEL}))
        .await;
    let err = openai_error(resp, 400).await;
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("multipart/form-data")
    );
    let (ct, body) = form(&[("model", MODEL)], None);
    let err = openai_error(transcribe(&app, &ct, body).await, 400).await;
    assert_eq!(err["error"]["param"], "file");
    let (ct, body) = form(&[], Some(("a.wav", b"RIFF")));
    let err = openai_error(transcribe(&app, &ct, body).await, 400).await;
    assert_eq!(err["error"]["param"], "model");
    let (ct, body) = form(&[("model", "nope")], Some(("a.wav", b"RIFF")));
    openai_error(transcribe(&app, &ct, body).await, 404).await;
    assert!(vendor.requests().is_empty());

    // A third party: only the allow-listed fields, and no file name that may identify anyone.
    let (ct, body) = form(
        &[
            ("model", MODEL),
            ("language", "de"),
            ("user", "alice@example.com"),
        ],
        Some(("alice-private-call.wav", b"RIFF0000WAVE")),
    );
    assert_eq!(transcribe(&app, &ct, body).await.status(), 200);
    let text = String::from_utf8_lossy(&vendor.requests()[0].body).into_owned();
    assert!(text.contains("name=\"language\"\r\n\r\nde"));
    assert!(text.contains("RIFF0000WAVE"));
    assert!(!text.contains("alice"), "{text}");
    assert!(!text.contains("name=\"user\""));
    // Every authenticated request has its record; the refused ones cost nothing.
    let records = app.records(5).await;
    assert_eq!(records.len(), 5);
    let refused: Vec<_> = records.iter().filter(|r| r.status != 200).collect();
    assert_eq!(refused.len(), 4);
    assert!(
        refused
            .iter()
            .all(|r| r.cost_nanos == 0 && r.output_tokens == 0)
    );
}

#[tokio::test]
async fn image_parts_pass_to_the_provider_as_sent() {
    let app = TestApp::spawn().await;
    let image = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is in this image?"},
        {"type": "image_url", "image_url": {"url": image, "detail": "low"}}]}]});
    assert_eq!(app.chat(&body).await.status(), 200);
    let seen = app.mock.requests()[0].json();
    assert_eq!(seen["messages"][0]["content"][1]["image_url"]["url"], image);
    assert_eq!(app.records(1).await[0].status, 200);
}
