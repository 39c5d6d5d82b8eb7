//! The configured models with their prices (and, for operators, their routes).

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::auth::Principal;
use super::error::MgmtError;
use crate::admin;
use crate::app::AppState;

pub async fn list(State(state): State<Arc<AppState>>, p: Principal) -> Result<Response, MgmtError> {
    let data = admin::model_catalog(
        &state.catalog.current(),
        p.is_operator(),
        crate::time::now_ms(),
    );
    Ok(axum::Json(json!({"data": data})).into_response())
}
