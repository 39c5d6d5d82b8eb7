//! The `local` provider: requests served by the built-in engine, in-process.
//!
//! The request is checked and rendered here (chat template, sampling settings), the
//! prompt is tokenized and admitted, and the engine's output is shaped exactly as an
//! OpenAI-compatible upstream would send it — one JSON answer, or SSE chunks with a
//! final usage chunk — so the relay, metering and limits treat it like any provider.
//! Usage comes from the model's own tokenizer, never an estimate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::sync::mpsc;

use super::super::sse::{DONE, frame};
use super::super::{BodyError, Endpoint, Inspected};
use super::{UpstreamError, UpstreamErrorKind};
use crate::config::ProviderConfig;
use crate::engine::{ChatMessage, Engine, FinishReason, Generation, LiveCounts, Sampler};

/// Most stop strings a request may set (as OpenAI).
const MAX_STOPS: usize = 4;

pub struct LocalProvider {
    pub name: Arc<str>,
    pub region: Option<String>,
    pub idle_timeout: Duration,
    engine: Arc<Engine>,
}

/// A checked request for the engine: the rendered prompt and how to sample.
pub struct Job {
    prompt: String,
    max_tokens: Option<u64>,
    sampler: Sampler,
    stops: Vec<String>,
    model: String,
    endpoint: Endpoint,
    stream: bool,
}

