//! An account's alert rules (thresholds and where they are sent) and the delivery log of
//! their webhooks and emails.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::auth::{Need, Principal};
use super::error::{MgmtError, parse};
use crate::admin;
use crate::app::AppState;

pub async fn list(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Owner).await?;
    let rules = admin::list_alerts(&state.store, &account).await?;
    Ok(axum::Json(json!({"data": rules})).into_response())
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
    body: super::error::Body,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Owner).await?;
    let spec: admin::AlertSpec = parse(&body)?;
    let alerts = state.alerts.clone();
    let view = admin::create_alert(&state.store, &p.actor(), &account, spec, |id| {
        alerts.webhook_secret(id)
    })
    .await?;
    Ok((StatusCode::CREATED, axum::Json(view)).into_response())
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path((account, id)): Path<(String, String)>,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Owner).await?;
    admin::delete_alert(&state.store, &p.actor(), &account, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn deliveries(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Owner).await?;
    let log = admin::alert_deliveries(&state.store, &account, 200).await?;
    Ok(axum::Json(json!({"data": log})).into_response())
}
