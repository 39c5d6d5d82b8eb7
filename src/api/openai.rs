//! The OpenAI-compatible inference surface: `/v1/models`, `/v1/chat/completions`,
//! `/v1/completions`, `/v1/embeddings`.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde_json::json;

use crate::app::{AppState, RequestContext};
use crate::error::ApiError;
use crate::gateway::{Endpoint, Forwarded};
use crate::keys::AuthedKey;
use crate::time::now_ms;
use crate::usage::{Meter, TokenCounts};

/// Authenticates the request's access key; a refusal is also counted as a security event.
fn authenticate(
    state: &AppState,
    ctx: &RequestContext,
    headers: &HeaderMap,
) -> Result<Arc<AuthedKey>, ApiError> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state.keys.authenticate(value, now_ms()).map_err(|failure| {
        state.security.record(&failure, ctx.client_ip);
        ApiError::Key(failure.error)
    })
}

pub async fn models(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let key = authenticate(&state, &ctx, &headers)?;
    let gateway = state.catalog.current();
    let data: Vec<_> = gateway
        .model_ids()
        .iter()
        .filter(|id| key.may_use(id))
        .filter_map(|id| gateway.model_card(id))
        .collect();
    Ok(axum::Json(json!({"object": "list", "data": data})).into_response())
}

pub async fn chat_completions(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    infer(&state, Endpoint::Chat, &ctx, &headers, body).await
}

pub async fn completions(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    infer(&state, Endpoint::Completions, &ctx, &headers, body).await
}

pub async fn embeddings(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    infer(&state, Endpoint::Embeddings, &ctx, &headers, body).await
}

pub async fn transcriptions(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    infer(&state, Endpoint::Transcriptions, &ctx, &headers, body).await
}

async fn infer(
    state: &AppState,
    endpoint: Endpoint,
    ctx: &RequestContext,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let key = authenticate(state, ctx, headers)?;
    let slot = state.usage.reserve()?;
    let mut meter = Meter::new(slot, &ctx.id, &key, endpoint.label(), ctx.started);
    let bytes = match read_body(body, headers, state.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            meter.finish(e.status().as_u16(), Some(e.kind()), TokenCounts::default());
            return Err(e);
        }
    };
    match state
        .catalog
        .current()
        .forward(
            endpoint,
            headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            bytes,
            crate::gateway::Admitted {
                key: &key,
                budgets: &state.budgets,
                reserve_output_tokens: state.reserve_output_tokens,
            },
            meter,
        )
        .await?
    {
        Forwarded::Json(json, content_type) => Ok((
            [(
                header::CONTENT_TYPE,
                content_type.unwrap_or(HeaderValue::from_static("application/json")),
            )],
            json,
        )
            .into_response()),
        Forwarded::Stream(relay) => Ok((
            StatusCode::OK,
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                ),
                (
                    header::HeaderName::from_static("x-accel-buffering"),
                    HeaderValue::from_static("no"),
                ),
            ],
            Body::from_stream(*relay),
        )
            .into_response()),
    }
}

/// Reads the body up to `limit` bytes (413 beyond), without copying a single-chunk body.
async fn read_body(body: Body, headers: &HeaderMap, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let mut stream = body.into_data_stream();
    let mut first: Option<Bytes> = None;
    let mut rest: Option<BytesMut> = None;
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| {
            ApiError::InvalidBody(crate::gateway::BodyError {
                message: "the request body could not be read".to_owned(),
                param: None,
            })
        })?;
        total += chunk.len();
        if total > limit {
            return Err(ApiError::BodyTooLarge { limit });
        }
        match (&mut first, &mut rest) {
            (None, None) => first = Some(chunk),
            (Some(f), None) => {
                let mut buf = BytesMut::with_capacity(declared.unwrap_or(f.len() + chunk.len()));
                buf.extend_from_slice(f);
                buf.extend_from_slice(&chunk);
                rest = Some(buf);
            }
            (_, Some(buf)) => buf.extend_from_slice(&chunk),
        }
    }
    Ok(match rest {
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    })
}
