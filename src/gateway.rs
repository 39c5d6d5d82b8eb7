//! The gateway: from a parsed request to an upstream answer, metered.
//!
//! Maps the client's model to its configured route, rewrites the body for the
//! upstream (model name, `stream_options.include_usage`), forwards it through the
//! provider adapter and relays the answer, metering as it flows. HTTP framing of the
//! client side lives in `api/`; persistence in `usage/`.

pub(crate) mod body;
pub mod catalog;
pub mod cost;
mod minimize;
pub mod multipart;
mod provider;
pub mod relay;
mod routing;
pub(crate) mod scan;
mod setup;
pub mod sse;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;

pub use body::{BodyError, Inspected, Request, inspect};
pub use provider::{Provider, UpstreamError, UpstreamErrorKind, anthropic_translation};
pub use relay::Relay;
pub use setup::{ProviderProblem, SetupError};
use wire::Native;
pub use wire::{ProtocolHeaders, Wire};

use crate::billing::PriceSchedule;
use crate::billing::budget::Budgets;
use crate::config::Config;
use crate::error::ApiError;
use crate::idmap::IdMap;
use crate::keys::AuthedKey;
use crate::usage::{Meter, TokenCounts, tokens};

/// The inference endpoints InstaGen serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Chat = 0,
    Completions = 1,
    Embeddings = 2,
    /// `POST /v1/audio/transcriptions`: a multipart upload, held in memory only.
    Transcriptions = 3,
}

impl Endpoint {
    /// Path below the provider's base URL.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Transcriptions => "/audio/transcriptions",
        }
    }

    /// Label stored in usage records.
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat.completions",
            Endpoint::Completions => "completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Transcriptions => "audio.transcriptions",
        }
    }
}

/// Most upstream attempts for one client request (the first try and its failovers).
const MAX_ATTEMPTS: usize = 3;

/// Where one client-facing model goes: its prices and its routes.
pub struct Route {
    /// Shared, so a response can carry it to the request log without a copy.
    pub model_id: Arc<str>,
    pub targets: Vec<Arc<routing::Target>>,
    pub prices: PriceSchedule,
    pub context_length: Option<u64>,
    /// The most tokens of one kind an upstream may report for one request of this model;
    /// a larger count is not billed (our own count is) and is reported to operators.
    pub token_bound: u64,
    /// Caps failovers so a failing fleet is not hammered.
    retries: routing::RetryBudget,
    /// `default_params`: (name, JSON value) used when a request does not give the name.
    defaults: Vec<(String, String)>,
    /// The client format every target of this route serves itself, if any: such a request
    /// is never translated to chat.
    native: Option<Wire>,
}

impl Route {
    /// The request body with the model's default parameters it does not set, or `None`
    /// when it sets them all (or the model has none).
    fn with_defaults(&self, request: &Request<'_>, body: &[u8]) -> Option<Bytes> {
        let Request::Json(inspected) = request else {
            return None;
        };
        let mut missing = self
            .defaults
            .iter()
            .filter(|(k, _)| !inspected.has(k))
            .peekable();
        missing.peek()?;
        let end = body.iter().rposition(|&b| b == b'}')?;
        let mut out = Vec::with_capacity(body.len() + 64);
        out.extend_from_slice(&body[..end]);
        let mut empty = body[..end].iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        for (name, value) in missing {
            if !empty {
                out.push(b',');
            }
            empty = false;
            crate::json::write_str(&mut out, name).ok()?;
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        }
        out.extend_from_slice(&body[end..]);
        Some(Bytes::from(out))
    }
}

/// Who is asking, and the budget their request is reserved against.
pub struct Admitted<'a> {
    pub key: &'a AuthedKey,
    pub budgets: &'a Arc<Budgets>,
    /// Output tokens to reserve when the request sets no `max_tokens`.
    pub reserve_output_tokens: u64,
}

