//! The operator's privacy policy (public) and a signed-in user's acknowledgement of it.

use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::auth::{Principal, Who};
use super::error::{MgmtError, parse};
use crate::admin;
use crate::app::AppState;

/// The policy in force: version, text and contact. Public, so the login page can link it.
pub async fn show(State(state): State<Arc<AppState>>) -> Response {
    axum::Json(admin::policy(&state.privacy)).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyAck {
    /// The version the user read; must be the one in force.
    version: String,
}

pub async fn acknowledge(
    State(state): State<Arc<AppState>>,
    p: Principal,
    body: super::error::Body,
) -> Result<Response, MgmtError> {
    let Who::User(user) = &p.who else {
        return Err(MgmtError::session_required(
            "only a signed-in user acknowledges the privacy policy; tokens have no user",
        ));
    };
    let req: PrivacyAck = parse(&body)?;
    let seen =
        admin::acknowledge_privacy(&state.store, &p.actor(), user, &req.version, &state.privacy)
            .await?;
    Ok(axum::Json(json!({"privacy_seen_version": seen})).into_response())
}
