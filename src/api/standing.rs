//! What a key may ask about itself on `/v1`: the metadata record of one of its
//! account's requests (`GET /v1/generations/{id}`) and its own standing (`GET /v1/key`):
//! limits, usage and spend, what is left of its spend limit and rate limits. Never
//! content: there is none to give.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::api::openai::{authenticate, limited};
use crate::app::{AppState, RequestContext};
use crate::billing::Money;
use crate::error::ApiError;
use crate::limits::Quota;
use crate::store::UsageStats;
use crate::time::{day_start_ms, format_rfc3339, month_start_ms, now_ms};
use crate::usage::UsageRecord;

/// An amount as an exact JSON number (nine decimals), written from nano-dollars.
fn usd_number(nanos: i64) -> Option<Box<RawValue>> {
    RawValue::from_string(Money::from_nanos(nanos).to_string()).ok()
}

/// The `{"data": …}` envelope (serialized directly: a JSON value would turn exact amounts
/// into floats).
#[derive(Serialize)]
struct Data<T> {
    data: T,
}

/// The metadata record of one request, as `/v1/generations/{id}` and the management API's
/// request log give it.
#[derive(Serialize)]
pub(crate) struct Generation<'a> {
    pub(crate) id: &'a str,
    key_id: &'a str,
    endpoint: &'a str,
    model: Option<&'a str>,
    provider: Option<&'a str>,
    region: Option<&'a str>,
    stream: bool,
    status: u16,
    error: Option<&'a str>,
    created_at: String,
    pub(crate) started_ms: i64,
    finished_ms: i64,
    latency_us: u64,
    time_to_first_token_us: Option<u64>,
    attempts: u32,
    tokens: Tokens,
    estimated: bool,
    cost: Option<Box<RawValue>>,
    cost_usd: String,
}

#[derive(Serialize)]
struct Tokens {
    input: u64,
    cached_input: u64,
    cache_write_5m: u64,
    cache_write_1h: u64,
    output: u64,
    reasoning: u64,
}

impl<'a> From<&'a UsageRecord> for Generation<'a> {
    fn from(r: &'a UsageRecord) -> Self {
        Self {
            id: &r.request_id,
            key_id: &r.key_id,
            endpoint: &r.endpoint,
            model: r.model.as_deref(),
            provider: r.provider.as_deref().filter(|p| !p.is_empty()),
            region: r.region.as_deref(),
            stream: r.stream,
            status: r.status,
            error: r.error_kind.as_deref(),
            created_at: format_rfc3339(r.started_ms),
            started_ms: r.started_ms,
            finished_ms: r.finished_ms,
            latency_us: r.latency_us,
            time_to_first_token_us: r.ttft_us,
            attempts: r.attempts,
            tokens: Tokens {
                input: r.input_tokens,
                cached_input: r.cached_input_tokens,
                cache_write_5m: r.cache_write_5m_tokens,
                cache_write_1h: r.cache_write_1h_tokens,
                output: r.output_tokens,
                reasoning: r.reasoning_tokens,
            },
            estimated: r.estimated,
            cost: usd_number(r.cost_nanos),
            cost_usd: Money::from_nanos(r.cost_nanos).to_string(),
        }
    }
}

/// `GET /v1/generations/{request_id}`: the record of one of the key's account's requests
/// (its `x-request-id`); 404 for another account's, an unknown one, or one whose record
/// the writer has not stored yet (within a second or two of the answer).
pub async fn generation(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestContext>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let _in_flight = state.limits.enter(ctx.client_ip).await.map_err(limited)?;
    let key = authenticate(&state, &ctx, &headers).await?;
    let record = state
        .store
        .usage_record(&key.account_id, &id)
        .await
        .map_err(|_| ApiError::StoreUnavailable)?
        .ok_or(ApiError::GenerationNotFound(id))?;
    Ok(Json(Data {
        data: Generation::from(&record),
    })
    .into_response())
}

#[derive(Serialize)]
struct Standing {
    id: String,
    name: String,
    description: String,
    prefix: String,
    status: crate::store::KeyStatus,
    created_at: String,
    expires_at: Option<String>,
    allowed_models: Option<Vec<String>>,
    allowed_regions: Option<Vec<String>>,
    limits: Limits,
    usage: Usage,
    /// What the key may still spend in its limit's period; `None` without a limit.
    spend_limit_remaining: Option<Box<RawValue>>,
    spend_limit_remaining_usd: Option<String>,
    /// The account's prepaid balance available to new requests, when billing is prepaid.
    prepaid_balance_usd: Option<String>,
    rate_limit: RateLimit,
}

