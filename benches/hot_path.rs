//! Criterion benches for the request path's pure parts: key verification, request-body
//! inspection and rewriting, SSE parsing, the limiter's windows and cost math; and, off
//! the request path, the usage writer's batch insert into SQLite.
//! Run with `cargo bench --bench hot_path`; the load bench (`scripts/loadbench.sh`)
//! measures the whole gateway.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a bench may panic on broken setup, like a test

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use instagen::billing::{Price, Prices};
use instagen::gateway::sse::SseParser;
use instagen::gateway::{Endpoint, inspect};
use instagen::keys::{KeyHasher, ParsedKey};
use instagen::limits::window::Windows;

fn keys(c: &mut Criterion) {
    let hasher = KeyHasher::new(b"bench-secret-bench-secret-bench-secret");
    let key = hasher.generate().expect("random");
    let text = key.plaintext.expose().to_owned();
    let stored = key.hash;
    c.bench_function("key: parse + HMAC verify", |b| {
        b.iter(|| {
            let parsed = ParsedKey::parse(black_box(&text)).expect("valid key");
            assert!(hasher.verify(&parsed, &stored));
        })
    });
}

fn bodies(c: &mut Criterion) {
    let body = serde_json::to_vec(&serde_json::json!({
        "model": "m", "stream": true, "temperature": 0.2, "max_tokens": 256,
        "messages": [{"role": "system", "content": "You are terse."},
                     {"role": "user", "content": "Explain the borrow checker in one paragraph, please."}],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    }))
    .expect("json");
    let mut g = c.benchmark_group("body");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("inspect", |b| {
        b.iter(|| inspect(Endpoint::Chat, black_box(&body)).expect("valid"))
    });
    let inspected = inspect(Endpoint::Chat, &body).expect("valid");
    g.bench_function("rewrite (first party)", |b| {
        b.iter(|| {
            inspected
                .rewrite(black_box("upstream-model"), true, None)
                .expect("ok")
        })
    });
    g.bench_function("rewrite (third party, minimised)", |b| {
        b.iter(|| {
            inspected
                .rewrite(black_box("upstream-model"), true, Some(Endpoint::Chat))
                .expect("ok")
        })
    });
    g.finish();
}

fn sse(c: &mut Criterion) {
    let chunk = br#"data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":" word"},"finish_reason":null}]}

"#;
    let stream: Vec<u8> = chunk
        .iter()
        .copied()
        .cycle()
        .take(chunk.len() * 64)
        .collect();
    let mut g = c.benchmark_group("sse");
    g.throughput(Throughput::Bytes(stream.len() as u64));
    g.bench_function("64 events in 1 KiB pieces", |b| {
        b.iter(|| {
            let mut p = SseParser::new();
            let mut n = 0;
            for piece in stream.chunks(1024) {
                p.push(piece).expect("small");
                while let Some(d) = p.next_data() {
                    n += d.len();
                }
            }
            black_box(n)
        })
    });
    // Each event's JSON, as the relay reads it: the structural scan, and the typed serde
    // parse it replaced (still used for a client of another format, by its encoder).
    let event = r#"{"id":"chatcmpl-mock","object":"chat.completion.chunk","created":1,"model":"mock-model","choices":[{"index":0,"delta":{"content":"upstream."},"logprobs":null,"finish_reason":null}]}"#;
    g.throughput(Throughput::Elements(1));
    g.bench_function("chunk: relay's facts (scan)", |b| {
        let mut text = String::with_capacity(64);
        b.iter(|| {
            text.clear();
            instagen::gateway::relay::chunk::read(black_box(event), &mut text).map(|f| f.content)
        })
    });
    g.bench_function("chunk: typed parse (serde)", |b| {
        b.iter(|| {
            serde_json::from_str::<instagen::gateway::wire::Chunk<'_>>(black_box(event))
                .map(|c| c.choices.map(|c| c.len()))
        })
    });
    g.finish();
}

