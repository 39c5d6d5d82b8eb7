//! Management tokens of an account (owners only), plus the audit log and security events.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{Need, Principal};
use super::error::{MgmtError, parse};
use super::page::{PageQuery, by_creation, newest_first, page};
use crate::admin;
use crate::app::AppState;
use crate::store::Role;
use crate::time::now_ms;

type PageParams = Result<axum::extract::Query<PageQuery>, axum::extract::rejection::QueryRejection>;

pub async fn list(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
    query: PageParams,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Owner).await?;
    let q = PageQuery::from_query(query)?;
    let tokens = state.store.list_tokens(&account).await?;
    page(tokens, &q, |t| by_creation(t.created_ms, &t.id))
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

/// The newest audit entries this API pages through.
const AUDIT_WINDOW: i64 = 5_000;

pub async fn audit(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
    query: PageParams,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Owner).await?;
    let q = PageQuery::from_query(query)?;
    let entries = state.store.audit(Some(&account), AUDIT_WINDOW).await?;
    page(entries, &q, |e| newest_first(e.id))
}

pub async fn audit_all(
    State(state): State<Arc<AppState>>,
    p: Principal,
    query: PageParams,
) -> Result<Response, MgmtError> {
    p.require_operator()?;
    let q = PageQuery::from_query(query)?;
    let entries = state.store.audit(None, AUDIT_WINDOW).await?;
    page(entries, &q, |e| newest_first(e.id))
}

/// A security event's place in its list: newest hour first, then kind, key and address.
fn event_key(e: &crate::store::SecurityEvent) -> String {
    format!(
        "{}.{}.{}.{}",
        newest_first(e.bucket_ms),
        e.kind,
        e.key_id.as_deref().unwrap_or(""),
        e.client_ip.as_deref().unwrap_or("")
    )
}

/// Failed `/v1` authentications with this account's keys over the last 30 days, per hour.
pub async fn security_events(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
    query: PageParams,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Owner).await?;
    let q = PageQuery::from_query(query)?;
    let since = now_ms() - 30 * 24 * 3_600_000;
    let events = state
        .store
        .security_events(Some(account.as_str()), since)
        .await?;
    page(events, &q, event_key)
}

/// Every security event, including failures with no known key (per truncated IP).
pub async fn security_events_all(
    State(state): State<Arc<AppState>>,
    p: Principal,
    query: PageParams,
) -> Result<Response, MgmtError> {
    p.require_operator()?;
    let q = PageQuery::from_query(query)?;
    let since = now_ms() - 30 * 24 * 3_600_000;
    let events = state.store.security_events(None, since).await?;
    page(events, &q, event_key)
}
