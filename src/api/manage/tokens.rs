//! Management tokens of an account (owners only), plus the audit log and security events.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::auth::{Need, Principal};
use super::error::{MgmtError, parse};
use crate::admin;
use crate::app::AppState;
use crate::store::Role;
use crate::time::now_ms;

pub async fn list(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Owner).await?;
    Ok(axum::Json(json!({"data": state.store.list_tokens(&account).await?})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenCreate {
    name: String,
    role: Role,
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
    body: super::error::Body,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Owner).await?;
    let req: TokenCreate = parse(&body)?;
    let t = admin::create_token(
        &state.store,
        state.keys.hasher(),
        &p.actor(),
        Some(&account),
        req.role.as_str(),
        &req.name,
        p.user_id(),
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(t)).into_response())
}

pub async fn revoke(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path((account, id)): Path<(String, String)>,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Owner).await?;
    admin::revoke_token(&state.store, &p.actor(), &account, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn audit(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Owner).await?;
    Ok(axum::Json(json!({"data": state.store.audit(Some(&account), 500).await?})).into_response())
}

pub async fn audit_all(
    State(state): State<Arc<AppState>>,
    p: Principal,
) -> Result<Response, MgmtError> {
    p.require_operator()?;
    Ok(axum::Json(json!({"data": state.store.audit(None, 500).await?})).into_response())
}

/// Failed `/v1` authentications with this account's keys over the last 30 days, per hour.
pub async fn security_events(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Owner).await?;
    let since = now_ms() - 30 * 24 * 3_600_000;
    Ok(axum::Json(
        json!({"data": state.store.security_events(Some(account.as_str()), since).await?}),
    )
    .into_response())
}

/// Every security event, including failures with no known key (per truncated IP).
pub async fn security_events_all(
    State(state): State<Arc<AppState>>,
    p: Principal,
) -> Result<Response, MgmtError> {
    p.require_operator()?;
    let since = now_ms() - 30 * 24 * 3_600_000;
    Ok(
        axum::Json(json!({"data": state.store.security_events(None, since).await?}))
            .into_response(),
    )
}