/// What the gateway hands back to the HTTP layer.
pub enum Forwarded {
    /// A complete body from the upstream, passed through unchanged but for the cost in its
    /// usage; JSON unless a content type is given (plain-text transcripts). With what the
    /// request was billed, for the answer's cost headers, and its record's journal write
    /// (awaited before the answer goes out).
    Json(
        Bytes,
        Option<axum::http::HeaderValue>,
        crate::usage::Charged,
        Option<crate::usage::Durable>,
    ),
    /// An SSE stream relayed chunk by chunk.
    Stream(Box<Relay>),
}

pub struct Gateway {
    routes: IdMap<String, Arc<Route>>,
    /// Model ids in config order, for `GET /v1/models`.
    model_ids: Vec<String>,
    /// Extra client-facing names: (alias, model id), in config order.
    aliases: Vec<(String, String)>,
    /// Each name (id or alias) of a route whose every target serves a client format
    /// natively (`Route::native`), as JSON text: only a request in such a format is looked
    /// at for its model before it is translated, and its model compared as written.
    native_names: Vec<(Wire, Box<[u8]>)>,
}

/// The `usage` object of an OpenAI-compatible response or chunk (chat, completions,
/// embeddings, transcriptions, the Responses API), with the details each may carry.
#[derive(Debug, Deserialize, Default, Clone, Copy)]
pub struct UpstreamUsage {
    /// `input_tokens` in the Responses and transcription APIs.
    #[serde(default, alias = "input_tokens")]
    pub prompt_tokens: Option<u64>,
    #[serde(default, alias = "output_tokens")]
    pub completion_tokens: Option<u64>,
    #[serde(default, alias = "input_tokens_details")]
    pub prompt_tokens_details: Option<PromptDetails>,
    #[serde(default, alias = "output_tokens_details")]
    pub completion_tokens_details: Option<CompletionDetails>,
}

/// The parts of a prompt: cache reads (`cached_tokens`, OpenAI's), cache writes
/// (`cache_write_tokens`, as OpenRouter reports them) and the part of those written for an
/// hour (`cache_write_1h_tokens`, ours: what Anthropic reports as `ephemeral_1h`).
#[derive(Debug, Deserialize, Default, Clone, Copy)]
pub struct PromptDetails {
    #[serde(default)]
    pub cached_tokens: Option<u64>,
    #[serde(default)]
    pub cache_write_tokens: Option<u64>,
    #[serde(default)]
    pub cache_write_1h_tokens: Option<u64>,
}

/// The parts of an answer: the tokens spent reasoning.
#[derive(Debug, Deserialize, Default, Clone, Copy)]
pub struct CompletionDetails {
    #[serde(default)]
    pub reasoning_tokens: Option<u64>,
}

impl UpstreamUsage {
    /// A `usage` value as an upstream wrote it; `None` when it is `null` or does not
    /// parse (the counts are then estimated).
    pub fn read(json: &[u8]) -> Option<Self> {
        body::read_json::<Option<Self>>(json).flatten()
    }

    pub fn counts(&self) -> TokenCounts {
        let prompt = self.prompt_tokens_details.unwrap_or_default();
        let write_1h = prompt.cache_write_1h_tokens.unwrap_or(0);
        let writes = prompt.cache_write_tokens.unwrap_or(0).max(write_1h);
        TokenCounts {
            input: self.prompt_tokens.unwrap_or(0),
            cached_input: prompt.cached_tokens.unwrap_or(0),
            cache_write_5m: writes - write_1h,
            cache_write_1h: write_1h,
            output: self.completion_tokens.unwrap_or(0),
            reasoning: self
                .completion_tokens_details
                .and_then(|d| d.reasoning_tokens)
                .unwrap_or(0),
            estimated: false,
        }
    }
}

impl Gateway {
    pub fn from_config(config: &Config) -> Result<Self, SetupError> {
        Self::build(&config.providers, &config.models)
    }

