//! The built-in CPU engine with the real reference model (SmolLM2-135M-Instruct, Q4_1
//! GGUF, fetched by `scripts/fetch-model.sh`): answers, determinism, exact usage from the
//! model's tokenizer, bounded admission, cancellation, billing, and the embedded default
//! of `instagen serve` without a config file.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use instagen::config::{LocalConfig, LocalWeights, ModelConfig, ProviderConfig, ProviderKind};
use instagen::engine::{ChatMessage, Vocab};
use serde_json::{Value, json};

use crate::helpers::*;
use crate::services::skip;

const LOCAL: &str = "smollm2";
const SYSTEM: &str = "You are a helpful assistant.";

/// The reference model file, or `None` (the test is reported skipped) when it is absent.
fn model_file(test: &str) -> Option<PathBuf> {
    let path = std::env::var_os("INSTAGEN_TEST_MODEL").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("instagen-data")
                .join(instagen::config::DEFAULT_MODEL_FILE)
        },
        PathBuf::from,
    );
    if path.is_file() {
        Some(path)
    } else {
        skip(
            test,
            &format!(
                "the reference model is not at {} (run scripts/fetch-model.sh from the repository root)",
                path.display()
            ),
        );
        None
    }
}

fn local_provider(path: PathBuf, max_sequences: usize, max_queue: usize) -> ProviderConfig {
    let mut local = LocalConfig::new(path);
    local.max_sequences = max_sequences;
    local.max_queue = max_queue;
    local.context_length = 1024;
    let mut p = crate::routing::provider("engine", String::new(), false);
    p.kind = ProviderKind::Local(local);
    p.default_max_tokens = 64;
    p.idle_timeout_ms = 60_000;
    p
}

/// The test app with the local model added beside the mock one, priced like it.
async fn spawn(path: PathBuf, max_sequences: usize, max_queue: usize) -> TestApp {
    spawn_with_weights(path, max_sequences, max_queue, LocalWeights::Quantized).await
}

async fn spawn_with_weights(
    path: PathBuf,
    max_sequences: usize,
    max_queue: usize,
    weights: LocalWeights,
) -> TestApp {
    TestApp::spawn_with(move |c| {
        let mut provider = local_provider(path, max_sequences, max_queue);
        if let ProviderKind::Local(local) = &mut provider.kind {
            local.weights = weights;
        }
        c.providers.push(provider);
        let mut m: ModelConfig = c.models[0].clone();
        m.id = LOCAL.to_owned();
        m.provider = Some("engine".to_owned());
        m.upstream_model = None;
        m.routes.clear();
        c.models.push(m);
    })
    .await
}