fn limiter(c: &mut Criterion) {
    let w = Windows::default();
    let subjects: Vec<String> = (0..1024).map(|i| format!("k:{i}:rpm")).collect();
    let mut i = 0usize;
    c.bench_function("limiter: sliding-window check-and-add", |b| {
        b.iter(|| {
            i = (i + 1) % subjects.len();
            black_box(w.check_and_add(&subjects[i], u64::MAX, 1, 1_000 + (i as i64 / 100)))
        })
    });
}

fn cost(c: &mut Criterion) {
    let mut prices = Prices::flat(
        Price::parse("0.15").expect("price"),
        Price::parse("0.60").expect("price"),
    );
    prices.cached_input = Price::parse("0.075").expect("price");
    prices.cache_write = Price::parse("0.1875").expect("price");
    let tokens = instagen::usage::TokenCounts {
        input: 1_234,
        cached_input: 200,
        cache_write_5m: 100,
        output: 567,
        reasoning: 300,
        ..instagen::usage::TokenCounts::default()
    };
    c.bench_function(
        "cost: every kind of token, i128 math, rounded up once",
        |b| b.iter(|| prices.cost(black_box(&tokens))),
    );
    // Every whole chat answer: find `usage`, then splice the cost into it.
    let charged = instagen::usage::Charged {
        cost: instagen::billing::Money::from_nanos(1_234_567),
        estimated: false,
    };
    let short = br#"{"choices":[{"finish_reason":"stop","index":0,"logprobs":null,"message":{"content":"Hello from the mock upstream.","role":"assistant"}}],"created":1,"id":"chatcmpl-mock","model":"bench","object":"chat.completion","usage":{"completion_tokens":5,"prompt_tokens":5,"total_tokens":10}}"#;
    let long = serde_json::to_vec(&serde_json::json!({
        "id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "m",
        "choices": [{"index": 0, "finish_reason": "stop", "logprobs": null, "message": {
            "role": "assistant", "content": "The borrow checker \"proves\" references valid. ".repeat(40)}}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 400, "total_tokens": 520,
                  "prompt_tokens_details": {"cached_tokens": 0}, "completion_tokens_details": {"reasoning_tokens": 0}},
        "system_fingerprint": "fp"
    }))
    .expect("json");
    for (name, doc) in [("short", &short[..]), ("2 KiB", &long[..])] {
        c.bench_function(
            &format!("cost: find usage + splice ({name} chat answer)"),
            |b| {
                b.iter(|| {
                    let span =
                        instagen::gateway::cost::value_span(black_box(doc), &["usage"]).unwrap();
                    instagen::gateway::cost::annotate_at(doc, span, &charged).unwrap()
                })
            },
        );
    }
}

