//! HTTP only: parse, authorize, call a domain function, shape the answer.
//!
//! `openai` serves the OpenAI-compatible `/v1/*` surface; health probes live here.
//! No SQL and no provider logic belong in this module.

pub mod openai;

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
    if state.store.ping().await {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unready", "reason": "store unreachable"})),
        )
            .into_response()
    }
}

pub async fn route_not_found() -> ApiError {
    ApiError::RouteNotFound
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
