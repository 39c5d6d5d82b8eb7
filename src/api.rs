//! HTTP only: parse, authorize, call a domain function, shape the answer.
//!
//! `openai` serves the OpenAI-compatible `/v1/*` surface; health probes live here.
//! No SQL and no provider logic belong in this module.

pub mod anthropic;
pub mod manage;
pub mod openai;
pub mod standing;

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::app::AppState;
use crate::error::ApiError;

/// Liveness: the process is up and serving HTTP.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

/// Readiness: the store answers; otherwise 503 so a load balancer stops sending traffic.
pub async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.store_up.load(std::sync::atomic::Ordering::Relaxed) && state.store.ping().await {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unready", "reason": "store unreachable"})),
        )
            .into_response()
    }
}

/// Prometheus metrics (on the separate metrics listener).
pub async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let depth = state
        .usage_queue_capacity
        .saturating_sub(state.usage.capacity());
    let gauges = crate::telemetry::metrics::Gauges {
        usage_queue_depth: depth as u64,
        usage_queue_capacity: state.usage_queue_capacity as u64,
        journal_bytes: state.usage.journal_bytes(),
        alive_tasks: tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks() as u64,
        routes: state.catalog.current().route_health(),
    };
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&gauges),
    )
        .into_response()
}

/// `/metrics` on the main listener: operators only (or 404 when a metrics listener is set).
pub async fn metrics_for_operators(
    State(state): State<Arc<AppState>>,
    p: manage::Principal,
) -> Result<Response, manage::MgmtError> {
    if state.metrics_public {
        return Err(manage::MgmtError::not_found("route"));
    }
    p.require_operator()?;
    Ok(metrics(State(state)).await)
}

/// Unknown routes: the management error shape under `/api`, OpenAI's elsewhere.
pub async fn route_not_found(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        manage::MgmtError::new(StatusCode::NOT_FOUND, "not_found", "unknown API route")
            .into_response()
    } else if uri.path().starts_with("/v1/messages") {
        crate::error::AnthropicError(ApiError::RouteNotFound).into_response()
    } else {
        ApiError::RouteNotFound.into_response()
    }
}

pub async fn method_not_allowed(uri: axum::http::Uri) -> Response {
    if uri.path().starts_with("/api/") {
        manage::MgmtError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed for this route",
        )
        .into_response()
    } else if uri.path().starts_with("/v1/messages") {
        crate::error::AnthropicError(ApiError::MethodNotAllowed).into_response()
    } else {
        ApiError::MethodNotAllowed.into_response()
    }
}
