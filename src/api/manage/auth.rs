//! Who is calling the management API, and what they may do to which account.
//!
//! Credentials: a session cookie (writes also need the `x-csrf-token` from login), a
//! management token `igm-…`, or the bootstrap admin token. An access key (`ig-…`) is
//! refused here, as a management token is refused on `/v1`. A principal that is not a
//! member of an account gets 404 for everything in it, never 403, so account ids
//! cannot be probed.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use subtle::ConstantTimeEq;

use super::error::MgmtError;
use crate::admin::Actor;
use crate::app::{AppState, RequestContext};
use crate::keys::{KEY_PREFIX, ParsedKey, TOKEN_PREFIX, truncate_ip};
use crate::store::{Role, StoreError, TokenInfo, User};
use crate::time::now_ms;

pub const SESSION_COOKIE: &str = "ig_session";
pub const CSRF_HEADER: &str = "x-csrf-token";

pub enum Who {
    User(User),
    Token(TokenInfo),
    Admin,
}

pub struct Principal {
    pub who: Who,
    pub client_ip: Option<String>,
}

/// What an operation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Read,
    Write,
    Owner,
}

impl Principal {
    pub fn is_operator(&self) -> bool {
        match &self.who {
            Who::User(u) => u.is_operator,
            Who::Token(t) => t.role == "operator",
            Who::Admin => true,
        }
    }

    pub fn actor(&self) -> Actor {
        let (kind, id) = match &self.who {
            Who::User(u) => ("user", Some(u.id.clone())),
            Who::Token(t) => ("token", Some(t.id.clone())),
            Who::Admin => ("admin_token", None),
        };
        Actor {
            kind,
            id,
            client_ip: self.client_ip.clone(),
        }
    }

    /// The user this principal acts for: a signed-in user, or the user a management token
    /// derives from. Tokens created by this principal derive from the same user.
    pub fn user_id(&self) -> Option<&str> {
        match &self.who {
            Who::User(u) => Some(&u.id),
            Who::Token(t) => t.created_by.as_deref(),
            Who::Admin => None,
        }
    }

    pub fn require_operator(&self) -> Result<(), MgmtError> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(MgmtError::forbidden("only operators may do this"))
        }
    }

    /// The caller's role in `account_id`, checked against `need`; 404 for non-members.
    pub async fn authorize(
        &self,
        state: &AppState,
        account_id: &str,
        need: Need,
    ) -> Result<Role, MgmtError> {
        let role = if self.is_operator() {
            Some(Role::Owner)
        } else {
            match &self.who {
                Who::Token(t) if t.account_id.as_deref() == Some(account_id) => {
                    Role::parse(&t.role)
                }
                Who::Token(_) => None,
                Who::User(u) => state.store.role_of(account_id, &u.id).await?,
                Who::Admin => Some(Role::Owner),
            }
        };
        let Some(role) = role else {
            return Err(MgmtError::not_found("account"));
        };
        match state.store.account(account_id).await {
            Ok(_) => {}
            Err(StoreError::NotFound(_)) => return Err(MgmtError::not_found("account")),
            Err(e) => return Err(e.into()),
        }
        let enough = match need {
            Need::Read => true,
            Need::Write => role >= Role::Member,
            Need::Owner => role == Role::Owner,
        };
        if !enough {
            return Err(MgmtError::forbidden(format!(
                "the {} role cannot do this",
                role.as_str()
            )));
        }
        Ok(role)
    }
}