#[derive(Serialize)]
struct Limits {
    rpm: Option<u64>,
    tpm: Option<u64>,
    max_concurrent: Option<u32>,
    account_rpm: Option<u64>,
    account_tpm: Option<u64>,
    spend_limit_usd: Option<String>,
    spend_limit_period: Option<String>,
}

#[derive(Serialize)]
struct Usage {
    today: UsageStats,
    this_month: UsageStats,
    total: UsageStats,
}

#[derive(Serialize)]
struct RateLimit {
    requests: Option<Remaining>,
    tokens: Option<Remaining>,
}

/// What is left of a per-minute limit, and when more frees up.
#[derive(Serialize)]
struct Remaining {
    limit: u64,
    remaining: u64,
    reset_seconds: u64,
}

impl From<Quota> for Remaining {
    fn from(q: Quota) -> Self {
        Self {
            limit: q.limit,
            remaining: q.remaining,
            reset_seconds: q.reset_s,
        }
    }
}

/// A key's spend today and this month (UTC), and in its spend limit's period.
pub(crate) struct KeySpend {
    pub today: UsageStats,
    pub this_month: UsageStats,
    /// Spent in the limit's period (`day`, `month`, else all time), with what this
    /// instance has settled but not yet written and what is in flight.
    pub in_period_nanos: i64,
    /// Where that period starts (epoch ms; 0 for all time).
    pub period_start_ms: i64,
}

pub(crate) async fn key_spend(
    state: &AppState,
    info: &crate::store::KeyInfo,
) -> Result<KeySpend, crate::store::StoreError> {
    let now = now_ms();
    let (day, month) = (day_start_ms(now), month_start_ms(now));
    let (today, this_month) = state
        .store
        .key_usage_day_and_month(&info.id, day, month)
        .await?;
    let (stored, period_start_ms) = match info.limits.spend_limit_period.as_deref() {
        Some("day") => (today.cost_nanos, day),
        Some("month") => (this_month.cost_nanos, month),
        _ => (info.usage.all_time.cost_nanos, 0),
    };
    let in_period_nanos = state.budgets.key_spent(&info.id).unwrap_or(stored);
    Ok(KeySpend {
        today,
        this_month,
        in_period_nanos,
        period_start_ms,
    })
}

/// `GET /v1/key`: the asking key's own standing. Usage days and months are UTC.
pub async fn key(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let _in_flight = state.limits.enter(ctx.client_ip).await.map_err(limited)?;
    let key = authenticate(&state, &ctx, &headers).await?;
    let info = state
        .store
        .key(&key.account_id, &key.key_id)
        .await
        .map_err(|_| ApiError::StoreUnavailable)?;
    let KeySpend {
        today,
        this_month,
        in_period_nanos,
        ..
    } = key_spend(&state, &info)
        .await
        .map_err(|_| ApiError::StoreUnavailable)?;
    let period = info.limits.spend_limit_period.clone();
    let remaining = key
        .spend_limit_nanos
        .map(|limit| limit.saturating_sub(in_period_nanos).max(0));
    let rates = state.limits.remaining(&key).await;
    let q = key.limits;
    let standing = Standing {
        id: info.id,
        name: info.name,
        description: info.description,
        prefix: info.prefix,
        status: info.status,
        created_at: format_rfc3339(info.created_ms),
        expires_at: info.expires_ms.map(format_rfc3339),
        allowed_models: key.allowed_models.clone(),
        allowed_regions: key.allowed_regions.clone(),
        limits: Limits {
            rpm: q.key_rpm,
            tpm: q.key_tpm,
            max_concurrent: q.max_concurrent,
            account_rpm: q.account_rpm,
            account_tpm: q.account_tpm,
            spend_limit_usd: info.limits.spend_limit_usd,
            spend_limit_period: key
                .spend_limit_nanos
                .map(|_| period.unwrap_or("total".into())),
        },
        usage: Usage {
            today,
            this_month,
            total: info.usage.all_time,
        },
        spend_limit_remaining: remaining.and_then(usd_number),
        spend_limit_remaining_usd: remaining.map(|n| Money::from_nanos(n).to_string()),
        prepaid_balance_usd: state
            .budgets
            .prepaid()
            .then(|| Money::from_nanos(state.budgets.available(&key.account_id)).to_string()),
        rate_limit: RateLimit {
            requests: rates.requests.map(Remaining::from),
            tokens: rates.tokens.map(Remaining::from),
        },
    };
    Ok(Json(Data { data: standing }).into_response())
}