/// What the engine answered: a whole JSON body, or SSE frames as they are generated.
pub enum LocalAnswer {
    Json(Bytes),
    Stream {
        frames: mpsc::Receiver<Bytes>,
        live: Arc<LiveCounts>,
    },
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    role: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct ResponseFormat {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

fn parse<'a, T: Deserialize<'a>>(
    request: &Inspected<'a>,
    name: &'static str,
    what: &str,
) -> Result<Option<T>, BodyError> {
    request
        .field(name)
        .map(serde_json::from_str)
        .transpose()
        .map_err(|_| BodyError::field(name, format!("`{name}` must be {what}")))
}

impl LocalProvider {
    pub fn new(config: &ProviderConfig, engine: Arc<Engine>) -> Self {
        Self {
            name: Arc::from(config.name.as_str()),
            region: config.region.clone(),
            idle_timeout: Duration::from_millis(config.idle_timeout_ms),
            engine,
        }
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Checks the request and renders its prompt; nothing runs yet.
    pub fn build_job(
        &self,
        endpoint: Endpoint,
        request: &Inspected<'_>,
        upstream_model: &str,
        stream: bool,
    ) -> Result<Job, BodyError> {
        let prompt = match endpoint {
            Endpoint::Chat => {
                let messages: Vec<Message<'_>> =
                    parse(request, "messages", "an array of messages")?
                        .ok_or_else(|| BodyError::field("messages", "`messages` is required"))?;
                if messages.is_empty() {
                    return Err(BodyError::field("messages", "`messages` must not be empty"));
                }
                let mut chat = Vec::with_capacity(messages.len());
                for m in messages {
                    let role = match &*m.role {
                        "developer" => "system",
                        "system" | "user" | "assistant" | "tool" => &*m.role,
                        _ => {
                            return Err(BodyError::field(
                                "messages",
                                "a message's role must be system, developer, user, assistant or tool",
                            ));
                        }
                    };
                    let content = match m.content.map(|c| serde_json::from_str::<Content>(c.get()))
                    {
                        None => String::new(),
                        Some(Ok(Content::Text(t))) => t,
                        Some(Ok(Content::Parts(parts))) => {
                            let mut text = String::new();
                            for p in parts {
                                match (p.kind.as_str(), p.text) {
                                    ("text", Some(t)) => text.push_str(&t),
                                    _ => {
                                        return Err(BodyError::field(
                                            "messages",
                                            "this model accepts text content only",
                                        ));
                                    }
                                }
                            }
                            text
                        }
                        Some(Err(_)) => {
                            return Err(BodyError::field(
                                "messages",
                                "a message's content must be a string or an array of text parts",
                            ));
                        }
                    };
                    chat.push(ChatMessage {
                        role: role.to_owned(),
                        content,
                    });
                }
                self.engine
                    .vocab
                    .render_chat(&chat)
                    .map_err(|e| BodyError::field("messages", e))?
            }
            Endpoint::Completions => match parse::<OneOrMany>(request, "prompt", "a string")? {
                Some(OneOrMany::One(p)) => p,
                Some(OneOrMany::Many(mut p)) if p.len() == 1 => p.remove(0),
                Some(OneOrMany::Many(_)) => {
                    return Err(BodyError::field(
                        "prompt",
                        "this model takes one prompt per request",
                    ));
                }
                None => return Err(BodyError::field("prompt", "`prompt` is required")),
            },
            Endpoint::Embeddings | Endpoint::Transcriptions => {
                return Err(BodyError::field(
                    "model",
                    "this model supports only /v1/chat/completions and /v1/completions",
                ));
            }
        };
        if prompt.is_empty() {
            return Err(BodyError::field("prompt", "`prompt` must not be empty"));
        }
        // Features the engine does not have are refused, never silently ignored.
        if parse::<Vec<serde::de::IgnoredAny>>(request, "tools", "an array")?
            .is_some_and(|t| !t.is_empty())
        {
            return Err(BodyError::field(
                "tools",
                "this model does not support tools",
            ));
        }
        if let Some(format) = parse::<ResponseFormat>(request, "response_format", "an object")?
            && format.kind != "text"
        {
            return Err(BodyError::field(
                "response_format",
                "this model supports only text responses",
            ));
        }
        if !matches!(request.field("logprobs"), None | Some("false" | "0")) {
            return Err(BodyError::field(
                "logprobs",
                "this model does not return logprobs",
            ));
        }
        if let Some(n) = parse::<u64>(request, "n", "an integer")?
            && n != 1
        {
            return Err(BodyError::field(
                "n",
                "this model generates one choice (n = 1)",
            ));
        }
        let temperature = parse::<f64>(request, "temperature", "a number")?.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(BodyError::field(
                "temperature",
                "`temperature` must be between 0 and 2",
            ));
        }
        let top_p = parse::<f64>(request, "top_p", "a number")?.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(BodyError::field(
                "top_p",
                "`top_p` must be greater than 0 and at most 1",
            ));
        }
        let seed = match parse::<i64>(request, "seed", "an integer")? {
            Some(s) => s as u64,
            None => {
                let mut b = [0u8; 8];
                getrandom::fill(&mut b).map_err(|_| BodyError::field("seed", "no randomness"))?;
                u64::from_le_bytes(b)
            }
        };
        let stops = match parse::<OneOrMany>(request, "stop", "a string or an array of strings")? {
            None => Vec::new(),
            Some(OneOrMany::One(s)) => vec![s],
            Some(OneOrMany::Many(v)) => v,
        };
        if stops.len() > MAX_STOPS || stops.iter().any(String::is_empty) {
            return Err(BodyError::field(
                "stop",
                "`stop` takes up to 4 non-empty strings",
            ));
        }
        Ok(Job {
            prompt,
            max_tokens: request.max_tokens,
            sampler: Sampler {
                temperature,
                top_p,
                seed,
            },
            stops,
            model: upstream_model.to_owned(),
            endpoint,
            stream,
        })
    }

    /// The prompt tokens a chat request would take, by the model's own tokenizer.
    pub fn count_prompt(
        &self,
        request: &Inspected<'_>,
        upstream_model: &str,
    ) -> Result<u64, BodyError> {
        let job = self.build_job(Endpoint::Chat, request, upstream_model, false)?;
        self.engine
            .vocab
            .encode(&job.prompt)
            .map(|t| t.len() as u64)
            .map_err(|e| BodyError::field("messages", e))
    }

    /// Tokenizes, waits for a free sequence, and starts generating. A non-stream request
    /// returns when the answer is complete; a stream returns at once with its frames.
    pub async fn send(&self, job: Job) -> Result<LocalAnswer, UpstreamError> {
        let engine = self.engine.clone();
        let error = |kind: UpstreamErrorKind| UpstreamError::new(self.name.clone(), kind);
        // The cheapest refusal first: a prompt with more bytes than the context can hold
        // tokens of the longest kind is not even tokenized.
        let context = engine.config.context_length;
        if job.prompt.len() > context.saturating_mul(64) {
            return Err(too_long(
                error(UpstreamErrorKind::Status(400)),
                None,
                context,
            ));
        }
        let (job, prompt) = tokio::task::spawn_blocking(move || {
            let ids = engine.vocab.encode(&job.prompt);
            (job, ids)
        })
        .await
        .map_err(|_| error(UpstreamErrorKind::Protocol))?;
        let prompt = prompt.map_err(|_| error(UpstreamErrorKind::Protocol))?;
        if prompt.len() >= context {
            return Err(too_long(
                error(UpstreamErrorKind::Status(400)),
                Some(prompt.len()),
                context,
            ));
        }
        let max_new = self.engine.output_budget(prompt.len(), job.max_tokens);
        let slot = self.engine.admit().await.map_err(|_| {
            let mut e = error(UpstreamErrorKind::Status(429));
            e.retry_after = Some(1);
            e.client_message = Some("the model is at capacity; retry shortly".to_owned());
            e
        })?;
        let live = Arc::new(LiveCounts::default());
        let cancel = Arc::new(AtomicBool::new(false));
        let id = completion_id(job.endpoint);
        let created = crate::time::now_ms() / 1000;
        let engine = self.engine.clone();
        if job.stream {
            let (tx, rx) = mpsc::channel::<Bytes>(64);
            let live_in = live.clone();
            tokio::task::spawn_blocking(move || {
                let shape = Shape {
                    id: &id,
                    created,
                    model: &job.model,
                    endpoint: job.endpoint,
                };
                if job.endpoint == Endpoint::Chat {
                    let first = shape.chunk(Some(""), None, true);
                    if tx.blocking_send(first).is_err() {
                        return;
                    }
                }
                let mut emit = |piece: &str| {
                    tx.blocking_send(shape.chunk(Some(piece), None, false))
                        .is_ok()
                };
                let what = job.generation(&prompt, max_new);
                let result = engine.generate(&slot, &what, &cancel, &live_in, &mut emit);
                drop(slot);
                match result {
                    Ok(FinishReason::Cancelled) => {}
                    Ok(reason) => {
                        let _ = tx.blocking_send(shape.chunk(None, Some(reason.as_str()), false));
                        let _ = tx.blocking_send(shape.usage_chunk(&live_in));
                        let _ = tx.blocking_send(Bytes::from_static(DONE));
                    }
                    Err(e) => {
                        tracing::warn!(provider = "local", error = %e, "generation failed");
                        let event = serde_json::json!({"error": {
                            "message": "the model failed during generation",
                            "type": "server_error", "param": null, "code": "engine_error"}});
                        let _ = tx.blocking_send(frame(event.to_string().as_bytes()));
                    }
                }
            });
            return Ok(LocalAnswer::Stream { frames: rx, live });
        }
        // Non-stream: the caller may go away while we generate; this stops the engine then.
        struct CancelOnDrop(Arc<AtomicBool>);
        impl Drop for CancelOnDrop {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _guard = CancelOnDrop(cancel.clone());
        let live_in = live.clone();
        let done = tokio::task::spawn_blocking(move || {
            let mut text = String::new();
            let mut emit = |piece: &str| {
                text.push_str(piece);
                true
            };
            let what = job.generation(&prompt, max_new);
            let result = engine.generate(&slot, &what, &cancel, &live_in, &mut emit);
            (job, text, result)
        })
        .await
        .map_err(|_| error(UpstreamErrorKind::Protocol))?;
        let (job, text, result) = done;
        let reason = result.map_err(|e| {
            tracing::warn!(provider = "local", error = %e, "generation failed");
            error(UpstreamErrorKind::Status(500))
        })?;
        let shape = Shape {
            id: &id,
            created,
            model: &job.model,
            endpoint: job.endpoint,
        };
        Ok(LocalAnswer::Json(shape.answer(
            &text,
            reason.as_str(),
            &live,
        )))
    }
}

impl Job {
    fn generation<'a>(&'a self, prompt: &'a [u32], max_new: usize) -> Generation<'a> {
        Generation {
            prompt,
            max_new,
            sampler: &self.sampler,
            stops: &self.stops,
        }
    }
}

fn too_long(mut e: UpstreamError, tokens: Option<usize>, context: usize) -> UpstreamError {
    e.client_message = Some(match tokens {
        Some(n) => format!(
            "the prompt is {n} tokens; this model's context is {context} tokens, and the answer needs at least one"
        ),
        None => format!("the prompt is longer than this model's context of {context} tokens"),
    });
    e
}

fn completion_id(endpoint: Endpoint) -> String {
    let mut b = [0u8; 12];
    let _ = getrandom::fill(&mut b);
    let prefix = if endpoint == Endpoint::Chat {
        "chatcmpl-"
    } else {
        "cmpl-"
    };
    let mut id = String::with_capacity(prefix.len() + 24);
    id.push_str(prefix);
    for byte in b {
        id.push_str(&format!("{byte:02x}"));
    }
    id
}

/// The OpenAI wire shapes of one answer.
struct Shape<'a> {
    id: &'a str,
    created: i64,
    model: &'a str,
    endpoint: Endpoint,
}

impl Shape<'_> {
    fn usage(live: &LiveCounts) -> serde_json::Value {
        let prompt = live.prompt.load(Ordering::Relaxed);
        let output = live.output.load(Ordering::Relaxed);
        serde_json::json!({
            "prompt_tokens": prompt,
            "completion_tokens": output,
            "total_tokens": prompt + output,
        })
    }