/// The value of cookie `name` in a request's `Cookie` headers.
pub fn cookie_in<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl FromRequestParts<Arc<AppState>> for Principal {
    type Rejection = MgmtError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let client_ip = parts
            .extensions
            .get::<RequestContext>()
            .and_then(|c| c.client_ip)
            .map(truncate_ip);
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.trim()
                    .strip_prefix("Bearer ")
                    .or_else(|| v.trim().strip_prefix("bearer "))
                    .unwrap_or(v)
                    .trim()
            });
        if let Some(token) = bearer {
            let who = bearer_principal(state, token).await?;
            return Ok(Principal { who, client_ip });
        }
        if let Some(session) = cookie_in(&parts.headers, SESSION_COOKIE) {
            let hash = state.keys.hasher().hash("session", session);
            let row = state
                .store
                .session(&hash)
                .await?
                .filter(|s| s.expires_ms > now_ms())
                .ok_or_else(|| {
                    MgmtError::unauthenticated("the session has expired; log in again")
                })?;
            let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
            if !safe {
                let presented = parts
                    .headers
                    .get(CSRF_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let presented = state.keys.hasher().hash("csrf", presented);
                if !bool::from(presented.0.ct_eq(&row.csrf_hash.0)) {
                    return Err(MgmtError::new(
                        StatusCode::FORBIDDEN,
                        "csrf_failed",
                        "cookie-authenticated writes need the x-csrf-token header from login",
                    ));
                }
            }
            let user = state.store.user(&row.user_id).await?;
            return Ok(Principal {
                who: Who::User(user),
                client_ip,
            });
        }
        Err(MgmtError::unauthenticated(
            "log in (POST /api/v1/session) or send `Authorization: Bearer igm-…`",
        ))
    }
}

/// A token is worth no more than the access of the user it derives from, as of now: none
/// once they left the account (or lost operator rights, or were deleted), and never a
/// higher role than theirs. Tokens made by the CLI or the admin token derive from no user.
async fn derived_access(
    state: &AppState,
    mut token: TokenInfo,
) -> Result<Option<TokenInfo>, MgmtError> {
    let Some(user_id) = token.created_by.as_deref() else {
        return Ok(Some(token));
    };
    match token.account_id.as_deref() {
        Some(account) => {
            let Some(theirs) = state.store.role_of(account, user_id).await? else {
                return Ok(None);
            };
            if Role::parse(&token.role).is_some_and(|r| r > theirs) {
                token.role = theirs.as_str().to_owned();
            }
            Ok(Some(token))
        }
        None => match state.store.user(user_id).await {
            Ok(u) if u.is_operator => Ok(Some(token)),
            Ok(_) | Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e.into()),
        },
    }
}

async fn bearer_principal(state: &AppState, token: &str) -> Result<Who, MgmtError> {
    if token.starts_with(TOKEN_PREFIX) {
        let parsed = ParsedKey::parse_with(TOKEN_PREFIX, token)
            .ok_or_else(|| MgmtError::unauthenticated("malformed management token"))?;
        let invalid = || MgmtError::unauthenticated("invalid or revoked management token");
        let info = match state.store.token(parsed.id).await {
            Ok(t) => t,
            Err(StoreError::NotFound(_)) => return Err(invalid()),
            Err(e) => return Err(e.into()),
        };
        let ok = info.status == crate::store::TokenStatus::Active
            && info
                .hash
                .is_some_and(|h| state.keys.hasher().verify(&parsed, &h));
        if !ok {
            return Err(invalid());
        }
        let info = derived_access(state, info).await?.ok_or_else(invalid)?;
        if let Err(e) = state.store.touch_token(&info.id).await {
            tracing::warn!(error = %e, "cannot record token use");
        }
        return Ok(Who::Token(info));
    }
    if token.starts_with(KEY_PREFIX) {
        return Err(MgmtError::new(
            StatusCode::UNAUTHORIZED,
            "wrong_credential_kind",
            "access keys (ig-…) cannot call the management API; use a management token (igm-…) or log in",
        ));
    }
    if let Some(admin) = &state.accounts.admin_token
        && bool::from(admin.expose().as_bytes().ct_eq(token.as_bytes()))
    {
        return Ok(Who::Admin);
    }
    Err(MgmtError::unauthenticated("invalid credentials"))
}
