//! The management API's error shape: `{"error": {"code", "message", "field"}}`.
//!
//! Every failure is a 4xx with a message naming the field where one is at fault; a
//! store failure is the only 5xx, and its message never carries SQL or input.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ErrorKind;
use crate::store::StoreError;

#[derive(Debug)]
pub struct MgmtError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub field: Option<String>,
}

impl MgmtError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
        }
    }

    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: "invalid_request",
            message: message.into(),
            field: Some(field.to_owned()),
        }
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// The operation belongs to a signed-in user's cookie session, which a bearer
    /// credential (management or admin token) does not have.
    pub fn session_required(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "session_required", message)
    }
}

impl From<StoreError> for MgmtError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => MgmtError::not_found(what),
            StoreError::Conflict(what) => MgmtError::new(
                StatusCode::CONFLICT,
                "conflict",
                format!("{what} already exists"),
            ),
            StoreError::InUse(message) => MgmtError::new(StatusCode::CONFLICT, "in_use", message),
            e @ StoreError::KeyLimit(_) => {
                MgmtError::new(StatusCode::CONFLICT, "key_limit", e.to_string())
            }
            e @ StoreError::LastOwner => {
                MgmtError::new(StatusCode::CONFLICT, "last_owner", e.to_string())
            }
            StoreError::Invalid { field, message } => MgmtError {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_request",
                message,
                field,
            },
            e @ (StoreError::Db(_) | StoreError::Setup(_)) => {
                tracing::error!(error = %e, "management request failed in the store");
                MgmtError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "the store is unavailable; retry shortly",
                )
            }
        }
    }
}

impl IntoResponse for MgmtError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status,
            axum::Json(
                json!({"error": {"code": self.code, "message": self.message, "field": self.field}}),
            ),
        )
            .into_response();
        if self.status == StatusCode::REQUEST_TIMEOUT {
            // The rest of a stalled body may never come: the connection is not reused.
            response.headers_mut().insert(
                axum::http::header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        response.extensions_mut().insert(ErrorKind(self.code));
        response
    }
}

/// A management request's body, read whole; a body over axum's limit (2 MiB) is a 413, one
/// that stalls past `server.body_timeout_ms` a 408, both in our JSON shape.
pub struct Body(pub axum::body::Bytes);

impl std::ops::Deref for Body {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Body {
    type Rejection = MgmtError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, MgmtError> {
        use axum::extract::rejection::BytesRejection;
        match axum::body::Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(Body(bytes)),
            Err(rejection) => Err(match &rejection {
                r if crate::serve::BodyTimedOut::caused(r) => MgmtError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    "the request body did not arrive in time",
                ),
                BytesRejection::FailedToBufferBody(_)
                    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
                {
                    MgmtError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "body_too_large",
                        "the request body exceeds the limit of 2 MiB",
                    )
                }
                _ => MgmtError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    "the request body could not be read",
                ),
            }),
        }
    }
}

/// Parses a JSON request body with our error shape (the field named when serde names it).
/// Handlers call it after authorization, so a non-member learns nothing from validation.
pub fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, MgmtError> {
    if bytes.is_empty() {
        return Err(MgmtError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "a JSON object body is required",
        ));
    }
    // The path to the value at fault comes as data (`limits.rpm`, an unknown key itself).
    serde_path_to_error::deserialize(&mut serde_json::Deserializer::from_slice(bytes)).map_err(
        |e| {
            let path = e.path().to_string();
            MgmtError {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_request",
                message: format!("invalid JSON body: {}", e.inner()),
                field: (path != ".").then_some(path),
            }
        },
    )
}
