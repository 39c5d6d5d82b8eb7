//! The management API under `/api/v1`: accounts, users, keys, tokens, audit, security
//! events, providers, route health, models and prices, and the privacy policy — and its
//! OpenAPI 3.1 document at `/api/openapi.json`.
//!
//! [`ROUTES`] is the one list of operations, each with its handler: the router is built
//! from it, the OpenAPI document is generated from it, and the tenant-isolation test walks
//! it — so no route can be served undocumented.

mod accounts;
mod alerts;
mod auth;
mod billing;
mod error;
mod keys;
mod models;
mod openapi;
mod page;
mod privacy;
mod providers;
mod requests;
mod session;
mod tokens;
mod usage;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

pub use auth::{CSRF_HEADER, Principal, SESSION_COOKIE};
pub use error::{Body, MgmtError};
pub use openapi::{ROUTES, RouteDoc, document};
pub use usage::check_query_string;

use crate::app::AppState;

/// The management router, built from [`ROUTES`]: every operation it serves is documented.
pub fn router() -> Router<Arc<AppState>> {
    ROUTES
        .iter()
        .fold(
            Router::new().route("/api/openapi.json", get(openapi::serve)),
            |router, route| router.route(route.path, (route.handler)()),
        )
        .layer(axum::middleware::from_fn(same_origin))
}

/// Browsers name the page that sent a request (`Origin`, `Sec-Fetch-Site`): a write, a
/// login or a sign-up sent from another site is refused (403 `cross_origin`), whatever its
/// content type, so no page elsewhere can log a visitor in or act with their cookie.
/// Clients that are not browsers send neither header and are unaffected.
async fn same_origin(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{Method, header};
    use axum::response::IntoResponse;
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let headers = req.headers();
    let cross_site = headers
        .get("sec-fetch-site")
        .is_some_and(|v| v.as_bytes() == b"cross-site");
    let foreign_origin = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .filter(|o| *o != "null")
        .is_some_and(|origin| {
            // HTTP/2 carries the host in the URI's authority, not a Host header.
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .or_else(|| req.uri().authority().map(|a| a.as_str()));
            let origin_host = origin.split_once("://").map_or(origin, |(_, h)| h);
            host.is_none_or(|h| !h.eq_ignore_ascii_case(origin_host))
        });
    let null_origin = headers
        .get(header::ORIGIN)
        .is_some_and(|o| o.as_bytes() == b"null");
    if !safe && (cross_site || foreign_origin || null_origin) {
        return MgmtError::new(
            axum::http::StatusCode::FORBIDDEN,
            "cross_origin",
            "requests from another site's pages are refused; use the console or an API client",
        )
        .into_response();
    }
    next.run(req).await
}

/// The 500 a panicking management or console handler answers with (see `app::catch_panic`).
pub fn internal_error() -> axum::response::Response {
    use axum::response::IntoResponse;
    MgmtError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal error; the x-request-id header identifies it in the server's log",
    )
    .into_response()
}
