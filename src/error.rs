//! `ApiError` and the only `IntoResponse` for errors: one match from variant to status,
//! OpenAI `type` and `code`.
//!
//! Turning an error into a response has no side effects. Messages here are written for
//! the client; `Debug` prints only the kind, and the logging middleware logs only the
//! kind, so a client-supplied value echoed in a message never reaches a log.

use std::fmt;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::billing::budget::BudgetError;
use crate::gateway::{BodyError, UpstreamError, UpstreamErrorKind};
use crate::keys::KeyError;
use crate::limits::{RateHeaders, Refusal, Refused};

pub enum ApiError {
    InvalidBody(BodyError),
    BodyTooLarge {
        limit: usize,
    },
    /// The body stalled or trickled past its time (`server.body_timeout_ms`).
    BodyTimeout,
    /// The request head is over `server.max_header_bytes`.
    HeadersTooLarge {
        limit: usize,
    },
    Key(KeyError),
    /// The key stopped being usable while the request ran (disabled, deleted, its account
    /// suspended or erased): the request is cut.
    AccessRevoked,
    ModelNotFound(String),
    ModelNotAllowed(String),
    NoRoute(String),
    RegionRestricted(String),
    Quota(BudgetError),
    /// A rate limit or abuse protection refused the request.
    Limited(Box<Refusal>),
    QueueFull,
    /// The store is unreachable: fail fast rather than serve what cannot be accounted for.
    StoreUnavailable,
    Upstream(UpstreamError),
    RouteNotFound,
    MethodNotAllowed,
    /// `GET /v1/responses/{id}` and the like: InstaGen stores no responses.
    NotStored,
    /// `GET /v1/generations/{id}`: no record of that request in the key's account (yet).
    GenerationNotFound(String),
    Internal,
}

/// The error kind of a response, left in its extensions for the logging middleware.
#[derive(Debug, Clone, Copy)]
pub struct ErrorKind(pub &'static str);

impl fmt::Debug for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiError({})", self.kind())
    }
}

impl From<KeyError> for ApiError {
    fn from(e: KeyError) -> Self {
        ApiError::Key(e)
    }
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> Self {
        ApiError::Upstream(e)
    }
}

impl From<crate::usage::QueueFull> for ApiError {
    fn from(_: crate::usage::QueueFull) -> Self {
        ApiError::QueueFull
    }
}

struct Shape {
    status: StatusCode,
    kind: &'static str,
    r#type: &'static str,
    code: Option<&'static str>,
}