    /// A gateway over these providers and models; every route must name a provider.
    pub fn build(
        provider_configs: &[crate::config::ProviderConfig],
        models: &[crate::config::ModelConfig],
    ) -> Result<Self, SetupError> {
        let mut providers = HashMap::new();
        for p in provider_configs {
            providers.insert(p.name.clone(), Arc::new(Provider::from_config(p)?));
        }
        let mut routes = IdMap::default();
        let mut model_ids = Vec::new();
        let mut aliases = Vec::new();
        for m in models {
            let default_upstream = m.upstream_model.clone().unwrap_or_else(|| m.id.clone());
            let mut targets = Vec::new();
            for r in m.route_list() {
                let provider = providers.get(&r.provider).cloned().ok_or_else(|| {
                    SetupError::UnknownProvider {
                        model: m.id.clone(),
                        provider: r.provider.clone(),
                    }
                })?;
                let upstream = r.upstream_model.unwrap_or_else(|| default_upstream.clone());
                targets.push(Arc::new(routing::Target::new(
                    provider, upstream, r.weight, r.priority,
                )));
            }
            let base = m.prices();
            let mut changes = Vec::with_capacity(m.price_changes.len());
            for c in &m.price_changes {
                let at = crate::time::parse_rfc3339(&c.effective_from).map_err(|source| {
                    SetupError::PriceDate {
                        model: m.id.clone(),
                        source,
                    }
                })?;
                changes.push((at, c.prices()));
            }
            let prices = PriceSchedule { base, changes };
            let native = [Wire::Responses, Wire::Messages]
                .into_iter()
                .find(|&w| !targets.is_empty() && targets.iter().all(|t| t.provider.serves(w)));
            routes.insert(
                m.id.clone(),
                Arc::new(Route {
                    model_id: Arc::from(m.id.as_str()),
                    targets,
                    prices,
                    context_length: m.context_length,
                    token_bound: m.token_bound(),
                    retries: routing::RetryBudget::default(),
                    defaults: m
                        .default_params
                        .iter()
                        .map(|(k, v)| (k.clone(), v.to_string()))
                        .collect(),
                    native,
                }),
            );
            let route = routes.get(&m.id).cloned();
            for alias in &m.aliases {
                if let Some(route) = &route
                    && routes.insert(alias.clone(), route.clone()).is_some()
                {
                    return Err(SetupError::DuplicateAlias {
                        model: m.id.clone(),
                        alias: alias.clone(),
                    });
                }
                aliases.push((alias.clone(), m.id.clone()));
            }
            model_ids.push(m.id.clone());
        }
        let mut native_names = Vec::new();
        for (name, route) in routes.iter() {
            if let (Some(wire), Ok(text)) = (route.native, serde_json::to_vec(name)) {
                native_names.push((wire, text.into_boxed_slice()));
            }
        }
        Ok(Self {
            routes,
            model_ids,
            aliases,
            native_names,
        })
    }

    pub fn model_ids(&self) -> &[String] {
        &self.model_ids
    }

