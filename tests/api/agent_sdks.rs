//! The official agent SDKs, unchanged, against a running InstaGen: the `openai` Python and
//! npm packages on the Responses API, and the `anthropic` Python package on the Messages
//! API both in front of an OpenAI-compatible engine (translated) and in front of an
//! Anthropic provider (passed through). Each script runs in phases (`tests/sdk/`), so the
//! mock upstream can be scripted between them; every phase's requests are then checked in
//! the usage records and in what the upstream received.

use std::process::Command;
use std::time::Duration;

use instagen::admin::Actor;
use instagen::store::KeySpec;
use instagen::usage::UsageRecord;
use mock_upstream::{Recorded, Script};
use serde_json::json;

use crate::helpers::*;

const SDK_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/sdk");
const ANTHROPIC_KEY: &str = "sk-ant-test-0123456789";

/// Whether `python3` can run `code` (an import: is the SDK installed?).
fn python_can(code: &str) -> bool {
    Command::new("python3")
        .args(["-c", code])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Reports `test` skipped because `what` is missing; CI must have it.
fn skip_without(test: &str, what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "CI must install {what} (see .ci/run)"
    );
    crate::services::skip(test, &format!("{what} is not installed"));
}

/// Runs one phase of a Python SDK script against `app`, with `env` added.
async fn python_phase(app: &TestApp, script: &str, phase: &str, env: &[(&str, &str)]) {
    let mut python = Command::new("python3");
    python.arg(format!("{SDK_DIR}/{script}")).arg(phase);
    for (k, v) in env {
        python.env(k, v);
    }
    run_sdk_script(app, python).await;
}

/// Waits for exactly `n` usage records: `n` arrive and no more follow.
async fn exactly(app: &TestApp, n: usize) -> Vec<UsageRecord> {
    app.records(n).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut rows = app.records(n).await;
    assert_eq!(rows.len(), n, "{:#?}", summary(&rows));
    rows.sort_by_key(|r| r.started_ms);
    rows
}

/// The fields of records that tests compare, for assertion messages.
fn summary(rows: &[UsageRecord]) -> Vec<String> {
    rows.iter()
        .map(|r| {
            format!(
                "{} {} stream={} in={} out={} est={} {:?}",
                r.endpoint,
                r.status,
                r.stream,
                r.input_tokens,
                r.output_tokens,
                r.estimated,
                r.error_kind
            )
        })
        .collect()
}

