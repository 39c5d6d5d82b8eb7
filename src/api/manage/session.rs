//! Sign-up, login (session cookie + CSRF token), the current session, logout, and "who am I".
//!
//! The CSRF token is derived from the session token with the server's keyed hash, so
//! `GET /api/v1/session` can hand it back after a page reload without it being stored;
//! the session row keeps only its hash, which is what `auth.rs` checks writes against.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;

use super::auth::{Principal, SESSION_COOKIE, Who, cookie_in};
use super::error::{MgmtError, parse};
use crate::admin::{self, Actor};
use crate::app::{AppState, RequestContext};
use crate::store::{Role, User};
use crate::time::now_ms;

/// Purpose under which the CSRF token is derived from the session token.
const CSRF_DERIVATION: &str = "csrf-token";

/// The session's CSRF token (a pure function of the session token and the server secret).
fn csrf_token(state: &AppState, session_token: &str) -> String {
    state.keys.hasher().derive(CSRF_DERIVATION, session_token)
}

/// What login and `GET /api/v1/session` answer: the user, their memberships, the CSRF token.
async fn session_body(
    state: &AppState,
    user: &User,
    csrf: &str,
    expires_ms: i64,
) -> Result<Value, MgmtError> {
    Ok(json!({
        "user": user,
        "memberships": state.store.memberships_of(&user.id).await?,
        "csrf_token": csrf,
        "expires_ms": expires_ms,
        "operator": user.is_operator,
        "privacy_seen_version": user.privacy_seen_version,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signup {
    email: String,
    password: String,
    account_name: String,
}

pub async fn signup(
    State(state): State<Arc<AppState>>,
    ctx: Option<axum::Extension<RequestContext>>,
    body: super::error::Body,
) -> Result<Response, MgmtError> {
    let ip = ctx.and_then(|c| c.client_ip);
    if !state.accounts.open_signup {
        return Err(MgmtError::new(
            StatusCode::FORBIDDEN,
            "signup_closed",
            "sign-up is closed; ask an operator for an invitation",
        ));
    }
    let req: Signup = parse(&body)?;
    // Every sign-up counts against the address: accounts cannot be minted in bulk.
    let subjects = throttle_subjects(&state, "signup", ip, None);
    if let Some(refused) = check_throttle(&state, &subjects).await {
        return Ok(refused);
    }
    for s in &subjects {
        state.limits.failed(s).await;
    }
    let actor = Actor {
        kind: "signup",
        id: None,
        client_ip: None,
    };
    admin::check_name("account_name", &req.account_name, 128)?;
    let user = admin::create_user(&state.store, &actor, &req.email, &req.password, false).await?;
    let account = admin::create_account(&state.store, &actor, &req.account_name).await?;
    admin::add_member(
        &state.store,
        &actor,
        &account.id,
        &user.email,
        Role::Owner,
        None,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"user": user, "account": account})),
    )
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    email: String,
    password: String,
}

/// A refused attempt past the throttle: 429 with `Retry-After`, in our JSON.
fn too_many_attempts(retry_after_s: u64) -> Response {
    let mut response = MgmtError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        "too many failed attempts; wait before trying again",
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_s));
    response
}

/// Login and sign-up are throttled like failed keys: per client address and, for login,
/// per email (kept as a keyed hash, never the address itself), `limits.auth_failures_per_minute`.
pub(super) fn throttle_subjects(
    state: &AppState,
    what: &str,
    ip: Option<std::net::IpAddr>,
    email: Option<&str>,
) -> Vec<String> {
    let mut subjects = Vec::with_capacity(2);
    if let Some(ip) = ip {
        subjects.push(format!("{what}-ip:{ip}"));
    }
    if let Some(email) = email {
        let email = email.trim().to_ascii_lowercase();
        subjects.push(format!(
            "{what}-email:{}",
            state.keys.hasher().derive("login-throttle", &email)
        ));
    }
    subjects
}

pub(super) async fn check_throttle(state: &AppState, subjects: &[String]) -> Option<Response> {
    for s in subjects {
        if let Err(refusal) = state.limits.check_subject(s).await {
            return Some(too_many_attempts(refusal.retry_after_s));
        }
    }
    None
}