    /// The names `key` may call, in config order (ids, then aliases): models it is allowed
    /// and, for a region-restricted key, that have a route in one of its regions.
    pub fn visible_to<'a>(&'a self, key: &'a AuthedKey) -> impl Iterator<Item = &'a str> + 'a {
        self.model_ids
            .iter()
            .map(String::as_str)
            .chain(self.aliases.iter().map(|(a, _)| a.as_str()))
            .filter(move |name| self.usable_by(key, name))
    }

    /// Whether `key` may call the model (or alias) `name` and has a route for it.
    pub fn usable_by(&self, key: &AuthedKey, name: &str) -> bool {
        self.routes.get(name).is_some_and(|r| {
            key.may_use(&r.model_id)
                && r.targets
                    .iter()
                    .any(|t| key.may_process_in(t.provider.region()))
        })
    }

    /// Every model's route (prices, targets, context length), in config order.
    pub fn models(&self) -> impl Iterator<Item = &Route> + '_ {
        self.model_ids
            .iter()
            .filter_map(|id| self.routes.get(id).map(Arc::as_ref))
    }

    /// The route health of every model, for operators: provider, tier, weight, in flight,
    /// latency and whether it is in rotation.
    pub fn route_health(&self) -> serde_json::Value {
        let now = crate::time::now_ms();
        let models: Vec<_> = self
            .model_ids
            .iter()
            .filter_map(|id| self.routes.get(id))
            .map(|route| {
                let targets: Vec<_> = route.targets.iter().map(|t| t.health(now)).collect();
                serde_json::json!({"model": &*route.model_id, "routes": targets})
            })
            .collect();
        serde_json::Value::Array(models)
    }

    /// Starts the active health checks of every route whose provider has them on.
    pub fn spawn_health_checks(
        &self,
        tasks: &tokio_util::task::TaskTracker,
        stop: &tokio_util::sync::CancellationToken,
    ) {
        for route in self.routes.values() {
            for target in &route.targets {
                let Some(every) = target.provider.probe_interval() else {
                    continue;
                };
                let (target, stop) = (target.clone(), stop.clone());
                tasks.spawn(async move {
                    let mut tick = tokio::time::interval(every);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    loop {
                        tokio::select! {
                            () = stop.cancelled() => break,
                            _ = tick.tick() => {
                                if target.provider.probe().await {
                                    target.probe_passed();
                                } else {
                                    target.probe_failed();
                                }
                            }
                        }
                    }
                });
            }
        }
    }

    /// The context window of a model (or alias), when configured.
    pub fn context_length(&self, name: &str) -> Option<u64> {
        self.routes.get(name).and_then(|r| r.context_length)
    }

    /// The `/v1/models` entry of a model: owner, context length and current prices.
    pub fn model_card(&self, id: &str) -> Option<serde_json::Value> {
        let route = self.routes.get(id)?;
        let p = route.prices.at(crate::time::now_ms());
        let usd = |price: crate::billing::Price| {
            crate::billing::Money::from_nanos(price.nanos_per_mtok()).to_string()
        };
        let mut card = serde_json::json!({
            "id": id,
            "object": "model",
            "created": 0,
            "owned_by": "instagen",
            "pricing": {
                "input_usd_per_mtok": usd(p.input),
                "cached_input_usd_per_mtok": usd(p.cached_input),
                "output_usd_per_mtok": usd(p.output),
            },
        });
        if let Some(n) = route.context_length {
            card["context_length"] = n.into();
        }
        Some(card)
    }

    /// Whether `body` asks for a model whose every route serves `wire` natively. The
    /// model's JSON text is found by a scan that stops there and builds nothing, and is
    /// compared as written (a name spelled with escapes is translated, and still served
    /// natively); only when some route serves `wire` so.
    fn native_only(&self, wire: Wire, body: &[u8]) -> bool {
        if !self.native_names.iter().any(|(w, _)| *w == wire) {
            return false;
        }
        let Some((start, end)) = scan::first_member(body, "model") else {
            return false;
        };
        let model = &body[start..end];
        self.native_names
            .iter()
            .any(|(w, name)| *w == wire && **name == *model)
    }

    /// Forwards one admitted request; the answer comes with the configured model id that
    /// served it (for the request log). A Responses or Messages request is translated to
    /// chat first (unless the route's provider serves it natively) and its answer back.
    /// Finishes `meter` itself on every error path.
    ///
    /// An `async move` block rather than an `async fn`: an async fn's body moves its
    /// arguments into locals and keeps their first places too, so the meter and the body
    /// took their space twice in this future, which every request builds and moves.
    #[allow(clippy::too_many_arguments, clippy::manual_async_fn)]
    pub fn forward<'a>(
        &'a self,
        endpoint: Endpoint,
        wire: Wire,
        content_type: Option<&'a str>,
        body: Bytes,
        client_headers: &'a axum::http::HeaderMap,
        admitted: Admitted<'a>,
        mut meter: Meter,
    ) -> impl Future<Output = Result<(Forwarded, Arc<str>), ApiError>> + 'a {
        async move {
            // A request for a route whose every provider serves its format natively is not
            // translated: routing reads its skeleton, split from the same fields the native
            // body is allow-listed from. A request that does not translate may still go to a
            // provider serving its format natively: routing goes on with its skeleton, and
            // the error waits for a target that would need the translation.
            let mut split = match self.native_only(wire, &body) {
                true => body::fields(&body).ok(),
                false => None,
            };
            let skeleton = split.as_deref().and_then(|f| wire.skeleton(f));
            let (chat, untranslatable) = match skeleton {
                Some(skeleton) => (Chat::Skeleton(skeleton, body.clone()), None),
                None => match wire.to_chat(&body) {
                    Ok(Some(chat)) => (Chat::Translated(chat), None),
                    Ok(None) => (Chat::Client(body.clone()), None),
                    Err(e) => {
                        split = body::fields(&body).ok();
                        match split.as_deref().and_then(|f| wire.skeleton(f)) {
                            Some(skeleton) => (Chat::Skeleton(skeleton, body.clone()), Some(e)),
                            None => {
                                let err = ApiError::InvalidBody(e);
                                meter.finish(
                                    err.status().as_u16(),
                                    Some(err.kind()),
                                    TokenCounts::default(),
                                );
                                return Err(err);
                            }
                        }
                    }
                },
            };
            let native = (wire != Wire::OpenAi).then_some(Native {
                wire,
                body: &body,
                fields: split.as_deref(),
                headers: client_headers,
                untranslatable: untranslatable.as_ref(),
            });
            let revoked = admitted.key.revoked.clone();
            let attempt = tokio::select! {
                biased;
                r = self.try_forward(endpoint, content_type, &chat, native, admitted, &mut meter) => r,
                // Access ended while the upstream worked: cut the request, bill the prompt.
                () = revoked.cancelled() => {
                    meter.finish(
                        ApiError::AccessRevoked.status().as_u16(),
                        Some(ApiError::AccessRevoked.kind()),
                        TokenCounts {
                            input: tokens::estimate_input(endpoint, chat.prompt()),
                            estimated: true,
                            ..TokenCounts::default()
                        },
                    );
                    return Err(ApiError::AccessRevoked);
                }
            };
            match attempt {
                Ok((Answer::Json(json, content_type, charged, durable), model)) => {
                    Ok((Forwarded::Json(json, content_type, charged, durable), model))
                }
                Ok((Answer::Stream(parts), model)) => Ok((
                    Forwarded::Stream(Box::new(Relay::new(
                        *parts,
                        meter,
                        chat.into_prompt(),
                        endpoint,
                    ))),
                    model,
                )),
                Err(err) => {
                    meter.finish(
                        err.status().as_u16(),
                        Some(err.kind()),
                        TokenCounts::default(),
                    );
                    Err(err)
                }
            }
        }
    }

    /// Counts a Messages request's input tokens for `key`: `(count, exact)`. Exact when the
    /// route's provider has the model's own count (Anthropic's endpoint, the built-in
    /// engine's tokenizer); our o200k estimate otherwise. Nothing is billed or recorded.
    pub async fn count_tokens(
        &self,
        body: &[u8],
        key: &AuthedKey,
        protocol_headers: &ProtocolHeaders,
    ) -> Result<(u64, bool), ApiError> {
        let chat = wire::messages::count_to_chat(body).map_err(ApiError::InvalidBody)?;
        let fields = body::fields(body).map_err(ApiError::InvalidBody)?;
        let model: String = body::field(&fields, "model")
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .unwrap_or_default();
        let route = self
            .routes
            .get(&model)
            .ok_or_else(|| ApiError::ModelNotFound(model.clone()))?;
        if !key.may_use(&route.model_id) {
            return Err(ApiError::ModelNotAllowed(route.model_id.to_string()));
        }
        let in_region = |t: &routing::Target| key.may_process_in(t.provider.region());
        let Some(i) = routing::pick(&route.targets, &[], in_region) else {
            return Err(match route.targets.iter().any(|t| in_region(t)) {
                true => ApiError::NoRoute(route.model_id.to_string()),
                false => ApiError::RegionRestricted(route.model_id.to_string()),
            });
        };
        let target = &route.targets[i];
        match target
            .provider
            .count_tokens(
                body,
                chat.as_bytes(),
                &target.upstream_model,
                protocol_headers,
            )
            .await
        {
            Some(Ok(n)) => Ok((n.min(route.token_bound), true)),
            Some(Err(provider::ApiCountError::Body(e))) => Err(ApiError::InvalidBody(e)),
            Some(Err(provider::ApiCountError::Upstream(e))) => Err(ApiError::Upstream(e)),
            None => Ok((
                tokens::estimate_input(Endpoint::Chat, chat.as_bytes()),
                false,
            )),
        }
    }

    async fn try_forward(
        &self,
        endpoint: Endpoint,
        content_type: Option<&str>,
        body: &Chat,
        native: Option<Native<'_>>,
        admitted: Admitted<'_>,
        meter: &mut Meter,
    ) -> Result<(Answer, Arc<str>), ApiError> {
        let wire = native.as_ref().map_or(Wire::OpenAi, |n| n.wire);
        let Admitted {
            key,
            budgets,
            reserve_output_tokens,
        } = admitted;
        let request = body
            .parse(endpoint, content_type)
            .map_err(ApiError::InvalidBody)?;
        let model = request.model();
        let route = self
            .routes
            .get(model)
            .ok_or_else(|| ApiError::ModelNotFound(model.to_owned()))?;
        if !key.may_use(&route.model_id) {
            return Err(ApiError::ModelNotAllowed(route.model_id.to_string()));
        }
        let patched;
        let with_defaults = body
            .chat_body()
            .and_then(|chat| route.with_defaults(&request, chat));
        let request = match with_defaults {
            Some(with_defaults) => {
                patched = with_defaults;
                Request::parse(endpoint, content_type, &patched).map_err(ApiError::InvalidBody)?
            }
            None => request,
        };
        let stream = request.stream() && matches!(endpoint, Endpoint::Chat | Endpoint::Completions);
        // The prices in force when the request arrived, the time its record is billed at.
        let prices = route.prices.at(meter.started_ms());
        meter.route(&route.model_id, None, prices, stream);
        // Reserve an upper estimate before any upstream call; settled to the exact cost.
        let output = match endpoint {
            Endpoint::Embeddings => 0,
            _ => request
                .max_tokens()
                .unwrap_or(reserve_output_tokens)
                .min(route.token_bound),
        };
        // Text is ~3 bytes a token; an uploaded file is not text and is not counted.
        let input = match endpoint {
            Endpoint::Transcriptions => 16,
            _ => body.prompt().len() as u64 / 3 + 16,
        };
        // Bounded counts at capped prices always fit; over-reserving is the safe side anyway.
        let estimate = prices
            .cost(&TokenCounts {
                input,
                output,
                ..TokenCounts::default()
            })
            .map_or(i64::MAX, |m| m.nanos());
        let reservation = budgets
            .reserve_shared(
                &key.account_id,
                &key.key_id,
                key.spend_limit_nanos,
                estimate,
            )
            .await
            .map_err(ApiError::Quota)?;
        meter.reserve(reservation);
        // Jurisdiction: a region-restricted key is never routed outside its regions.
        let in_region = |t: &routing::Target| key.may_process_in(t.provider.region());
        if !route.targets.iter().any(|t| in_region(t)) {
            return Err(ApiError::RegionRestricted(route.model_id.to_string()));
        }
        // Failover before the first byte: a retryable failure tries another route, at most
        // MAX_ATTEMPTS in all; the record carries the route that served and the attempts.
        let mut tried_at = [0usize; MAX_ATTEMPTS];
        let mut attempts = 0;
        let mut native_used;
        let (target, in_flight, response) = loop {
            let Some(i) = routing::pick(&route.targets, &tried_at[..attempts], in_region) else {
                return Err(ApiError::NoRoute(route.model_id.to_string()));
            };
            // Never past the array: the loop goes on only while attempts < MAX_ATTEMPTS.
            if let Some(slot) = tried_at.get_mut(attempts) {
                *slot = i;
                attempts += 1;
            }
            let tried = &tried_at[..attempts];
            if tried.len() == 1 {
                route.retries.deposit();
            }
            let target = route.targets[i].clone();
            meter.route(
                &route.model_id,
                Some(target.provider.shared_name()),
                prices,
                stream,
            );
            meter.set_region(target.provider.region());
            meter.set_attempts(tried.len());
            let served = native.as_ref().filter(|n| target.provider.serves(n.wire));
            native_used = served.is_some();
            if let (None, Some(why)) = (served, native.as_ref().and_then(|n| n.untranslatable)) {
                return Err(ApiError::InvalidBody(why.clone()));
            }
            let upstream_body = target
                .provider
                .build_body(endpoint, &request, served, &target.upstream_model, stream)
                .map_err(ApiError::InvalidBody)?;
            let in_flight = target.start();
            target.take_turn().await;
            let sent = std::time::Instant::now();
            match target.provider.send(endpoint, upstream_body).await {
                Ok(response) => {
                    target.observe_latency(
                        u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX),
                    );
                    target.succeeded();
                    break (target, in_flight, response);
                }
                Err(e) if e.is_retryable() => {
                    target.failed(e.retry_after);
                    if tried.len() >= MAX_ATTEMPTS
                        || routing::pick(&route.targets, tried, in_region).is_none()
                        || !route.retries.withdraw()
                    {
                        return Err(ApiError::Upstream(e));
                    }
                    tracing::info!(
                        provider = target.provider.name(),
                        attempt = tried.len(),
                        "failing over to another route"
                    );
                }
                Err(e) => return Err(ApiError::Upstream(e)),
            }
        };
        let client_wants_usage = request.client_wants_usage();
        drop(request);
        if stream {
            let (body, live) = response.into_stream();
            let client = match (native_used, wire.encoder(&route.model_id)) {
                (true, _) => relay::ClientWire::Native(wire),
                (false, Some(encoder)) => relay::ClientWire::Encode(encoder),
                (false, None) => relay::ClientWire::Chat,
            };
            let parts = StreamParts {
                body,
                live,
                client_wants_usage,
                idle_timeout: target.provider.idle_timeout(),
                in_flight,
                translator: target
                    .provider
                    .stream_translator(native_used.then_some(wire)),
                client,
                token_bound: route.token_bound,
                revoked: key.revoked.clone(),
            };
            return Ok((Answer::Stream(Box::new(parts)), route.model_id.clone()));
        }
        // Transcripts may be plain text, SRT or VTT: keep the upstream's content type.
        let content_type = match endpoint {
            Endpoint::Transcriptions => response
                .content_type()
                .and_then(|v| axum::http::HeaderValue::from_bytes(v.as_bytes()).ok()),
            _ => None,
        };
        let json = target.provider.read_body(response, native_used).await?;
        drop(in_flight);
        // A translated answer is read once, its usage with it. Otherwise one pass finds
        // `usage`, and the cost is spliced in at the same place below.
        let translated = match native_used || matches!(wire, Wire::OpenAi) {
            true => None,
            false => Some(
                wire::ChatAnswer::parse(&json).ok_or_else(|| target.provider.protocol_error())?,
            ),
        };
        let usage_span = match translated {
            Some(_) => None,
            None => cost::value_span(&json, &["usage"]),
        };
        let usage = match (&translated, native_used, wire) {
            (Some(answer), ..) => answer.usage(),
            (None, true, Wire::Messages) => usage_span.and_then(|(start, end)| {
                provider::anthropic_translation::reported_usage(&json[start..end])
            }),
            (None, ..) => {
                usage_span.and_then(|(start, end)| UpstreamUsage::read(&json[start..end]))
            }
        };
        let reported = usage
            .filter(|u| u.prompt_tokens.is_some())
            .and_then(|u| meter.admit_reported(u.counts(), route.token_bound));
        let counts = match reported {
            Some(counts) => counts,
            None => TokenCounts {
                input: tokens::estimate_input(endpoint, body.prompt()),
                output: match endpoint {
                    Endpoint::Embeddings => 0,
                    Endpoint::Transcriptions => tokens::estimate_transcript(&json),
                    _ => tokens::estimate_output(&json),
                },
                estimated: true,
                ..TokenCounts::default()
            },
        };
        // In the client's format: a translated answer goes back, with the billed counts
        // and their cost; OpenAI's wire is chat's own, so a chat answer (or a native one)
        // goes back as it came, the cost spliced in where `usage` was found.
        let charged = meter.quote(counts);
        let json = match translated {
            None => usage_span
                .filter(|&(start, _)| json[start..].starts_with(b"{"))
                .and_then(|span| cost::annotate_at(&json, span, &charged))
                .unwrap_or(json),
            Some(answer) => wire
                .answer(answer, &route.model_id, counts, &charged)
                .ok_or_else(|| target.provider.protocol_error())?,
        };
        // Recorded before the body goes out, and journaled before it is sent (the caller
        // awaits the write): the client's last byte follows the record.
        let durable = meter.finish_durable(200, None, counts);
        Ok((
            Answer::Json(json, content_type, charged, durable),
            route.model_id.clone(),
        ))
    }
}