/// What one usage record must say: status, streamed, output tokens, error kind.
type Expect = (u16, bool, u64, Option<&'static str>);

/// A request the mock served with its default reply (5 output tokens).
fn served(stream: bool) -> Expect {
    (200, stream, 5, None)
}

/// A request answered with an error `status` of `kind`.
fn refused(status: u16, stream: bool, kind: &'static str) -> Expect {
    (status, stream, 0, Some(kind))
}

/// Asserts one phase's records, in order: all `endpoint`, as `expected` says; a served
/// one for the test model with the upstream's own counts, after one attempt.
fn assert_phase(rows: &[UsageRecord], endpoint: &str, expected: &[Expect]) {
    let what = format!("{:#?}", summary(rows));
    let got: Vec<(u16, bool, u64, Option<&str>)> = rows
        .iter()
        .map(|r| (r.status, r.stream, r.output_tokens, r.error_kind.as_deref()))
        .collect();
    assert_eq!(got, expected.to_vec(), "{what}");
    for r in rows {
        assert_eq!(&*r.endpoint, endpoint, "{what}");
        if r.status == 200 {
            assert_eq!(r.model.as_deref(), Some(MODEL), "{what}");
            assert!(r.input_tokens > 0 && !r.estimated, "{what}");
            assert_eq!(r.attempts, 1, "{what}");
        } else {
            assert_eq!(r.input_tokens, 0, "{what}");
        }
    }
}

/// Upstream requests received since `from`.
fn upstream_since(app: &TestApp, from: usize) -> Vec<Recorded> {
    app.mock.requests().split_off(from)
}

fn paths(requests: &[Recorded]) -> Vec<String> {
    requests.iter().map(|r| r.path.clone()).collect()
}

#[tokio::test]
async fn official_openai_python_responses_api_works_end_to_end() {
    if !python_can("import openai.resources.responses") {
        return skip_without(
            "agent_sdks::official_openai_python_responses_api_works_end_to_end",
            "python3 package `openai` (with the Responses API)",
        );
    }
    let app = TestApp::spawn().await;
    let script = "responses_sdk.py";

    // Plain, streamed, the stream helper; the errors reach no upstream, and those of a
    // known key are recorded (the bad key's and retrieve/delete are not).
    python_phase(&app, script, "basic", &[]).await;
    let rows = exactly(&app, 5).await;
    assert_phase(
        &rows,
        "responses",
        &[
            served(false),
            served(true),
            served(true),
            refused(400, false, "invalid_request"),
            refused(404, false, "model_not_found"),
        ],
    );
    let seen = upstream_since(&app, 0);
    assert_eq!(paths(&seen), ["/v1/chat/completions"; 3]);
    for r in &seen {
        assert_eq!(r.json()["model"], UPSTREAM_MODEL);
    }
    assert_eq!(seen[1].json()["stream"], true);

    // Structured output: `text.format` becomes the engine's `response_format`.
    app.mock
        .push(Script::reply(r#"{"city":"Oslo","temperature_c":3}"#));
    python_phase(&app, script, "structured", &[]).await;
    let rows = exactly(&app, 6).await;
    assert_phase(&rows[5..], "responses", &[(200, false, 1, None)]);
    let seen = upstream_since(&app, 3);
    let format = &seen[0].json()["response_format"];
    assert_eq!(format["type"], "json_schema", "{format}");
    assert_eq!(format["json_schema"]["name"], "Weather", "{format}");
    assert_eq!(
        format["json_schema"]["schema"]["properties"]["city"]["type"], "string",
        "{format}"
    );

    // The tool loop: a call, the same call streamed, then the answer to the tool's output.
    let call = Script {
        tool_call: Some(("get_weather".into(), r#"{"city":"Oslo"}"#.into())),
        ..Script::default()
    };
    app.mock.push(call.clone());
    app.mock.push(call);
    python_phase(&app, script, "tools", &[]).await;
    let rows = exactly(&app, 9).await;
    assert_phase(
        &rows[6..],
        "responses",
        &[served(false), served(true), served(false)],
    );
    let seen = upstream_since(&app, 4);
    assert_eq!(paths(&seen), ["/v1/chat/completions"; 3]);
    for r in &seen {
        let tools = &r.json()["tools"];
        assert_eq!(tools[0]["function"]["name"], "get_weather", "{tools}");
    }
    let messages = seen[2].json()["messages"].clone();
    let call = messages
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "assistant")
        .unwrap_or_else(|| panic!("the assistant's call goes back: {messages}"));
    assert_eq!(
        call["tool_calls"][0]["function"]["name"], "get_weather",
        "{messages}"
    );
    let result = messages
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap_or_else(|| panic!("the tool's output goes back: {messages}"));
    assert_eq!(result["tool_call_id"], call["tool_calls"][0]["id"]);
    assert_eq!(result["content"], r#"{"temperature_c": 3}"#);
}

/// The Anthropic SDK's own `anthropic-version` header value.
fn anthropic_sdk_version() -> String {
    let out = Command::new("python3")
        .args([
            "-c",
            "import anthropic; print(anthropic.Anthropic(api_key='x').default_headers['anthropic-version'])",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Runs `tests/sdk/anthropic_sdk.py`'s phases against `app`, whose provider speaks
/// `upstream` (`openai` or `anthropic`), and checks the records; returns what the upstream
/// received in phases `basic` and `tools`.
async fn anthropic_phases(app: &TestApp, upstream: &str) -> (Vec<Recorded>, Vec<Recorded>) {
    let mode = ("INSTAGEN_UPSTREAM", upstream);
    let script = "anthropic_sdk.py";
    // A key of the same account that may use another model only (made first: the key
    // table picks new keys up within a second, and the error phase comes last).
    let restricted = instagen::admin::create_key(
        &app.store,
        &app.hasher,
        &Actor::cli(),
        &app.account_id,
        KeySpec {
            allowed_models: Some(vec!["some-other-model".into()]),
            ..key_spec("restricted")
        },
    )
    .await
    .unwrap();

    // Create, raw stream, stream helper; count_tokens and the model list are not recorded.
    python_phase(app, script, "basic", &[mode]).await;
    let rows = exactly(app, 3).await;
    assert_phase(
        &rows,
        "messages",
        &[served(false), served(true), served(true)],
    );
    for r in &rows {
        assert_eq!(r.input_tokens, 3, "{:?}", summary(&rows));
    }
    let basic = upstream_since(app, 0);

    let call = Script {
        tool_call: Some(("get_weather".into(), r#"{"city":"Oslo"}"#.into())),
        ..Script::default()
    };
    app.mock.push(call.clone());
    app.mock.push(call);
    python_phase(app, script, "tools", &[mode]).await;
    let rows = exactly(app, 6).await;
    assert_phase(
        &rows[3..],
        "messages",
        &[served(false), served(true), served(false)],
    );
    let tools = upstream_since(app, basic.len());
    assert_eq!(tools.len(), 3, "{:?}", paths(&tools));

    // Errors: the scripted upstream failures 429, 500 and 429 (streamed); the rest never
    // reach the upstream, but for the malformed message an Anthropic provider is asked
    // (the gateway passes what it cannot translate through) and answers 400 here.
    let native = upstream == "anthropic";
    let before = app.mock.requests().len();
    if native {
        app.mock.push(Script::status(400));
    }
    app.mock.push(Script::status(429));
    app.mock.push(Script::status(500));
    app.mock.push(Script::status(429));
    python_phase(
        app,
        script,
        "errors",
        &[mode, ("INSTAGEN_OTHER_KEY", restricted.secret.expose())],
    )
    .await;
    let failed = upstream_since(app, before);
    let path = match native {
        true => "/v1/messages",
        false => "/v1/chat/completions",
    };
    assert_eq!(
        paths(&failed),
        vec![path; 3 + usize::from(native)],
        "only the scripted failures reach the upstream"
    );
    let rows = exactly(app, 12).await;
    let malformed = match native {
        true => refused(400, false, "upstream_rejected"),
        false => refused(400, false, "invalid_request"),
    };
    assert_phase(
        &rows[6..],
        "messages",
        &[
            refused(404, false, "model_not_found"),
            malformed,
            refused(403, false, "model_not_allowed"),
            refused(429, false, "upstream_rate_limited"),
            refused(502, false, "upstream_error"),
            refused(429, true, "upstream_rate_limited"),
        ],
    );
    (basic, tools)
}

#[tokio::test]
async fn official_anthropic_python_sdk_works_in_front_of_an_openai_compatible_engine() {
    if !python_can("import anthropic") {
        return skip_without(
            "agent_sdks::official_anthropic_python_sdk_works_in_front_of_an_openai_compatible_engine",
            "python3 package `anthropic`",
        );
    }
    let app = TestApp::spawn().await;
    let (basic, tools) = anthropic_phases(&app, "openai").await;

    // Translated: chat completions only; count_tokens is estimated here, not sent.
    assert_eq!(paths(&basic), ["/v1/chat/completions"; 3]);
    for r in &basic {
        let body = r.json();
        assert_eq!(body["model"], UPSTREAM_MODEL);
        assert_eq!(body["max_tokens"], 64);
        assert!(body.get("metadata").is_none(), "{body}");
        assert_eq!(r.header("anthropic-version"), None);
        assert_eq!(r.header("x-api-key"), None);
    }
    assert_eq!(
        basic[0].json()["messages"],
        json!([{"role": "user", "content": "one two three"}])
    );
    let last = tools[2].json();
    let messages = last["messages"].as_array().unwrap();
    let assistant = messages.iter().find(|m| m["role"] == "assistant").unwrap();
    assert_eq!(
        assistant["tool_calls"][0]["function"]["name"], "get_weather",
        "{last}"
    );
    let result = messages.iter().find(|m| m["role"] == "tool").unwrap();
    assert_eq!(result["tool_call_id"], assistant["tool_calls"][0]["id"]);
    assert_eq!(result["content"], r#"{"temperature_c": 3}"#);
    assert_eq!(last["tools"][0]["function"]["name"], "get_weather");
}

#[tokio::test]
async fn official_anthropic_python_sdk_works_in_front_of_an_anthropic_provider() {
    if !python_can("import anthropic") {
        return skip_without(
            "agent_sdks::official_anthropic_python_sdk_works_in_front_of_an_anthropic_provider",
            "python3 package `anthropic`",
        );
    }
    let app = TestApp::spawn_with(|c| anthropic_provider(c, ANTHROPIC_KEY)).await;
    let (basic, tools) = anthropic_phases(&app, "anthropic").await;

    // Passed through: the Messages API itself, with the client's protocol version, the
    // provider's key and nothing of the client's; count_tokens is the provider's own
    // (sent twice: once plain, once for the label).
    assert_eq!(
        paths(&basic),
        [
            "/v1/messages",
            "/v1/messages",
            "/v1/messages",
            "/v1/messages/count_tokens",
            "/v1/messages/count_tokens"
        ]
    );
    let version = anthropic_sdk_version();
    for r in basic.iter().chain(&tools) {
        let body = r.json();
        assert_eq!(body["model"], UPSTREAM_MODEL, "{body}");
        assert!(body.get("metadata").is_none(), "{body}");
        assert_eq!(r.header("anthropic-version"), Some(version.as_str()));
        assert_eq!(r.header("x-api-key"), Some(ANTHROPIC_KEY));
        assert_eq!(r.header("authorization"), None);
    }
    assert_eq!(basic[0].json()["max_tokens"], 64);
    assert_eq!(
        basic[0].json()["messages"],
        json!([{"role": "user", "content": "one two three"}])
    );
    let last = tools[2].json();
    assert_eq!(last["tools"][0]["name"], "get_weather", "{last}");
    let turns = last["messages"].as_array().unwrap();
    assert_eq!(turns.len(), 3, "{last}");
    assert_eq!(turns[1]["content"][1]["type"], "tool_use", "{last}");
    assert_eq!(turns[2]["content"][0]["type"], "tool_result", "{last}");
    assert_eq!(
        turns[2]["content"][0]["tool_use_id"],
        turns[1]["content"][1]["id"]
    );
}

#[tokio::test]
async fn official_openai_node_responses_api_works_end_to_end() {
    let dir = format!("{SDK_DIR}/node");
    let installed = std::path::Path::new(&dir)
        .join("node_modules/openai/package.json")
        .exists();
    let has_node = Command::new("node")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !(installed && has_node) {
        return skip_without(
            "agent_sdks::official_openai_node_responses_api_works_end_to_end",
            "Node and tests/sdk/node/node_modules (npm ci --prefix tests/sdk/node)",
        );
    }
    let app = TestApp::spawn().await;
    let node = |phase: &str| {
        let mut node = Command::new("node");
        node.arg("responses_sdk.mjs").arg(phase).current_dir(&dir);
        node
    };
    run_sdk_script(&app, node("basic")).await;
    let rows = exactly(&app, 4).await;
    assert_phase(
        &rows,
        "responses",
        &[
            served(false),
            served(true),
            served(true),
            refused(400, false, "invalid_request"),
        ],
    );

    app.mock.push(Script {
        tool_call: Some(("get_weather".into(), r#"{"city":"Oslo"}"#.into())),
        ..Script::default()
    });
    run_sdk_script(&app, node("tools")).await;
    let rows = exactly(&app, 6).await;
    assert_phase(&rows[4..], "responses", &[served(false), served(true)]);
    let seen = app.mock.requests();
    assert_eq!(paths(&seen), ["/v1/chat/completions"; 5]);
    let messages = seen[4].json()["messages"].clone();
    assert!(
        messages
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["role"] == "tool" && m["tool_call_id"] == "call_mock"),
        "the tool's output goes back for the mock's call: {messages}"
    );
}
