//! The OpenAI-compatible inference surface: `/v1/models`, `/v1/chat/completions`,
//! `/v1/completions`, `/v1/embeddings`, `/v1/audio/transcriptions`, `/v1/responses`; and
//! `infer`, which every inference route (the Anthropic ones too) goes through.

use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, post};
use bytes::Bytes;
use futures_util::StreamExt;
use serde_json::json;

use crate::app::{AppState, RequestContext, Served};
use crate::error::ApiError;
use crate::gateway::{Endpoint, Forwarded, Wire};
use crate::keys::{AuthedKey, KeyError};
use crate::limits::Refusal;
use crate::usage::{Meter, TokenCounts};

/// Authenticates the request's access key, sent as `Authorization: Bearer` or (as the
/// Anthropic SDKs do) `x-api-key`. An address that failed too often is refused first; a
/// refusal is counted as a security event and towards that address's block.
pub(crate) async fn authenticate(
    state: &AppState,
    ctx: &RequestContext,
    headers: &HeaderMap,
) -> Result<Arc<AuthedKey>, ApiError> {
    state
        .limits
        .check_blocked(ctx.client_ip)
        .await
        .map_err(|r| ApiError::Limited(Box::new(r)))?;
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let api_key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let found = match (bearer, api_key) {
        (None, Some(k)) => state.keys.authenticate_token(k, ctx.started_ms),
        _ => state.keys.authenticate(bearer, ctx.started_ms),
    };
    match found {
        Ok(key) => Ok(key),
        Err(failure) => {
            state.security.record(&failure, ctx.client_ip);
            // Guessing (unknown or malformed keys) counts towards a block; a disabled,
            // expired or revoked key with its right secret is not an attack.
            // Boxed: this future is built and copied on every request, and this path is rare.
            if matches!(failure.error, KeyError::Unknown | KeyError::Malformed) {
                Box::pin(state.limits.auth_failed(ctx.client_ip)).await;
            }
            Err(ApiError::Key(failure.error))
        }
    }
}

pub(crate) fn limited(r: Refusal) -> ApiError {
    ApiError::Limited(Box::new(r))
}

/// `GET /v1/models`: what the key may call. A request with `anthropic-version` (Claude
/// Code's model discovery, the Anthropic SDKs) gets Anthropic's list shape.
pub async fn models(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestContext>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let _in_flight = state.limits.enter(ctx.client_ip).await.map_err(limited)?;
    let key = authenticate(&state, &ctx, &headers).await?;
    let gateway = state.catalog.current();
    let names: Vec<&str> = gateway.visible_to(&key).collect();
    if headers.contains_key("anthropic-version") {
        let data: Vec<_> = names
            .iter()
            .map(|id| anthropic_card(&gateway, id))
            .collect();
        return Ok(axum::Json(json!({
            "data": data,
            "has_more": false,
            "first_id": names.first(),
            "last_id": names.last(),
        }))
        .into_response());
    }
    let data: Vec<_> = names
        .iter()
        .filter_map(|id| gateway.model_card(id))
        .collect();
    Ok(axum::Json(json!({"object": "list", "data": data})).into_response())
}

/// `GET /v1/models/{model}`: one model the key may call, in the shape its client speaks.
pub async fn model(
    State(state): State<Arc<AppState>>,
    Extension(ctx): Extension<RequestContext>,
    axum::extract::Path(id): axum::extract::Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let _in_flight = state.limits.enter(ctx.client_ip).await.map_err(limited)?;
    let key = authenticate(&state, &ctx, &headers).await?;
    let gateway = state.catalog.current();
    if !gateway.usable_by(&key, &id) {
        return Err(ApiError::ModelNotFound(id));
    }
    if headers.contains_key("anthropic-version") {
        return Ok(axum::Json(anthropic_card(&gateway, &id)).into_response());
    }
    match gateway.model_card(&id) {
        Some(card) => Ok(axum::Json(card).into_response()),
        None => Err(ApiError::ModelNotFound(id)),
    }
}

/// A model in Anthropic's model-list shape (its context window as `max_input_tokens`).
fn anthropic_card(gateway: &crate::gateway::Gateway, id: &str) -> serde_json::Value {
    let mut card = json!({"id": id, "type": "model", "display_name": id,
                          "created_at": "1970-01-01T00:00:00Z", "lifecycle": "active"});
    if let Some(n) = gateway.context_length(id) {
        card["max_input_tokens"] = n.into();
    }
    card
}

/// `GET`/`DELETE /v1/responses/{id}` and the rest: nothing is stored, so nothing is found.
pub async fn response_not_stored() -> ApiError {
    ApiError::NotStored
}

/// The router's handler of an inference route (see `app::INFERENCE_ROUTES`, which
/// `App::handle` answers itself; the router's copy serves the same).
pub fn inference(endpoint: Endpoint, wire: Wire) -> MethodRouter<Arc<AppState>> {
    post(
        move |State(state): State<Arc<AppState>>, req: axum::extract::Request| async move {
            // Set by `App::handle` on every request it hands to the router.
            match req.extensions().get::<RequestContext>().cloned() {
                Some(ctx) => answer(&state, &ctx, endpoint, wire, req).await,
                None => ApiError::Internal.into_response(),
            }
        },
    )
}