impl ApiError {
    fn shape(&self) -> Shape {
        use ApiError as E;
        let s = |status, kind, r#type, code| Shape {
            status,
            kind,
            r#type,
            code,
        };
        match self {
            E::InvalidBody(_) => s(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "invalid_request_error",
                None,
            ),
            E::BodyTooLarge { .. } => s(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                "invalid_request_error",
                Some("request_too_large"),
            ),
            E::BodyTimeout => s(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "invalid_request_error",
                Some("request_timeout"),
            ),
            E::HeadersTooLarge { .. } => s(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "headers_too_large",
                "invalid_request_error",
                Some("request_header_fields_too_large"),
            ),
            E::Key(k) => s(
                StatusCode::UNAUTHORIZED,
                k.kind(),
                "invalid_request_error",
                Some("invalid_api_key"),
            ),
            E::AccessRevoked => s(
                StatusCode::FORBIDDEN,
                "access_revoked",
                "permission_error",
                Some("access_revoked"),
            ),
            E::ModelNotFound(_) => s(
                StatusCode::NOT_FOUND,
                "model_not_found",
                "invalid_request_error",
                Some("model_not_found"),
            ),
            E::ModelNotAllowed(_) => s(
                StatusCode::FORBIDDEN,
                "model_not_allowed",
                "permission_error",
                Some("model_not_allowed"),
            ),
            E::Quota(BudgetError::BalanceExhausted) => s(
                StatusCode::PAYMENT_REQUIRED,
                "insufficient_balance",
                "insufficient_quota",
                Some("insufficient_quota"),
            ),
            E::Quota(BudgetError::KeyLimitReached) => s(
                StatusCode::TOO_MANY_REQUESTS,
                "key_spend_limit",
                "insufficient_quota",
                Some("insufficient_quota"),
            ),
            E::Limited(r) if r.why == Refused::Unavailable => s(
                StatusCode::SERVICE_UNAVAILABLE,
                r.why.kind(),
                "server_error",
                Some("limiter_unavailable"),
            ),
            E::Limited(r) => s(
                StatusCode::TOO_MANY_REQUESTS,
                r.why.kind(),
                "requests",
                Some("rate_limit_exceeded"),
            ),
            E::RegionRestricted(_) => s(
                StatusCode::FORBIDDEN,
                "region_restricted",
                "permission_error",
                Some("region_restricted"),
            ),
            E::NoRoute(_) => s(
                StatusCode::SERVICE_UNAVAILABLE,
                "no_healthy_route",
                "upstream_error",
                Some("no_healthy_route"),
            ),
            E::StoreUnavailable => s(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "server_error",
                Some("store_unavailable"),
            ),
            E::QueueFull => s(
                StatusCode::SERVICE_UNAVAILABLE,
                "usage_queue_full",
                "server_error",
                Some("overloaded"),
            ),
            E::Upstream(u) => match u.kind {
                UpstreamErrorKind::Connect => s(
                    StatusCode::BAD_GATEWAY,
                    "upstream_unreachable",
                    "upstream_error",
                    Some("upstream_unreachable"),
                ),
                UpstreamErrorKind::Timeout => s(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "upstream_error",
                    Some("upstream_timeout"),
                ),
                UpstreamErrorKind::Protocol => s(
                    StatusCode::BAD_GATEWAY,
                    "upstream_protocol_error",
                    "upstream_error",
                    Some("upstream_protocol_error"),
                ),
                UpstreamErrorKind::Status(429) => s(
                    StatusCode::TOO_MANY_REQUESTS,
                    "upstream_rate_limited",
                    "rate_limit_error",
                    Some("rate_limit_exceeded"),
                ),
                UpstreamErrorKind::Status(st @ 400..=499) if st != 401 && st != 403 => s(
                    StatusCode::from_u16(st).unwrap_or(StatusCode::BAD_REQUEST),
                    "upstream_rejected",
                    "invalid_request_error",
                    None,
                ),
                UpstreamErrorKind::Status(_) => s(
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    "upstream_error",
                    Some("upstream_error"),
                ),
            },
            E::RouteNotFound => s(
                StatusCode::NOT_FOUND,
                "route_not_found",
                "invalid_request_error",
                Some("not_found"),
            ),
            E::NotStored => s(
                StatusCode::NOT_FOUND,
                "not_stored",
                "invalid_request_error",
                Some("not_found"),
            ),
            E::GenerationNotFound(_) => s(
                StatusCode::NOT_FOUND,
                "generation_not_found",
                "invalid_request_error",
                Some("not_found"),
            ),
            E::MethodNotAllowed => s(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "invalid_request_error",
                Some("method_not_allowed"),
            ),
            E::Internal => s(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "server_error",
                Some("internal_error"),
            ),
        }
    }

    pub fn status(&self) -> StatusCode {
        self.shape().status
    }

    /// A fixed, content-free label for logs and usage records.
    pub fn kind(&self) -> &'static str {
        self.shape().kind
    }

    fn message(&self) -> String {
        match self {
            ApiError::InvalidBody(e) => e.message.clone(),
            ApiError::BodyTooLarge { limit } => {
                format!("the request body exceeds the limit of {limit} bytes")
            }
            ApiError::BodyTimeout => {
                "the request body did not arrive in time; the connection is closed".to_owned()
            }
            ApiError::HeadersTooLarge { limit } => {
                format!("the request's headers exceed the limit of {limit} bytes")
            }
            ApiError::Key(k) => format!("{k}"),
            ApiError::AccessRevoked => {
                "this access key was disabled or its account suspended or deleted while the request ran".to_owned()
            }
            ApiError::ModelNotFound(m) => format!(
                "The model `{}` does not exist or you do not have access to it.",
                echo(m)
            ),
            ApiError::ModelNotAllowed(m) => {
                format!("this access key may not use the model `{}`", echo(m))
            }
            ApiError::Quota(BudgetError::BalanceExhausted) => {
                "your account's prepaid balance cannot cover this request; add credit".to_owned()
            }
            ApiError::Quota(BudgetError::KeyLimitReached) => {
                "this access key has reached its spend limit for the period".to_owned()
            }
            ApiError::RegionRestricted(m) => format!(
                "no provider of `{}` is in a region this access key may use",
                echo(m)
            ),
            ApiError::NoRoute(m) => format!(
                "no healthy route can serve `{}` right now; retry shortly",
                echo(m)
            ),
            ApiError::QueueFull => "the server is overloaded; retry shortly".to_owned(),
            ApiError::StoreUnavailable => {
                "the service's database is unreachable; retry shortly".to_owned()
            }
            ApiError::Limited(r) => r.why.message().to_owned(),
            ApiError::Upstream(u) => match (&u.client_message, u.kind) {
                (Some(m), _) => format!("upstream rejected the request: {m}"),
                (None, UpstreamErrorKind::Status(429)) => {
                    "the upstream provider is rate limiting; retry later".to_owned()
                }
                (None, _) => format!("{u}"),
            },
            ApiError::RouteNotFound => "unknown API route".to_owned(),
            ApiError::MethodNotAllowed => "method not allowed for this route".to_owned(),
            ApiError::NotStored => "InstaGen stores no responses or conversations (no content is kept): send the whole conversation as `input` with each request".to_owned(),
            ApiError::GenerationNotFound(id) => format!(
                "no request `{}` of this key's account is on record; a record is written within \
                 a second or two of its answer",
                echo(id)
            ),
            ApiError::Internal => "internal error".to_owned(),
        }
    }

    fn param(&self) -> Option<&'static str> {
        match self {
            ApiError::InvalidBody(e) => e.param,
            ApiError::ModelNotFound(_) | ApiError::ModelNotAllowed(_) => Some("model"),
            _ => None,
        }
    }

    /// The OpenAI-shaped JSON body, also used for SSE error events.
    pub fn body(&self) -> serde_json::Value {
        let shape = self.shape();
        json!({"error": {
            "message": self.message(),
            "type": shape.r#type,
            "param": self.param(),
            "code": shape.code,
        }})
    }
}

