//! The privacy contract, end to end: unique canary strings go through every path
//! (success, stream, client abort, upstream errors that echo the prompt, invalid
//! bodies, unknown models and routes, uploaded audio and images); then every file the
//! server wrote — database, WAL, journal, logs at debug level, stdout and stderr, and
//! its TMPDIR — is searched: zero hits. On PostgreSQL (`INSTAGEN_TEST_POSTGRES`) the
//! database is not a file in the data dir, so every value it holds is searched instead.

use std::time::Duration;

use futures_util::StreamExt;
use mock_upstream::Script;
use serde_json::json;

use crate::helpers::*;
use crate::keys::{contains, walk};

fn canary(tag: &str) -> String {
    format!(
        "CANARY{tag}{}",
        instagen::keys::random_id(16).unwrap().to_uppercase()
    )
}

#[tokio::test]
async fn no_content_reaches_any_file_log_or_record_on_any_path() {
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_process_config(dir.path(), &mock.base_url(), "debug");
    let (_account, key, store) = provision(&config).await;
    let log = dir.path().join("server.log");
    let server = ServerProcess::start(&config, &log).await;
    let client = reqwest::Client::new();
    let url = |p: &str| format!("{}{}", server.base, p);
    let post = |path: &str, body: String| {
        client
            .post(url(path))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
    };
    let mut canaries = Vec::new();

    // 1. Non-stream success: canary in the prompt and in the model's output.
    let (input, output) = (canary("IN"), canary("OUT"));
    mock.push(Script::reply(&format!("Sure: {output}")));
    let resp = post("/v1/chat/completions", chat_body(&input).to_string())
        .send()
        .await
        .unwrap();
    assert!(resp.text().await.unwrap().contains(&output));
    canaries.extend([input, output]);

    // 2. Stream success, client asks for usage; and a stream from an engine without usage.
    for omit_usage in [false, true] {
        let (input, output) = (canary("SIN"), canary("SOUT"));
        mock.push(Script {
            omit_usage,
            ..Script::reply(&format!("Streamed {output} here"))
        });
        let mut body = chat_body(&input);
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
        let text = post("/v1/chat/completions", body.to_string())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains(&output));
        canaries.extend([input, output]);
    }

    // 3. Client aborts mid-stream.
    let (input, output) = (canary("AIN"), canary("AOUT"));
    mock.push(Script {
        chunk_delay: Duration::from_millis(150),
        ..Script::reply(&format!("{output} a b c d e f g h"))
    });
    let mut body = chat_body(&input);
    body["stream"] = json!(true);
    let resp = post("/v1/chat/completions", body.to_string())
        .send()
        .await
        .unwrap();
    let mut s = resp.bytes_stream();
    let _ = s.next().await;
    let _ = s.next().await;
    drop(s);
    canaries.extend([input, output]);

    // 4. Upstream 500 whose body echoes the prompt, and an upstream 400 that does too.
    for status in [500, 400] {
        let input = canary("ERR");
        mock.push(Script {
            echo_body_in_error: true,
            ..Script::status(status)
        });
        let resp = post("/v1/chat/completions", chat_body(&input).to_string())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error() || resp.status().is_server_error());
        canaries.push(input);
    }

    // 5. A stream cut halfway.
    let input = canary("CUT");
    mock.push(Script {
        cut_after_chunks: Some(1),
        ..Default::default()
    });
    let mut body = chat_body(&input);
    body["stream"] = json!(true);
    let _ = post("/v1/chat/completions", body.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await;
    canaries.push(input);

    // 6. Invalid bodies, an unknown model, a canary in a route and in a header.
    let bad_json = canary("BADJSON");
    let _ = post(
        "/v1/chat/completions",
        format!("{{\"model\": \"{bad_json}\", broken"),
    )
    .send()
    .await
    .unwrap();
    let bad_type = canary("BADTYPE");
    let _ = post(
        "/v1/chat/completions",
        json!({"model": MODEL, "messages": bad_type}).to_string(),
    )
    .send()
    .await
    .unwrap();
    let bad_model = canary("MODEL");
    let resp = post(
        "/v1/chat/completions",
        json!({"model": bad_model, "messages": []}).to_string(),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 404);
    let path = canary("PATH");
    let _ = client
        .get(url(&format!("/v1/{path}")))
        .send()
        .await
        .unwrap();
    let header = canary("HEADER");
    let _ = client
        .post(url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("x-debug-note", &header)
        .json(&chat_body("plain"))
        .send()
        .await
        .unwrap();
    canaries.extend([bad_json, bad_type, bad_model, path, header]);

    // 7. Completions and embeddings.
    let (prompt, emb) = (canary("PROMPT"), canary("EMB"));
    let _ = post(
        "/v1/completions",
        json!({"model": MODEL, "prompt": prompt}).to_string(),
    )
    .send()
    .await
    .unwrap();
    let _ = post(
        "/v1/embeddings",
        json!({"model": MODEL, "input": [emb]}).to_string(),
    )
    .send()
    .await
    .unwrap();
    canaries.extend([prompt, emb]);

    // 8. Uploads: an audio file (a canary inside binary bytes, in the file name and in a
    //    form field), a failing transcription that echoes its body, and an image data URL.
    for status in [200, 500] {
        let (audio, name, prompt) = (canary("AUDIO"), canary("FILENAME"), canary("FPROMPT"));
        let mut bytes: Vec<u8> = (0..2_000u32).map(|i| (i % 251) as u8).collect();
        bytes.extend_from_slice(audio.as_bytes());
        mock.push(Script {
            status,
            echo_body_in_error: true,
            ..Script::reply("transcribed")
        });
        let (ct, body) = crate::uploads::form(
            &[("model", MODEL), ("prompt", &prompt)],
            Some((&format!("{name}.wav"), &bytes)),
        );
        let resp = client
            .post(url("/v1/audio/transcriptions"))
            .bearer_auth(&key)
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            resp.status().as_u16(),
            if status == 200 { 200 } else { 502 }
        );
        canaries.extend([audio, name, prompt]);
    }
    let image = canary("IMAGE");
    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{image}")}}]}]});
    let resp = post("/v1/chat/completions", body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    canaries.push(image);

    // 9. The Responses and Messages surfaces: instructions, tool arguments and results,
    // thinking, images, streamed and cut answers, and refused bodies.
    let c: Vec<String> = (0..12).map(|i| canary(&format!("WIRE{i}"))).collect();
    mock.push(Script {
        tool_call: Some(("lookup".to_owned(), format!("{{\"q\":\"{}\"}}", c[0]))),
        ..Script::reply(&format!("Calling {}", c[1]))
    });
    let responses = json!({"model": MODEL, "instructions": c[2], "input": [
        {"role": "user", "content": [{"type": "input_text", "text": c[3]},
            {"type": "input_image", "image_url": format!("data:image/png;base64,{}", c[4])}]},
        {"type": "function_call", "call_id": "call_1", "name": "lookup", "arguments": c[5]},
        {"type": "function_call_output", "call_id": "call_1", "output": c[6]}],
        "tools": [{"type": "function", "name": "lookup", "parameters": {"type": "object"}}]});
    let resp = post("/v1/responses", responses.to_string())
        .send()
        .await
        .unwrap();
    assert!(resp.text().await.unwrap().contains(&c[1]));
    mock.push(Script {
        cut_after_chunks: Some(2),
        ..Script::reply(&format!("Partial {} a b c d", c[7]))
    });
    let mut streamed = responses.clone();
    streamed["stream"] = json!(true);
    let text = post("/v1/responses", streamed.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("response.failed"), "{text}");
    let refused = json!({"model": MODEL, "input": c[8], "previous_response_id": c[8]});
    assert_eq!(
        post("/v1/responses", refused.to_string())
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    mock.push(Script {
        reasoning: Some(c[9].clone()),
        ..Script::reply(&format!("Answer {}", c[10]))
    });
    let messages = json!({"model": MODEL, "max_tokens": 50, "stream": true, "system": c[11],
        "metadata": {"user_id": c[11]},
        "messages": [{"role": "user", "content": [{"type": "text", "text": c[3]}]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": c[9], "signature": "s"},
                {"type": "tool_use", "id": "toolu_1", "name": "lookup", "input": {"q": c[5]}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": c[6]}]}]});
    let text = client
        .post(url("/v1/messages"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&messages)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains(&c[10]) && text.contains(&c[9]), "{text}");
    let bad = json!({"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "document", "source": {"type": "text", "data": c[8]}}]}]});
    let resp = client
        .post(url("/v1/messages"))
        .header("x-api-key", &key)
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(!resp.text().await.unwrap().contains(&c[8]));
    canaries.extend(c);

    // 10. Passwords: a user created with a canary password, a failed and a good login.
    let password = canary("PASSWORD");
    let resp = client
        .post(url("/api/v1/users"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"email": "canary@privacy.example", "password": password}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let wrong = canary("WRONGPW");
    for pw in [&wrong, &password] {
        let _ = client
            .post(url("/api/v1/session"))
            .json(&json!({"email": "canary@privacy.example", "password": pw}))
            .send()
            .await
            .unwrap();
    }
    canaries.extend([password, wrong]);

    // The upstream really saw the content (the canaries did travel).
    let seen: Vec<u8> = mock
        .requests()
        .iter()
        .flat_map(|r| r.body.to_vec())
        .collect();
    assert!(contains(&seen, canaries[0].as_bytes()));

    tokio::time::sleep(Duration::from_millis(300)).await;
    server.terminate();
    store.close().await;

    if test_postgres().is_none() {
        assert!(walk(dir.path()).iter().any(|f| f.ends_with("instagen.db")));
    }
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("DEBUG"),
        "the server logged at debug level"
    );
    // Request lines carry metadata: ids, the configured model, status and latency.
    let answered = log_text
        .lines()
        .find(|l| l.contains("request answered") && l.contains("/v1/chat/completions"))
        .expect("a request line for a chat completion");
    for field in [
        "request_id=",
        "account_id=",
        "key_id=",
        "model=",
        "status=200",
        "latency_us=",
    ] {
        assert!(answered.contains(field), "{field} missing from {answered}");
    }
    assert_nothing_holds(dir.path(), &canaries).await;
}

/// No file under `dir` (database, WAL, journal, logs) and no value of a PostgreSQL store
/// holds any of `content`.
pub async fn assert_nothing_holds(dir: &std::path::Path, content: &[String]) {
    for file in walk(dir) {
        let bytes = std::fs::read(&file).unwrap();
        for c in content {
            assert!(
                !contains(&bytes, c.as_bytes()),
                "{} contains {c:?}",
                file.display()
            );
        }
    }
    if let Some(bytes) = store_contents(dir).await {
        for c in content {
            assert!(
                !contains(&bytes, c.as_bytes()),
                "the PostgreSQL store contains {c:?}"
            );
        }
    }
}