/// One inference request answered, an error in the shape of the API its client speaks
/// (Anthropic's on `/v1/messages`, OpenAI's elsewhere).
///
/// A combinator, not an `async fn`: an async body would keep the request it hands to
/// `infer` in its own state as well (rustc reserves its arguments' space for the whole
/// future), and this future is built and moved on every request. The request is split here
/// for the same reason.
pub(crate) fn answer<'a>(
    state: &'a AppState,
    ctx: &'a RequestContext,
    endpoint: Endpoint,
    wire: Wire,
    req: axum::extract::Request,
) -> impl Future<Output = Response> + Send + 'a {
    let (parts, body) = req.into_parts();
    futures_util::FutureExt::map(
        infer(state, ctx, endpoint, wire, parts, body),
        move |answer| match (answer, wire) {
            (Ok(response), _) => response,
            (Err(e), Wire::Messages) => crate::error::AnthropicError(e).into_response(),
            (Err(e), _) => e.into_response(),
        },
    )
}

/// One inference request, in any wire format: admission, the body, the gateway, and the
/// answer's framing. Takes the request's head whole: its headers are read in place, not
/// copied out by an extractor.
async fn infer(
    state: &AppState,
    ctx: &RequestContext,
    endpoint: Endpoint,
    wire: Wire,
    parts: axum::http::request::Parts,
    body: Body,
) -> Result<Response, ApiError> {
    let headers = &parts.headers;
    if !state.store_up.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(ApiError::StoreUnavailable);
    }
    let in_flight = state.limits.enter(ctx.client_ip).await.map_err(limited)?;
    let key = authenticate(state, ctx, headers).await?;
    let slot = state.usage.reserve()?;
    let mut meter = Meter::new(
        slot,
        &ctx.id,
        &key,
        wire.label(endpoint),
        (ctx.started, ctx.started_ms),
    );
    let bytes = match read_body(body, headers, state.max_body_bytes).await {
        Ok(b) => b,
        Err(e) => {
            meter.finish(e.status().as_u16(), Some(e.kind()), TokenCounts::default());
            return Err(e);
        }
    };
    if endpoint != Endpoint::Transcriptions
        && let Err(message) = check_json_depth(&bytes, state.limits.config().max_json_depth)
    {
        let e = ApiError::InvalidBody(crate::gateway::BodyError {
            message,
            param: None,
        });
        meter.finish(e.status().as_u16(), Some(e.kind()), TokenCounts::default());
        return Err(e);
    }
    // Tokens per minute are reserved from the body's size (~4 bytes a token) and corrected
    // to the actual count when the request's usage is known.
    let estimate = bytes.len() as u64 / 4 + 1;
    let admission = match key.limits.is_limited() {
        false => None,
        // Boxed: only a limited key awaits it, and its future (~1.4 KiB) would otherwise
        // be part of every request's.
        true => match Box::pin(state.limits.admit(&key, estimate)).await {
            Ok(a) => Some(a),
            Err(r) => {
                let e = limited(r);
                meter.finish(e.status().as_u16(), Some(e.kind()), TokenCounts::default());
                return Err(e);
            }
        },
    };
    let (rate, lease) = match admission {
        Some(a) => {
            meter.charge_tokens(a.charge);
            (Some(a.headers), a.lease)
        }
        None => (None, None),
    };
    // Boxed: awaited in place, the gateway's future (several KiB) would be built on the
    // stack and copied into this one's state, which would grow by as much.
    let (forwarded, model) = Box::pin(
        state.catalog.current().forward(
            endpoint,
            wire,
            headers
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            bytes,
            headers,
            crate::gateway::Admitted {
                key: &key,
                budgets: &state.budgets,
                reserve_output_tokens: state.reserve_output_tokens,
            },
            meter,
        ),
    )
    .await?;
    let mut response = match forwarded {
        Forwarded::Json(json, content_type, charged, durable) => {
            if let Some(durable) = durable {
                durable.written().await;
            }
            let mut response = (
                [(
                    header::CONTENT_TYPE,
                    content_type.unwrap_or(HeaderValue::from_static("application/json")),
                )],
                json,
            )
                .into_response();
            crate::gateway::cost::set_headers(response.headers_mut(), &charged);
            response
        }
        Forwarded::Stream(mut relay) => {
            // The leases last as long as the stream.
            relay.hold_all(in_flight, lease);
            (
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
                .into_response()
        }
    };
    if let Some(rate) = rate {
        crate::error::rate_headers(response.headers_mut(), &rate);
    }
    // Read by the request's log line in `App::handle` (target `instagen::app`), which for
    // an answer is at debug level: not set when that is off (a first extension costs three
    // allocations).
    if tracing::enabled!(target: "instagen::app", tracing::Level::DEBUG) {
        response.extensions_mut().insert(Served {
            key,
            model: Some(model),
        });
    }
    Ok(response)
}

/// Refuses bodies nested deeper than `max` (arrays and objects), without parsing them.
pub(crate) fn check_json_depth(body: &[u8], max: usize) -> Result<(), String> {
    match crate::gateway::scan::nested_deeper(body, max) {
        false => Ok(()),
        true => Err(format!(
            "the request body is nested deeper than {max} levels"
        )),
    }
}

/// Reads the body up to `limit` bytes (413 beyond), without copying a single-chunk body.
pub(crate) async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let mut stream = body.into_data_stream();
    let mut first: Option<Bytes> = None;
    // A large body goes to its own mapping, handed back to the system when dropped.
    let mut rest: Option<crate::bodybuf::BodyBuf> = None;
    let mut total = 0usize;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            if crate::serve::BodyTimedOut::caused(&e) {
                return ApiError::BodyTimeout;
            }
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
                let hint = declared.unwrap_or(f.len() + chunk.len()).min(limit);
                let mut buf = crate::bodybuf::BodyBuf::new(hint, limit);
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
