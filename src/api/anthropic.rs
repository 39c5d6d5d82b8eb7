//! The Anthropic Messages surface: `POST /v1/messages/count_tokens` here, and
//! `POST /v1/messages` (translated to chat for OpenAI-compatible engines and the built-in
//! one, passed through to Anthropic providers) by `openai::answer` in Anthropic's shape;
//! with Anthropic's error shapes, following Anthropic's LLM-gateway protocol (any
//! `anthropic-version` and `anthropic-beta` accepted and forwarded to Anthropic upstreams,
//! `?beta=true` accepted, keys by `x-api-key` or `Authorization: Bearer`).

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::openai::{authenticate, check_json_depth, limited, read_body};
use crate::app::{AppState, RequestContext, Served};
use crate::error::{AnthropicError, ApiError};
use crate::gateway::wire::protocol_headers;

/// `POST /v1/messages/count_tokens`: free, unrecorded; the `x-instagen-token-count`
/// header says whether the count is the model's own (`exact`) or our `estimate`.
pub async fn count_tokens(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, AnthropicError> {
    let _in_flight = state.limits.enter(ctx.client_ip).await.map_err(limited)?;
    let key = authenticate(&state, &ctx, &headers).await?;
    // Counted against the key's request rate, so it cannot be used to flood an upstream.
    let _lease = match key.limits.is_limited() {
        false => None,
        true => state.limits.admit(&key, 0).await.map_err(limited)?.lease,
    };
    let bytes = read_body(body, &headers, state.max_body_bytes).await?;
    check_json_depth(&bytes, state.limits.config().max_json_depth).map_err(|message| {
        ApiError::InvalidBody(crate::gateway::BodyError {
            message,
            param: None,
        })
    })?;
    let (count, exact) = state
        .catalog
        .current()
        .count_tokens(&bytes, &key, &protocol_headers(&headers))
        .await?;
    let label = HeaderValue::from_static(if exact { "exact" } else { "estimate" });
    let mut response = axum::Json(json!({"input_tokens": count})).into_response();
    response
        .headers_mut()
        .insert(HeaderName::from_static("x-instagen-token-count"), label);
    response
        .extensions_mut()
        .insert(Served { key, model: None });
    Ok(response)
}
