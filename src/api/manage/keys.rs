//! The access-key lifecycle under `/api/v1/accounts/{account}/keys`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::json;

use super::auth::{Need, Principal};
use super::error::{MgmtError, parse};
use crate::admin;
use crate::app::AppState;
use crate::billing::Money;
use crate::store::{KeyLimits, KeySpec, KeyStatus, KeyUpdate};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Include deleted keys (status `deleted`), whose past usage stays attributed to them.
    #[serde(default)]
    include_deleted: bool,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
}

pub async fn list(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Read).await?;
    let axum::extract::Query(q) =
        query.map_err(|e| super::page::query_error(&e, "include_deleted"))?;
    let paging = super::page::PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = paging.limit()?;
    // Paged in the store: a page reads its own keys, not the account's whole key table.
    let keys = state
        .store
        .list_keys_page(
            &account,
            q.include_deleted,
            paging.after_creation()?,
            i64::try_from(limit + 1).unwrap_or(i64::MAX),
        )
        .await?;
    Ok(super::page::page_of(keys, limit, |k| {
        super::page::by_creation(k.created_ms, &k.id)
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyCreate {
    name: String,
    #[serde(default)]
    description: String,
    /// Model ids this key may use; omitted or null means all.
    #[serde(default)]
    allowed_models: Option<Vec<String>>,
    /// Expiry as epoch milliseconds.
    #[serde(default)]
    expires_ms: Option<i64>,
    #[serde(default)]
    limits: KeyLimits,
    /// Provider regions the key's requests may be processed in; omitted or null means any.
    #[serde(default)]
    allowed_regions: Option<Vec<String>>,
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
    body: super::error::Body,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Write).await?;
    let req: KeyCreate = parse(&body)?;
    let spec = KeySpec {
        name: req.name,
        description: req.description,
        allowed_models: req.allowed_models,
        expires_ms: req.expires_ms,
        limits: req.limits,
        allowed_regions: req.allowed_regions,
    };
    let created = admin::create_key_capped(
        &state.store,
        state.keys.hasher(),
        &p.actor(),
        &account,
        spec,
        state.accounts.max_keys_per_account,
    )
    .await?;
    let key = state.store.key(&account, &created.id).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"secret": created.secret.expose(), "key": key})),
    )
        .into_response())
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path((account, id)): Path<(String, String)>,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Read).await?;
    let key = state.store.key(&account, &id).await?;
    let spend = crate::api::standing::key_spend(&state, &key).await?;
    let limit = key
        .limits
        .spend_limit_usd
        .as_deref()
        .and_then(|l| Money::parse_usd(l).ok());
    let usd = |n: i64| Money::from_nanos(n).to_string();
    let view = KeyView {
        spend: Spend {
            period: key
                .limits
                .spend_limit_period
                .as_deref()
                .filter(|_| limit.is_some())
                .unwrap_or("total"),
            period_start_ms: spend.period_start_ms,
            spent_in_period_usd: usd(spend.in_period_nanos),
            limit_usd: limit.map(|l| usd(l.nanos())),
            remaining_usd: limit
                .map(|l| usd(l.nanos().saturating_sub(spend.in_period_nanos).max(0))),
            today: spend.today,
            this_month: spend.this_month,
        },
        key: &key,
    };
    Ok(axum::Json(view).into_response())
}

/// One key with its spend: today, this month, and in its spend limit's period.
#[derive(Serialize)]
struct KeyView<'a> {
    #[serde(flatten)]
    key: &'a crate::store::KeyInfo,
    spend: Spend<'a>,
}

#[derive(Serialize)]
struct Spend<'a> {
    today: crate::store::UsageStats,
    this_month: crate::store::UsageStats,
    /// `day`, `month` or `total` (also without a limit).
    period: &'a str,
    period_start_ms: i64,
    spent_in_period_usd: String,
    limit_usd: Option<String>,
    remaining_usd: Option<String>,
}

/// Distinguishes "absent" (leave as is) from `null` (clear) for optional fields.
pub(super) fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPatch {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, deserialize_with = "present")]
    allowed_models: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "present")]
    expires_ms: Option<Option<i64>>,
    #[serde(default, deserialize_with = "present")]
    allowed_regions: Option<Option<Vec<String>>>,
    #[serde(default)]
    limits: Option<KeyLimits>,
    #[serde(default)]
    enabled: Option<bool>,
}

pub async fn update(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path((account, id)): Path<(String, String)>,
    body: super::error::Body,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Write).await?;
    let req: KeyPatch = parse(&body)?;
    let update = KeyUpdate {
        name: req.name,
        description: req.description,
        allowed_models: req.allowed_models,
        expires_ms: req.expires_ms,
        limits: req.limits,
        enabled: req.enabled,
        allowed_regions: req.allowed_regions,
    };
    let key = admin::update_key(&state.store, &p.actor(), &account, &id, update).await?;
    Ok(axum::Json(key).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Rotate {
    /// How long the old secret keeps working (default 86400; 0 = stop at once).
    #[serde(default)]
    grace_seconds: Option<i64>,
}

pub async fn rotate(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path((account, id)): Path<(String, String)>,
    body: super::error::Body,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Write).await?;
    let req: Rotate = if body.is_empty() {
        Rotate::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| MgmtError::invalid("grace_seconds", format!("invalid JSON body: {e}")))?
    };
    let grace = req
        .grace_seconds
        .unwrap_or(admin::DEFAULT_ROTATION_GRACE_SECS);
    let created = admin::rotate_key(
        &state.store,
        state.keys.hasher(),
        &p.actor(),
        &account,
        &id,
        grace,
    )
    .await?;
    let key = state.store.key(&account, &id).await?;
    Ok(axum::Json(json!({
        "secret": created.secret.expose(),
        "previous_secret_valid_until_ms": created.previous_secret_valid_until_ms,
        "key": key,
    }))
    .into_response())
}

async fn set_status(
    state: &AppState,
    p: &Principal,
    account: &str,
    id: &str,
    status: KeyStatus,
) -> Result<(), MgmtError> {
    p.authorize(state, account, Need::Write).await?;
    admin::set_key_status(&state.store, &p.actor(), account, id, status).await?;
    Ok(())
}

pub async fn disable(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path((account, id)): Path<(String, String)>,
) -> Result<Response, MgmtError> {
    set_status(&state, &p, &account, &id, KeyStatus::Disabled).await?;
    Ok(axum::Json(state.store.key(&account, &id).await?).into_response())
}

pub async fn enable(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path((account, id)): Path<(String, String)>,
) -> Result<Response, MgmtError> {
    set_status(&state, &p, &account, &id, KeyStatus::Active).await?;
    Ok(axum::Json(state.store.key(&account, &id).await?).into_response())
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path((account, id)): Path<(String, String)>,
) -> Result<Response, MgmtError> {
    set_status(&state, &p, &account, &id, KeyStatus::Deleted).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
