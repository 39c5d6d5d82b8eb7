//! The management API under `/api/v1`: accounts, users, keys, tokens, audit, security
//! events, providers, route health, models and prices, and the privacy policy — and its
//! OpenAPI 3.1 document at `/api/openapi.json`.
//!
//! [`ROUTES`] is the one list of operations: the router below registers exactly these,
//! the OpenAPI document is generated from it, and the tenant-isolation test walks it.

mod accounts;
mod auth;
mod billing;
mod error;
mod keys;
mod models;
mod openapi;
mod page;
mod privacy;
mod providers;
mod session;
mod tokens;
mod usage;

use std::sync::Arc;

use axum::Router;
use axum::routing::{delete, get, post};

pub use auth::{CSRF_HEADER, Principal, SESSION_COOKIE};
pub use error::{Body, MgmtError};
pub use openapi::{ROUTES, RouteDoc, document};
pub use usage::check_query_string;

use crate::app::AppState;

pub fn router() -> Router<Arc<AppState>> {
    let acct = "/api/v1/accounts/{account}";
    Router::new()
        .route("/api/openapi.json", get(openapi::serve))
        .route("/api/v1/signup", post(session::signup))
        .route(
            "/api/v1/session",
            get(session::current)
                .post(session::login)
                .delete(session::logout),
        )
        .route("/api/v1/me", get(session::me))
        .route("/api/v1/me/privacy", post(privacy::acknowledge))
        .route("/api/v1/privacy", get(privacy::show))
        .route("/api/v1/models", get(models::list))
        .route(
            "/api/v1/users",
            get(accounts::users).post(accounts::create_user),
        )
        .route("/api/v1/audit", get(tokens::audit_all))
        .route(
            "/api/v1/providers",
            get(providers::list).post(providers::create),
        )
        .route(
            "/api/v1/providers/{name}",
            get(providers::get)
                .patch(providers::update)
                .delete(providers::delete),
        )
        .route("/api/v1/routes", get(providers::routes))
        .route("/api/v1/security-events", get(tokens::security_events_all))
        .route(
            "/api/v1/accounts",
            get(accounts::list).post(accounts::create),
        )
        .route(
            acct,
            get(accounts::get)
                .patch(accounts::update)
                .delete(accounts::delete_account),
        )
        .route(&format!("{acct}/export-all"), get(accounts::export_all))
        .route(&format!("{acct}/suspend"), post(accounts::suspend))
        .route(&format!("{acct}/unsuspend"), post(accounts::unsuspend))
        .route(
            &format!("{acct}/members"),
            get(accounts::members).post(accounts::add_member),
        )
        .route(
            &format!("{acct}/members/{{user_id}}"),
            delete(accounts::remove_member),
        )
        .route(&format!("{acct}/invitations"), get(accounts::invitations))
        .route(
            &format!("{acct}/invitations/{{invitation_id}}"),
            delete(accounts::revoke_invitation),
        )
        .route("/api/v1/me/invitations", get(accounts::my_invitations))
        .route(
            "/api/v1/me/invitations/{invitation_id}/accept",
            post(accounts::accept_my_invitation),
        )
        .route(
            "/api/v1/invitations/accept",
            post(accounts::accept_invitation_with_token),
        )
        .route(
            &format!("{acct}/usage/summary"),
            get(accounts::usage_summary),
        )
        .route(&format!("{acct}/usage"), get(usage::analytics))
        .route(&format!("{acct}/billing"), get(billing::show))
        .route(&format!("{acct}/billing/credits"), post(billing::credit))
        .route(
            &format!("{acct}/billing/adjustments"),
            post(billing::adjust),
        )
        .route(&format!("{acct}/usage/export"), get(usage::export_usage))
        .route(&format!("{acct}/keys"), get(keys::list).post(keys::create))
        .route(
            &format!("{acct}/keys/{{key_id}}"),
            get(keys::get).patch(keys::update).delete(keys::delete),
        )
        .route(
            &format!("{acct}/keys/{{key_id}}/rotate"),
            post(keys::rotate),
        )
        .route(
            &format!("{acct}/keys/{{key_id}}/disable"),
            post(keys::disable),
        )
        .route(
            &format!("{acct}/keys/{{key_id}}/enable"),
            post(keys::enable),
        )
        .route(
            &format!("{acct}/tokens"),
            get(tokens::list).post(tokens::create),
        )
        .route(
            &format!("{acct}/tokens/{{token_id}}"),
            delete(tokens::revoke),
        )
        .route(&format!("{acct}/audit"), get(tokens::audit))
        .route(
            &format!("{acct}/security-events"),
            get(tokens::security_events),
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