/// A client-sent name (a model id) as errors echo it: at most 64 bytes, cut on a
/// character boundary, so a megabyte of `model` is never sent back.
fn echo(text: &str) -> std::borrow::Cow<'_, str> {
    const MAX: usize = 64;
    if text.len() <= MAX {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(format!("{}…", &text[..text.floor_char_boundary(MAX)]))
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let shape = self.shape();
        let mut response = (shape.status, axum::Json(self.body())).into_response();
        let retry_after = match &self {
            ApiError::Upstream(u) => {
                u.retry_after
                    .or(matches!(u.kind, UpstreamErrorKind::Status(429)).then_some(1))
            }
            ApiError::QueueFull | ApiError::StoreUnavailable => Some(1),
            ApiError::Limited(r) => Some(r.retry_after_s),
            _ => None,
        };
        if let ApiError::Limited(r) = &self {
            rate_headers(response.headers_mut(), &r.headers);
        }
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if matches!(self, ApiError::BodyTimeout) {
            // The rest of a stalled body may never come: the connection is not reused.
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response.extensions_mut().insert(ErrorKind(shape.kind));
        response
    }
}

/// An `ApiError` answered in the Anthropic Messages API's shape (`/v1/messages…`), with
/// the same status and headers, so the Anthropic SDKs raise their own error classes.
pub struct AnthropicError(pub ApiError);

impl From<ApiError> for AnthropicError {
    fn from(e: ApiError) -> Self {
        AnthropicError(e)
    }
}

impl From<crate::keys::KeyError> for AnthropicError {
    fn from(e: crate::keys::KeyError) -> Self {
        AnthropicError(ApiError::Key(e))
    }
}

impl IntoResponse for AnthropicError {
    fn into_response(self) -> Response {
        let status = self.0.status();
        let body = crate::gateway::wire::messages::error_body(status.as_u16(), &self.0.message());
        let mut response = self.0.into_response();
        *response.body_mut() = axum::body::Body::from(body.to_string());
        response
    }
}

/// OpenAI's `x-ratelimit-*` headers for the limits that applied.
pub fn rate_headers(headers: &mut axum::http::HeaderMap, rate: &RateHeaders) {
    for (what, quota) in [("requests", rate.requests), ("tokens", rate.tokens)] {
        let Some(q) = quota else { continue };
        for (name, value) in [
            ("limit", q.limit.to_string()),
            ("remaining", q.remaining.to_string()),
            ("reset", format!("{}s", q.reset_s)),
        ] {
            if let (Ok(n), Ok(v)) = (
                axum::http::HeaderName::try_from(format!("x-ratelimit-{name}-{what}")),
                HeaderValue::try_from(value),
            ) {
                headers.insert(n, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_client_values() {
        let e = ApiError::ModelNotFound("CANARY-model".to_owned());
        assert!(!format!("{e:?}").contains("CANARY"));
        assert_eq!(e.status(), StatusCode::NOT_FOUND);
        assert_eq!(e.body()["error"]["code"], "model_not_found");
    }
}
