//! Sign-up, login (session cookie + CSRF token), logout, and "who am I".

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::auth::{Principal, SESSION_COOKIE, Who};
use super::error::{MgmtError, parse};
use crate::admin::{self, Actor};
use crate::app::AppState;
use crate::store::Role;
use crate::time::now_ms;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signup {
    email: String,
    password: String,
    account_name: String,
}

pub async fn signup(
    State(state): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Result<Response, MgmtError> {
    if !state.accounts.open_signup {
        return Err(MgmtError::new(
            StatusCode::FORBIDDEN,
            "signup_closed",
            "sign-up is closed; ask an operator for an invitation",
        ));
    }
    let req: Signup = parse(&body)?;
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

pub async fn login(
    State(state): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Result<Response, MgmtError> {
    let req: Login = parse(&body)?;
    let user = admin::login(&state.store, &req.email, &req.password)
        .await?
        .ok_or_else(|| MgmtError::unauthenticated("wrong email or password"))?;
    let hasher = state.keys.hasher();
    let io = |e: std::io::Error| {
        MgmtError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            e.to_string(),
        )
    };
    let (token, _) = hasher.opaque("session").map_err(io)?;
    let token_hash = hasher.hash("session", token.expose());
    let (csrf, _) = hasher.opaque("csrf").map_err(io)?;
    let csrf_hash = hasher.hash("csrf", csrf.expose());
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
    let memberships = state.store.memberships_of(&user.id).await?;
    let mut response = axum::Json(json!({
        "user": user,
        "memberships": memberships,
        "csrf_token": csrf.expose(),
        "expires_ms": expires_ms,
    }))
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(response)
}

pub async fn logout(
    State(state): State<Arc<AppState>>,
    principal: Principal,
    parts: axum::http::HeaderMap,
) -> Result<Response, MgmtError> {
    if let Who::User(_) = principal.who {
        let session = parts
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| *k == SESSION_COOKIE)
            .map(|(_, v)| v.to_owned());
        if let Some(s) = session {
            state
                .store
                .delete_session(&state.keys.hasher().hash("session", &s))
                .await?;
        }
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
            json!({"kind": "user", "user": u, "operator": u.is_operator, "memberships": state.store.memberships_of(&u.id).await?})
        }
        Who::Token(t) => json!({"kind": "token", "token": t, "operator": t.role == "operator"}),
        Who::Admin => json!({"kind": "admin_token", "operator": true}),
    };
    Ok(axum::Json(body).into_response())
}