    /// A stream event: the chunk object around `choices`, plus `usage` when given.
    fn event(&self, choices: serde_json::Value, usage: Option<&LiveCounts>) -> Bytes {
        let object = if self.endpoint == Endpoint::Chat {
            "chat.completion.chunk"
        } else {
            "text_completion"
        };
        let mut body = serde_json::json!({
            "id": self.id, "object": object, "created": self.created, "model": self.model,
            "choices": choices,
        });
        if let Some(live) = usage {
            body["usage"] = Self::usage(live);
        }
        frame(body.to_string().as_bytes())
    }

    fn chunk(&self, text: Option<&str>, finish: Option<&str>, first: bool) -> Bytes {
        let choice = if self.endpoint == Endpoint::Chat {
            let delta = match (first, text) {
                (true, t) => serde_json::json!({"role": "assistant", "content": t.unwrap_or("")}),
                (false, Some(t)) => serde_json::json!({"content": t}),
                (false, None) => serde_json::json!({}),
            };
            serde_json::json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish})
        } else {
            serde_json::json!({"index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish})
        };
        self.event(serde_json::json!([choice]), None)
    }

    fn usage_chunk(&self, live: &LiveCounts) -> Bytes {
        self.event(serde_json::json!([]), Some(live))
    }

    fn answer(&self, text: &str, finish: &str, live: &LiveCounts) -> Bytes {
        let (object, choice) = if self.endpoint == Endpoint::Chat {
            (
                "chat.completion",
                serde_json::json!({"index": 0, "message": {"role": "assistant", "content": text},
                                   "logprobs": null, "finish_reason": finish}),
            )
        } else {
            (
                "text_completion",
                serde_json::json!({"index": 0, "text": text, "logprobs": null, "finish_reason": finish}),
            )
        };
        let body = serde_json::json!({
            "id": self.id, "object": object, "created": self.created, "model": self.model,
            "choices": [choice], "usage": Self::usage(live),
        });
        Bytes::from(body.to_string())
    }
}