/// The chat request routing reads: the client's own body, a translation's, whose fields
/// are known without parsing it again, or a skeleton of what routing needs (the client's
/// body then goes out natively, or not at all).
enum Chat {
    Client(Bytes),
    Translated(wire::ChatBody),
    /// What routing needs (`Wire::skeleton`), and the client's body.
    Skeleton(wire::Skeleton, Bytes),
}

impl Chat {
    /// The chat body the route's default parameters are added to: none for a skeleton,
    /// whose request goes out as the client wrote it (defaults are chat parameters).
    fn chat_body(&self) -> Option<&[u8]> {
        match self {
            Chat::Client(body) => Some(body),
            Chat::Translated(chat) => Some(chat.as_bytes()),
            Chat::Skeleton(..) => None,
        }
    }

    /// The body holding the prompt, for estimates: a skeleton has none, the client's
    /// body has it.
    fn prompt(&self) -> &[u8] {
        match self {
            Chat::Client(body) | Chat::Skeleton(_, body) => body,
            Chat::Translated(chat) => chat.as_bytes(),
        }
    }

    /// `prompt`, owned.
    fn into_prompt(self) -> Bytes {
        match self {
            Chat::Client(body) | Chat::Skeleton(_, body) => body,
            Chat::Translated(chat) => chat.into_bytes(),
        }
    }

