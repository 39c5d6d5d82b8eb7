//! Balance, ledger, credits and adjustments of an account.

use crate::billing::ledger::LedgerKind;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{Need, Principal};
use super::error::{MgmtError, parse};
use crate::admin;
use crate::app::AppState;

pub async fn show(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Owner).await?;
    Ok(axum::Json(admin::billing_view(&state.store, &account, 200).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Posting {
    /// Decimal USD, e.g. "25.00" (adjustments may be negative).
    usd: String,
    #[serde(default)]
    memo: String,
}

async fn post(
    state: &AppState,
    p: &Principal,
    account: &str,
    kind: LedgerKind,
    body: &[u8],
) -> Result<Response, MgmtError> {
    p.require_operator()?;
    let req: Posting = parse(body)?;
    let entry =
        admin::post_to_ledger(&state.store, &p.actor(), account, kind, &req.usd, &req.memo).await?;
    Ok((StatusCode::CREATED, axum::Json(entry)).into_response())
}

pub async fn credit(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
    body: super::error::Body,
) -> Result<Response, MgmtError> {
    post(&state, &p, &account, LedgerKind::Credit, &body).await
}

pub async fn adjust(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
    body: super::error::Body,
) -> Result<Response, MgmtError> {
    post(&state, &p, &account, LedgerKind::Adjustment, &body).await
}