/// The Responses and Messages surfaces over plain chat: requests translated to chat,
/// answers and stream chunks translated back (compare with `body/inspect`, which plain
/// chat pays too). The goal is under 10 µs a request for the translation.
fn wire(c: &mut Criterion) {
    use instagen::gateway::Wire;
    use instagen::gateway::wire::Chunk;
    use instagen::usage::TokenCounts;
    let tools: Vec<serde_json::Value> = ["shell", "read_file", "apply_patch"]
        .iter()
        .map(|n| serde_json::json!({"type": "function", "name": n, "description": "Runs a thing.",
                 "parameters": {"type": "object", "properties": {"command": {"type": "array", "items": {"type": "string"}}}}}))
        .collect();
    let responses = serde_json::to_vec(&serde_json::json!({
        "model": "m", "stream": true, "store": false, "instructions": "You are a coding agent. Be precise.",
        "include": ["reasoning.encrypted_content"], "reasoning": {"effort": "medium"},
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "List the files in src and explain main.rs."}]},
            {"type": "function_call", "call_id": "c1", "name": "shell", "arguments": "{\"command\":[\"ls\",\"src\"]}"},
            {"type": "function_call_output", "call_id": "c1", "output": "main.rs lib.rs"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "There are two files."}]}
        ],
        "tools": tools, "tool_choice": "auto", "parallel_tool_calls": false
    }))
    .expect("json");
    let messages = serde_json::to_vec(&serde_json::json!({
        "model": "m", "stream": true, "max_tokens": 4096, "metadata": {"user_id": "u"},
        "system": [{"type": "text", "text": "You are a coding agent. Be precise.", "cache_control": {"type": "ephemeral"}}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "List the files in src and explain main.rs."}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls src"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "main.rs lib.rs"}]}
        ],
        "tools": [{"name": "Bash", "description": "Runs a command.", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
        "thinking": {"type": "enabled", "budget_tokens": 8000}
    }))
    .expect("json");
    let answer = serde_json::to_vec(&serde_json::json!({
        "id": "c", "object": "chat.completion", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": "Let me look at main.rs first.",
            "tool_calls": [{"id": "c2", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"src/main.rs\"}"}}]}}],
        "usage": {"prompt_tokens": 120, "completion_tokens": 20}
    }))
    .expect("json");
    let counts = TokenCounts {
        input: 120,
        output: 20,
        ..TokenCounts::default()
    };
    let chunk = br#"{"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":" word"},"finish_reason":null}]}"#;
    let mut g = c.benchmark_group("wire");
    for (name, wire, body) in [
        ("responses", Wire::Responses, &responses),
        ("messages", Wire::Messages, &messages),
    ] {
        g.bench_function(format!("{name}: request to chat"), |b| {
            b.iter(|| wire.to_chat(black_box(body)).expect("valid"))
        });
        let charged = instagen::usage::Charged::default();
        g.bench_function(format!("{name}: answer from chat"), |b| {
            b.iter(|| {
                wire.from_chat(black_box(&answer), "m", counts, &charged)
                    .expect("valid")
            })
        });
        g.bench_function(format!("{name}: 64 stream chunks encoded"), |b| {
            b.iter(|| {
                let mut encoder = wire.encoder("m").expect("an encoder");
                let mut out = Vec::with_capacity(256);
                for _ in 0..64 {
                    let parsed: Chunk<'_> =
                        serde_json::from_slice(black_box(chunk)).expect("chunk");
                    encoder.on_chunk(&parsed, &mut out);
                }
                encoder.finish(counts, &instagen::usage::Charged::default(), &mut out);
                out
            })
        });
    }
    g.finish();
}

/// The usage writer's transaction: a batch of new records into SQLite with its rollups,
/// as a busy gateway writes one every `usage.flush_interval_ms` (1,000 records: the
/// default `usage.batch_size`, reached at ~10 k requests a second) or a quieter one does
/// (100). Per request it costs the figure over the batch's size; the two sizes together
/// give the transaction's fixed cost apart from each record's. Every batch's ids are new.
fn usage_batch(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let store = rt
        .block_on(instagen::store::Store::open(&url))
        .expect("store");
    let now = instagen::time::now_ms();
    let (account, models) = ("acc_bench", ["bench-a", "bench-b"]);
    let keys: Vec<String> = (0..4).map(|k| format!("key_bench_{k}")).collect();
    let mut batch_no = 0u64;
    let mut g = c.benchmark_group("store");
    g.sample_size(20);
    for (size, name) in [
        (1_000u64, "usage batch of 1,000 records (SQLite)"),
        (100, "usage batch of 100 records (SQLite)"),
    ] {
        g.throughput(Throughput::Elements(size));
        g.bench_function(name, |b| {
            b.iter(|| {
                batch_no += 1;
                let batch: Vec<instagen::usage::UsageRecord> = (0..size)
                    .map(|i| instagen::usage::UsageRecord {
                        request_id: format!("req_bench_{batch_no}_{i}").into(),
                        account_id: account.into(),
                        key_id: keys[(i % 4) as usize].as_str().into(),
                        endpoint: "chat.completions".into(),
                        model: Some(models[(i % 2) as usize].into()),
                        provider: Some("mock".into()),
                        started_ms: now,
                        finished_ms: now + 1,
                        status: 200,
                        input_tokens: 12 + i % 7,
                        output_tokens: 9,
                        cost_nanos: 5_100,
                        latency_us: 900,
                        attempts: 1,
                        ..Default::default()
                    })
                    .collect();
                let inserted = rt.block_on(store.insert_usage(&batch)).expect("insert");
                assert_eq!(inserted, size);
            })
        });
    }
    g.finish();
}

criterion_group!(benches, keys, bodies, sse, limiter, cost, wire, usage_batch);
criterion_main!(benches);
