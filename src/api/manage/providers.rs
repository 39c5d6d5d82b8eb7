//! Operator-only: providers managed at run time, and the health of every model's routes.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::auth::Principal;
use super::error::{MgmtError, parse};
use crate::admin;
use crate::app::AppState;

pub async fn list(State(state): State<Arc<AppState>>, p: Principal) -> Result<Response, MgmtError> {
    p.require_operator()?;
    let data = admin::list_providers(&state.store, &state.catalog).await?;
    Ok(axum::Json(json!({"data": data})).into_response())
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    p: Principal,
    body: super::error::Body,
) -> Result<Response, MgmtError> {
    p.require_operator()?;
    let body: Map<String, Value> = parse(&body)?;
    let view = admin::create_provider(&state.store, &state.catalog, &p.actor(), body).await?;
    Ok((StatusCode::CREATED, axum::Json(view)).into_response())
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<Response, MgmtError> {
    p.require_operator()?;
    let view = admin::get_provider(&state.store, &state.catalog, &name).await?;
    Ok(axum::Json(view).into_response())
}

pub async fn update(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(name): Path<String>,
    body: super::error::Body,
) -> Result<Response, MgmtError> {
    p.require_operator()?;
    let patch: Map<String, Value> = parse(&body)?;
    let view =
        admin::update_provider(&state.store, &state.catalog, &p.actor(), &name, patch).await?;
    Ok(axum::Json(view).into_response())
}

pub async fn delete(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(name): Path<String>,
) -> Result<Response, MgmtError> {
    p.require_operator()?;
    admin::delete_provider(&state.store, &state.catalog, &p.actor(), &name).await?;
    Ok(axum::Json(json!({"deleted": true, "name": name})).into_response())
}

/// Every model's routes with their live health (in rotation, in flight, latency).
pub async fn routes(
    State(state): State<Arc<AppState>>,
    p: Principal,
) -> Result<Response, MgmtError> {
    p.require_operator()?;
    let data = state.catalog.current().route_health();
    Ok(axum::Json(json!({"data": data})).into_response())
}