pub async fn login(
    State(state): State<Arc<AppState>>,
    ctx: Option<axum::Extension<RequestContext>>,
    body: super::error::Body,
) -> Result<Response, MgmtError> {
    let req: Login = parse(&body)?;
    let ip = ctx.and_then(|c| c.client_ip);
    let subjects = throttle_subjects(&state, "login", ip, Some(&req.email));
    if let Some(refused) = check_throttle(&state, &subjects).await {
        return Ok(refused);
    }
    let user = match admin::login(&state.store, &req.email, &req.password).await? {
        Ok(user) => user,
        Err(known) => {
            for s in &subjects {
                state.limits.failed(s).await;
            }
            let accounts = match &known {
                Some(u) => state
                    .store
                    .memberships_of(&u.id)
                    .await?
                    .into_iter()
                    .map(|m| m.account_id)
                    .collect(),
                None => Vec::new(),
            };
            state.security.login_failed(ip, &accounts);
            tracing::info!(client_ip = ?ip.map(crate::keys::truncate_ip), known_user = known.is_some(), "login failed");
            return Err(MgmtError::unauthenticated("wrong email or password"));
        }
    };
    let hasher = state.keys.hasher();
    let io = |e: std::io::Error| {
        MgmtError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    };
    let (token, token_hash) = hasher.opaque("session").map_err(io)?;
    let csrf = csrf_token(&state, token.expose());
    let csrf_hash = hasher.hash("csrf", &csrf);
    let ttl_ms = i64::try_from(state.accounts.session_ttl_hours.saturating_mul(3_600_000))
        .unwrap_or(i64::MAX / 2);
    let expires_ms = now_ms().saturating_add(ttl_ms);
    state
        .store
        .create_session(&token_hash, &user.id, &csrf_hash, expires_ms)
        .await?;
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        token.expose(),
        ttl_ms / 1000,
        if state.secure_cookies { "; Secure" } else { "" }
    );
    let mut response =
        axum::Json(session_body(&state, &user, &csrf, expires_ms).await?).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

/// The caller's cookie session, as login returned it (the CSRF token recomputed), so a
/// reloaded console can carry on. Bearer callers have no session: 400 `session_required`.
pub async fn current(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Response, MgmtError> {
    let no_session = || {
        MgmtError::session_required(
            "a bearer credential has no session and no CSRF token (it needs none); see GET /api/v1/me",
        )
    };
    let Who::User(user) = &principal.who else {
        return Err(no_session());
    };
    let token = cookie_in(&headers, SESSION_COOKIE).ok_or_else(no_session)?;
    let hasher = state.keys.hasher();
    let expired = || MgmtError::unauthenticated("the session has expired; log in again");
    let row = state
        .store
        .session(&hasher.hash("session", token))
        .await?
        .filter(|s| s.expires_ms > now_ms())
        .ok_or_else(expired)?;
    let csrf = csrf_token(&state, token);
    // A session opened before CSRF tokens were derived has a random one that cannot be
    // recovered: such a session must log in again.
    if !bool::from(hasher.hash("csrf", &csrf).0.ct_eq(&row.csrf_hash.0)) {
        return Err(MgmtError::unauthenticated(
            "this session's CSRF token cannot be recovered; log in again",
        ));
    }
    Ok(axum::Json(session_body(&state, user, &csrf, row.expires_ms).await?).into_response())
}

pub async fn logout(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    headers: HeaderMap,
) -> Result<Response, MgmtError> {
    if let Who::User(_) = principal.who
        && let Some(s) = cookie_in(&headers, SESSION_COOKIE)
    {
        state
            .store
            .delete_session(&state.keys.hasher().hash("session", s))
            .await?;
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("ig_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(response)
}

pub async fn me(
    State(state): State<Arc<AppState>>,
    principal: Principal,
) -> Result<Response, MgmtError> {
    let body = match &principal.who {
        Who::User(u) => {
            json!({"kind": "user", "user": u, "operator": u.is_operator, "memberships": state.store.memberships_of(&u.id).await?,
                   "privacy_seen_version": u.privacy_seen_version})
        }
        Who::Token(t) => json!({"kind": "token", "token": t, "operator": t.role == "operator"}),
        Who::Admin => json!({"kind": "admin_token", "operator": true}),
    };
    Ok(axum::Json(body).into_response())
}