fn chat(content: &str, extra: Value) -> Value {
    let mut body = json!({"model": LOCAL, "messages": [{"role": "user", "content": content}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// Content deltas, finish reason and usage of an SSE answer.
async fn read_stream(resp: reqwest::Response) -> (String, Option<String>, Option<Value>) {
    let mut text = String::new();
    let mut finish = None;
    let mut usage = None;
    for data in sse_events(resp).await {
        if data == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(&data).unwrap();
        assert!(v.get("error").is_none(), "stream error: {v}");
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            usage = Some(u.clone());
        }
        for c in v["choices"].as_array().unwrap() {
            if let Some(t) = c["delta"]["content"].as_str().or(c["text"].as_str()) {
                text.push_str(t);
            }
            if let Some(f) = c["finish_reason"].as_str() {
                finish = Some(f.to_owned());
            }
        }
    }
    (text, finish, usage)
}

#[tokio::test]
async fn local_model_answers_greedily_with_usage_from_its_own_tokenizer_and_is_billed() {
    let Some(path) = model_file("local_engine::local_model_answers_greedily") else {
        return;
    };
    let vocab = Vocab::from_file(&path).unwrap();
    let app = spawn(path, 2, 4).await;
    let question = "What is the capital of France?";
    // The file's template adds a default system prompt when none is sent; this 135M model
    // then wanders off, so the request sets one of its own, as applications do.
    let resp = app
        .chat(
            &json!({"model": LOCAL, "temperature": 0, "max_tokens": 32, "messages": [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": question}]}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    let answer = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(answer.contains("Paris"), "greedy answer: {answer}");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");

    // Usage is the tokenizer's count of the rendered prompt and of what was generated.
    let prompt = vocab
        .render_chat(&[
            ChatMessage {
                role: "system".into(),
                content: SYSTEM.into(),
            },
            ChatMessage {
                role: "user".into(),
                content: question.into(),
            },
        ])
        .unwrap();
    assert!(prompt.ends_with("<|im_start|>assistant\n"), "{prompt}");
    let prompt_tokens = vocab.encode(&prompt).unwrap().len() as u64;
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens"], prompt_tokens);
    let completion = usage["completion_tokens"].as_u64().unwrap();
    let generated = vocab.encode(answer).unwrap().len() as u64;
    match body["choices"][0]["finish_reason"].as_str().unwrap() {
        // The end-of-turn token is generated, and counted, but not shown.
        "stop" => assert_eq!(completion, generated + 1),
        "length" => assert_eq!(completion, 32),
        other => panic!("finish_reason {other}"),
    }
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        prompt_tokens + completion
    );

    // `max_tokens` is exact, and ends with `length`.
    let resp = app
        .chat(&chat(
            "Write a long story about a dragon.",
            json!({"temperature": 0, "max_tokens": 5}),
        ))
        .await;
    let short: Value = resp.json().await.unwrap();
    assert_eq!(short["choices"][0]["finish_reason"], "length");
    assert_eq!(short["usage"]["completion_tokens"], 5);

    // Metered and billed as any provider: exact tokens, never estimated, exact cost.
    let records = app.records(2).await;
    let r = records
        .iter()
        .find(|r| r.output_tokens == completion)
        .expect("the first answer's record");
    assert_eq!(r.model.as_deref(), Some(LOCAL));
    assert_eq!(r.provider.as_deref(), Some("engine"));
    assert_eq!(r.input_tokens, prompt_tokens);
    assert!(!r.estimated);
    assert_eq!(r.cost_nanos, test_cost(prompt_tokens, 0, completion));
}

#[tokio::test]
async fn local_stream_reassembles_to_the_non_stream_answer_with_the_same_seed() {
    let Some(path) = model_file("local_engine::local_stream_reassembles") else {
        return;
    };
    let app = spawn(path, 2, 4).await;
    let sampled = json!({"temperature": 0.9, "top_p": 0.95, "seed": 7, "max_tokens": 40});
    let body = chat("Tell me something about the sea.", sampled.clone());
    let whole: Value = app.chat(&body).await.json().await.unwrap();
    let whole_text = whole["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(!whole_text.is_empty());

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let resp = app.chat(&streamed).await;
    assert_eq!(resp.status(), 200);
    let (text, finish, usage) = read_stream(resp).await;
    assert_eq!(text, whole_text, "same seed, same tokens");
    assert_eq!(
        finish.as_deref(),
        whole["choices"][0]["finish_reason"].as_str()
    );
    assert_eq!(usage.unwrap(), whole["usage"]);

    // Without include_usage the client gets no usage chunk, and the record is still exact.
    streamed.as_object_mut().unwrap().remove("stream_options");
    let (again, _, usage) = read_stream(app.chat(&streamed).await).await;
    assert_eq!(again, whole_text);
    assert!(usage.is_none());
    let records = app.records(3).await;
    assert!(records.iter().all(|r| !r.estimated
        && r.output_tokens == whole["usage"]["completion_tokens"].as_u64().unwrap()));

    // A different seed samples differently (40 tokens at temperature 0.9).
    let mut other = body.clone();
    other["seed"] = json!(8);
    let other: Value = app.chat(&other).await.json().await.unwrap();
    assert_ne!(other["choices"][0]["message"]["content"], whole_text);

    // Stop strings end the answer before they appear.
    let first_word = whole_text
        .split_whitespace()
        .nth(1)
        .unwrap_or("the")
        .to_owned();
    let mut stopped = body.clone();
    stopped["stop"] = json!([first_word.clone()]);
    let stopped: Value = app.chat(&stopped).await.json().await.unwrap();
    let cut = stopped["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    assert!(
        !cut.contains(&first_word),
        "{cut:?} stops before {first_word:?}"
    );
    assert_eq!(stopped["choices"][0]["finish_reason"], "stop");
    assert!(whole_text.starts_with(cut));
}

#[tokio::test]
async fn a_full_local_queue_is_refused_and_a_client_that_leaves_frees_the_engine() {
    let Some(path) = model_file("local_engine::a_full_local_queue_is_refused") else {
        return;
    };
    // One sequence at a time and no queue: a second request while one runs gets 429.
    let app = spawn(path, 1, 0).await;
    let counting = json!({
        "model": LOCAL, "prompt": "1, 2, 3, 4, 5, 6, 7, 8,", "max_tokens": 1000,
        "temperature": 0, "stream": true,
    });
    let resp = app.post("/v1/completions", &counting).await;
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut seen = 0;
    while seen < 3 {
        let chunk = body.next().await.unwrap().unwrap();
        seen += chunk.windows(6).filter(|w| w == b"data: ").count();
    }
    let metrics = scrape_metrics(&app).await;
    assert!(
        metrics.contains(
            "instagen_engine_sequences{model=\"smollm2\",provider=\"engine\",state=\"running\"} 1"
        ),
        "{metrics}"
    );
    let busy = app
        .chat(&chat("hi", json!({"max_tokens": 2, "temperature": 0})))
        .await;
    let err = openai_error(busy, 429).await;
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("capacity"),
        "{err}"
    );

    // The client leaves: generation stops and the sequence is free again.
    drop(body);
    wait_until_free(&app, "the engine kept generating for a stream that left").await;
    // A non-stream request whose client gives up stops generating too.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    let mut counting = counting.clone();
    counting["stream"] = json!(false);
    let gave_up = impatient
        .post(app.url("/v1/completions"))
        .bearer_auth(&app.key)
        .json(&counting)
        .send()
        .await;
    assert!(gave_up.is_err(), "1000 tokens take longer than 0.8 s");
    wait_until_free(&app, "the engine kept generating for a client that left").await;

    let records = app.records(3).await;
    let cancelled = records
        .iter()
        .find(|r| r.status == 499)
        .expect("a record of the cancelled stream");
    assert!(!cancelled.estimated, "exact counts, even when cancelled");
    assert!(cancelled.output_tokens >= 3 && cancelled.output_tokens < 1000);
    assert!(cancelled.input_tokens > 0);
    assert!(records.iter().any(|r| r.status == 429));
}

/// Polls a one-sequence, no-queue engine with a tiny request until it is served (200)
/// rather than refused (429): the sequence that was busy has ended.
async fn wait_until_free(app: &TestApp, why: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let resp = app
            .chat(&chat("hi", json!({"max_tokens": 2, "temperature": 0})))
            .await;
        if resp.status() == 200 {
            return;
        }
        assert_eq!(resp.status(), 429);
        assert!(Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn local_requests_the_engine_cannot_serve_get_openai_errors() {
    let Some(path) = model_file("local_engine::local_requests_the_engine_cannot_serve") else {
        return;
    };
    let app = spawn(path, 1, 2).await;
    let cases = [
        (chat("hi", json!({"n": 2})), "n"),
        (chat("hi", json!({"temperature": 3})), "temperature"),
        (chat("hi", json!({"top_p": 0})), "top_p"),
        (
            chat("hi", json!({"stop": ["a", "b", "c", "d", "e"]})),
            "stop",
        ),
        (
            json!({"model": LOCAL, "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]}]}),
            "messages",
        ),
        (json!({"model": LOCAL, "messages": []}), "messages"),
        (
            chat(
                "hi",
                json!({"tools": [{"type": "function", "function": {"name": "f"}}]}),
            ),
            "tools",
        ),
        (
            chat("hi", json!({"response_format": {"type": "json_object"}})),
            "response_format",
        ),
        (chat("hi", json!({"logprobs": true})), "logprobs"),
    ];
    for (body, param) in cases {
        let err = openai_error(app.chat(&body).await, 400).await;
        assert_eq!(err["error"]["param"], param, "{err}");
    }
    let err = openai_error(
        app.post("/v1/completions", &json!({"model": LOCAL, "prompt": ""}))
            .await,
        400,
    )
    .await;
    assert_eq!(err["error"]["param"], "prompt");
    let err = openai_error(
        app.post("/v1/embeddings", &json!({"model": LOCAL, "input": "hi"}))
            .await,
        400,
    )
    .await;
    assert_eq!(err["error"]["param"], "model");
    // Longer than the context (1024 tokens here): refused before generating.
    let long = "word ".repeat(3000);
    let err = openai_error(app.chat(&chat(&long, json!({}))).await, 400).await;
    assert!(
        err["error"]["message"]
            .as_str()
            .unwrap()
            .contains("context"),
        "{err}"
    );
}

#[tokio::test]
async fn serve_without_a_config_file_serves_the_reference_model_when_it_is_there() {
    let Some(path) = model_file("local_engine::serve_without_a_config_file") else {
        return;
    };
    let cwd = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_instagen");
    let port = free_port();
    let run = |args: &[&str]| {
        std::process::Command::new(bin)
            .current_dir(cwd.path())
            .env("INSTAGEN__SERVER__LISTEN", format!("127.0.0.1:{port}"))
            .args(args)
            .output()
            .unwrap()
    };

    // Without the model file: it starts, without models, and says how to fetch it.
    let log = cwd.path().join("first.log");
    let mut first = std::process::Command::new(bin)
        .current_dir(cwd.path())
        .env("INSTAGEN__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&client, &base).await;
    let _ = first.kill();
    let _ = first.wait();
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(said.contains("scripts/fetch-model.sh"), "{said}");

    // With the file where fetch-model.sh puts it: the embedded default serves it.
    let models = cwd.path().join("instagen-data/models");
    std::fs::create_dir_all(&models).unwrap();
    std::os::unix::fs::symlink(&path, models.join("SmolLM2-135M-Instruct.Q4_1.gguf")).unwrap();
    assert!(run(&["accounts", "create", "solo"]).status.success());
    let created = run(&[
        "keys",
        "create",
        "--account",
        "solo",
        "--name",
        "k",
        "--json",
    ]);
    assert!(created.status.success());
    let key: Value = serde_json::from_slice(&created.stdout).unwrap();
    let secret = key["secret"].as_str().unwrap().to_owned();
    let mut server = std::process::Command::new(bin)
        .current_dir(cwd.path())
        .env("INSTAGEN__SERVER__LISTEN", format!("127.0.0.1:{port}"))
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_healthy(&client, &base).await;
    let listed: Value = client
        .get(format!("{base}/v1/models"))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"][0]["id"], "smollm2-135m-instruct", "{listed}");
    let resp = client
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&secret)
        .json(
            &json!({"model": "smollm2-135m-instruct", "temperature": 0, "max_tokens": 24,
                      "messages": [{"role": "user", "content": "What is the capital of France?"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    let _ = server.kill();
    let _ = server.wait();
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("Paris"),
        "{body}"
    );
    assert!(body["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(format!("{base}/healthz")).send().await
            && r.status() == 200
        {
            return;
        }
        assert!(Instant::now() < deadline, "server did not become healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn local_prompts_and_outputs_reach_no_file_log_or_record() {
    let Some(path) = model_file("local_engine::local_prompts_and_outputs_reach_no_file") else {
        return;
    };
    let mock = mock_upstream::MockUpstream::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = write_process_config(dir.path(), &mock.base_url(), "debug");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!(
        "[[providers]]\nname = \"engine\"\nkind = \"local\"\npath = \"{}\"\ncontext_length = 512\n\
         [[models]]\nid = \"{LOCAL}\"\nprovider = \"engine\"\n\
         input_usd_per_mtok = \"0\"\noutput_usd_per_mtok = \"0\"\n",
        path.display()
    ));
    std::fs::write(&config, text).unwrap();
    let (_account, key, store) = provision(&config).await;
    let log = dir.path().join("server.log");
    let server = ServerProcess::start(&config, &log).await;
    let client = reqwest::Client::new();
    let post = |path: &str, body: &Value| {
        client
            .post(format!("{}{path}", server.base))
            .bearer_auth(&key)
            .json(body)
    };
    let canary = format!(
        "CANARYLOCAL{}",
        instagen::keys::random_id(16).unwrap().to_uppercase()
    );
    let mut secrets = vec![canary.clone()];

    // An answer (its text is content too), a stream, a stream the client leaves, and
    // refusals that echo nothing.
    let resp = post(
        "/v1/chat/completions",
        &chat(
            &format!("Repeat after me: {canary}"),
            json!({"max_tokens": 24, "temperature": 0}),
        ),
    )
    .send()
    .await
    .unwrap();
    let body: Value = resp.json().await.unwrap();
    let answer = body["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    if answer.trim().len() >= 16 {
        secrets.push(answer.trim().to_owned());
    }
    let mut streamed = chat(
        &format!("Tell me about {canary}"),
        json!({"max_tokens": 300}),
    );
    streamed["stream"] = json!(true);
    let resp = post("/v1/chat/completions", &streamed)
        .send()
        .await
        .unwrap();
    let mut chunks = resp.bytes_stream();
    let _ = chunks.next().await;
    let _ = chunks.next().await;
    drop(chunks);
    let long = format!("{canary} ").repeat(2000);
    let resp = post("/v1/chat/completions", &chat(&long, json!({})))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(!resp.text().await.unwrap().contains(&canary));

    tokio::time::sleep(Duration::from_millis(500)).await;
    server.terminate();
    store.close().await;
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("DEBUG") && log_text.contains("local model loaded"));
    crate::privacy::assert_nothing_holds(dir.path(), &secrets).await;
}

#[tokio::test]
async fn f32_weights_from_the_same_file_answer_with_the_files_default_system_prompt() {
    let Some(path) = model_file("local_engine::f32_weights_from_the_same_file") else {
        return;
    };
    let app = spawn_with_weights(path, 1, 2, LocalWeights::F32).await;
    // No system message: the template adds the file's default one. Quantized activations
    // lose this 135M model here; dequantized weights keep it on topic.
    let resp = app
        .chat(&chat(
            "What is the capital of France?",
            json!({"temperature": 0, "max_tokens": 24}),
        ))
        .await;
    let body: Value = resp.json().await.unwrap();
    let answer = body["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(answer.contains("Paris"), "{answer}");
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 30);
}

#[tokio::test]
async fn responses_and_messages_run_on_the_built_in_engine_with_its_own_counts() {
    let Some(path) = model_file("local_engine::responses_and_messages_run_on_the_built_in_engine")
    else {
        return;
    };
    let app = spawn(path, 2, 4).await;
    let question = "What is the capital of France?";
    let resp = app
        .post(
            "/v1/responses",
            &json!({"model": LOCAL, "instructions": SYSTEM, "input": question,
                    "temperature": 0, "max_output_tokens": 16}),
        )
        .await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    let text = answer["output"][0]["content"][0]["text"].as_str().unwrap();
    assert!(!text.is_empty(), "{answer}");
    let streamed = app
        .post(
            "/v1/responses",
            &json!({"model": LOCAL, "instructions": SYSTEM, "input": question,
                    "temperature": 0, "max_output_tokens": 16, "stream": true}),
        )
        .await
        .text()
        .await
        .unwrap();
    let events = named_sse_events(&streamed);
    let deltas: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        deltas, text,
        "greedy decoding answers the same streamed or not"
    );
    let messages = json!({"model": LOCAL, "max_tokens": 16, "temperature": 0, "system": SYSTEM,
                          "messages": [{"role": "user", "content": question}]});
    let resp = app
        .client
        .post(app.url("/v1/messages"))
        .header("x-api-key", &app.key)
        .json(&messages)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let message: Value = resp.json().await.unwrap();
    assert_eq!(message["content"][0]["text"], text);
    // count_tokens uses the model's own tokenizer, and matches what the engine billed.
    let mut count = messages.clone();
    count.as_object_mut().unwrap().remove("max_tokens");
    let resp = app
        .client
        .post(app.url("/v1/messages/count_tokens"))
        .header("x-api-key", &app.key)
        .json(&count)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-instagen-token-count"], "exact");
    let counted = resp.json::<Value>().await.unwrap()["input_tokens"]
        .as_u64()
        .unwrap();
    let records = app.records(3).await;
    let billed = records.iter().find(|r| &*r.endpoint == "messages").unwrap();
    assert_eq!((counted, billed.estimated), (billed.input_tokens, false));
    assert_eq!(message["usage"]["input_tokens"].as_u64(), Some(counted));
    assert!(
        records
            .iter()
            .filter(|r| &*r.endpoint == "responses")
            .count()
            == 2
    );
}