    fn parse(
        &self,
        endpoint: Endpoint,
        content_type: Option<&str>,
    ) -> Result<Request<'_>, BodyError> {
        match self {
            Chat::Client(body) => Request::parse(endpoint, content_type, body),
            Chat::Translated(chat) => Request::translated(endpoint, chat),
            Chat::Skeleton(skeleton, _) => Ok(skeleton.request()),
        }
    }
}

enum Answer {
    Json(
        Bytes,
        Option<axum::http::HeaderValue>,
        crate::usage::Charged,
        Option<crate::usage::Durable>,
    ),
    Stream(Box<StreamParts>),
}

pub(crate) struct StreamParts {
    body: provider::ByteStream,
    /// The built-in engine's token counts so far (exact even if the client leaves).
    live: Option<Arc<crate::engine::LiveCounts>>,
    client_wants_usage: bool,
    idle_timeout: std::time::Duration,
    in_flight: routing::InFlight,
    /// Set when the provider streams another wire format than OpenAI's.
    translator: Option<provider::EventTranslator>,
    /// What the client is sent: chat chunks, their translation, or the native events.
    client: relay::ClientWire,
    /// The route's bound on reported token counts.
    token_bound: u64,
    /// Cancelled when the key stops being usable: the stream is cut.
    revoked: tokio_util::sync::CancellationToken,
}
