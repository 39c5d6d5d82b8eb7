//! The cost in every answer: through each surface (chat, completions, embeddings,
//! responses, messages), whole and streamed, translated and native, the client is shown
//! exactly what its request's record was billed, and an estimate says it is one.

use mock_upstream::Script;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::token_kinds::{cost_by_kind, priced};
use instagen::billing::Money;
use instagen::config::ResponsesApi;

/// An upstream reporting every kind of token it can on its wire.
fn every_kind() -> Script {
    Script {
        cached_tokens: Some(3),
        cache_write_tokens: Some((2, 1)),
        reasoning_tokens: Some(1),
        ..Script::reply("Paris is the capital of France")
    }
}

/// The usage object carrying our cost in one JSON document of an answer, if any.
fn usage_with_cost(doc: &Value) -> Option<&Value> {
    [&doc["usage"], &doc["response"]["usage"]]
        .into_iter()
        .find(|u| u.get("cost_usd").is_some())
}

/// Sends `body` to `path` and checks the answer shows the cost its record carries: the
/// header of a whole answer, `cost` (an exact JSON number), `cost_usd` and
/// `cost_estimated` in the usage the client receives. Returns whether it was estimated.
async fn shows_its_cost(app: &TestApp, path: &str, body: Value) -> bool {
    let stream = body["stream"] == json!(true);
    let resp = app.post(path, &body).await;
    assert_eq!(resp.status(), 200, "{path}");
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    let header = resp
        .headers()
        .get("x-instagen-cost-usd")
        .map(|v| v.to_str().unwrap().to_owned());
    let estimated_header = resp
        .headers()
        .get("x-instagen-cost-estimated")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    let docs: Vec<Value> = match stream {
        false => vec![serde_json::from_str(&text).unwrap()],
        true => named_sse_events(&text)
            .into_iter()
            .map(|(_, v)| v)
            .collect(),
    };
    let usage = docs
        .iter()
        .rev()
        .find_map(usage_with_cost)
        .unwrap_or_else(|| panic!("{path}: no usage with a cost in {text}"))
        .clone();
    let record = &app.record(&id).await;
    let usd = Money::from_nanos(record.cost_nanos).to_string();
    assert!(record.cost_nanos > 0, "{path}: {record:?}");
    assert_eq!(usage["cost_usd"], json!(usd), "{path}: {usage}");
    assert_eq!(usage["cost_estimated"], json!(record.estimated), "{path}");
    assert!(
        text.contains(&format!("\"cost\":{usd},\"cost_usd\":\"{usd}\"")),
        "{path}: `cost` is the exact amount as a number: {text}"
    );
    match stream {
        false => {
            assert_eq!(header.as_deref(), Some(usd.as_str()), "{path}");
            let estimated = record.estimated.to_string();
            assert_eq!(estimated_header.as_deref(), Some(estimated.as_str()));
        }
        true => assert_eq!(header, None, "{path}: a stream's cost is known at its end"),
    }
    if !record.estimated {
        assert_eq!(record.cost_nanos, cost_by_kind(record), "{path}");
    }
    record.estimated
}

fn streamed(mut body: Value) -> Value {
    body["stream"] = json!(true);
    body
}

fn chat() -> Value {
    chat_body("What is the capital of France?")
}

fn chat_streamed_with_usage() -> Value {
    let mut body = streamed(chat());
    body["stream_options"] = json!({"include_usage": true});
    body
}

fn responses() -> Value {
    json!({"model": MODEL, "input": "What is the capital of France?"})
}

fn messages() -> Value {
    json!({"model": MODEL, "max_tokens": 64,
           "messages": [{"role": "user", "content": "What is the capital of France?"}]})
}

#[tokio::test]
async fn every_surface_shows_the_client_the_exact_cost_it_was_billed() {
    let app = TestApp::spawn_with(priced).await;
    let completion = json!({"model": MODEL, "prompt": "The capital of France is"});
    let mut completion_streamed = streamed(completion.clone());
    completion_streamed["stream_options"] = json!({"include_usage": true});
    let cases = [
        ("/v1/chat/completions", chat()),
        ("/v1/chat/completions", chat_streamed_with_usage()),
        ("/v1/completions", completion),
        ("/v1/completions", completion_streamed),
        (
            "/v1/embeddings",
            json!({"model": MODEL, "input": "the capital of France"}),
        ),
        ("/v1/responses", responses()),
        ("/v1/responses", streamed(responses())),
        ("/v1/messages", messages()),
        ("/v1/messages", streamed(messages())),
    ];
    for (path, body) in cases {
        app.mock.push(every_kind());
        assert!(!shows_its_cost(&app, path, body).await, "{path}");
    }
}

#[tokio::test]
async fn native_anthropic_and_responses_answers_show_their_cost() {
    let app = TestApp::spawn_with(|c| {
        priced(c);
        c.providers[0].kind = anthropic_kind(&c.providers[0]);
    })
    .await;
    for (path, body) in [
        ("/v1/messages", messages()),
        ("/v1/messages", streamed(messages())),
        ("/v1/chat/completions", chat()),
        ("/v1/chat/completions", chat_streamed_with_usage()),
    ] {
        app.mock.push(every_kind());
        assert!(!shows_its_cost(&app, path, body).await, "{path}");
    }
    let app = TestApp::spawn_with(|c| {
        priced(c);
        set_responses(&mut c.providers[0], ResponsesApi::Native);
    })
    .await;
    for body in [responses(), streamed(responses())] {
        app.mock.push(every_kind());
        assert!(!shows_its_cost(&app, "/v1/responses", body).await);
    }
}

#[tokio::test]
async fn an_estimated_cost_is_labelled_as_one() {
    let app = TestApp::spawn_with(priced).await;
    let no_usage = || Script {
        omit_usage: true,
        ..Script::reply("Paris")
    };
    // A translated answer carries the usage we counted, labelled.
    for body in [messages(), streamed(messages())] {
        app.mock.push(no_usage());
        assert!(shows_its_cost(&app, "/v1/messages", body).await);
    }
    // A chat stream whose upstream sends no usage still ends with the usage chunk the
    // client asked for: our count and its cost, labelled estimated.
    app.mock.push(no_usage());
    assert!(shows_its_cost(&app, "/v1/chat/completions", chat_streamed_with_usage()).await);
    // An OpenAI answer passed through without usage: the headers say it.
    app.mock.push(no_usage());
    let resp = app.chat(&chat()).await;
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(resp.headers()["x-instagen-cost-estimated"], "true");
    let usd = resp.headers()["x-instagen-cost-usd"]
        .to_str()
        .unwrap()
        .to_owned();
    let record = app.record(&id).await;
    assert!(record.estimated && record.cost_nanos > 0);
    assert_eq!(usd, Money::from_nanos(record.cost_nanos).to_string());
}

#[tokio::test]
async fn a_stream_without_usage_asked_for_shows_no_usage() {
    let app = TestApp::spawn_with(priced).await;
    app.mock.push(every_kind());
    let resp = app.chat(&streamed(chat())).await;
    let text = resp.text().await.unwrap();
    assert!(!text.contains("\"usage\""), "{text}");
    assert_eq!(app.records(1).await[0].status, 200);
}
