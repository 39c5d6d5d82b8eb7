//! Accounts, members and users; operator-only actions say so.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::auth::{Need, Principal, Who};
use super::error::{MgmtError, parse};
use super::page::{PageQuery, by_creation, page};
use crate::admin;
use crate::app::AppState;
use crate::store::Role;

pub async fn list(State(state): State<Arc<AppState>>, p: Principal) -> Result<Response, MgmtError> {
    let accounts = if p.is_operator() {
        state.store.list_accounts().await?
    } else {
        let ids: Vec<String> = match &p.who {
            Who::User(u) => state
                .store
                .memberships_of(&u.id)
                .await?
                .into_iter()
                .map(|m| m.account_id)
                .collect(),
            Who::Token(t) => t.account_id.iter().cloned().collect(),
            Who::Admin => Vec::new(),
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(state.store.account(&id).await?);
        }
        out
    };
    Ok(axum::Json(json!({"data": accounts})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountCreate {
    name: String,
    /// Make this existing (or, with `owner_password`, new) user the owner.
    #[serde(default)]
    owner_email: Option<String>,
    #[serde(default)]
    owner_password: Option<String>,
}

pub async fn create(
    State(state): State<Arc<AppState>>,
    p: Principal,
    body: super::error::Body,
) -> Result<Response, MgmtError> {
    p.require_operator()?;
    let req: AccountCreate = parse(&body)?;
    let actor = p.actor();
    let account = admin::create_account(&state.store, &actor, &req.name).await?;
    if let Some(email) = &req.owner_email {
        admin::add_member(
            &state.store,
            &actor,
            &account.id,
            email,
            Role::Owner,
            req.owner_password.as_deref(),
        )
        .await?;
    }
    Ok((StatusCode::CREATED, axum::Json(account)).into_response())
}

pub async fn get(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
) -> Result<Response, MgmtError> {
    let role = p.authorize(&state, &account, Need::Read).await?;
    let a = state.store.account(&account).await?;
    Ok(axum::Json(json!({"account": a, "your_role": role})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountUpdate {
    /// Provider regions the account's requests may be processed in; `null` lifts the limit.
    #[serde(default, deserialize_with = "super::keys::present")]
    allowed_regions: Option<Option<Vec<String>>>,
    /// Requests and tokens per minute across all the account's keys (`null`: unlimited).
    #[serde(default)]
    limits: Option<AccountLimits>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountLimits {
    #[serde(default)]
    rpm: Option<i64>,
    #[serde(default)]
    tpm: Option<i64>,
}

/// Operator: restrict an account to regions (its keys inherit it, even under failover).
pub async fn update(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
    body: super::error::Body,
) -> Result<Response, MgmtError> {
    p.require_operator()?;
    let req: AccountUpdate = parse(&body)?;
    if req.allowed_regions.is_none() && req.limits.is_none() {
        return Err(MgmtError::invalid(
            "allowed_regions",
            "give `allowed_regions` (a list, or null to lift it) and/or `limits` ({rpm, tpm})",
        ));
    }
    let actor = p.actor();
    let mut a = state.store.account(&account).await?;
    if let Some(regions) = req.allowed_regions {
        a = admin::set_account_regions(&state.store, &actor, &account, regions).await?;
    }
    if let Some(l) = req.limits {
        a = admin::set_account_limits(&state.store, &actor, &account, l.rpm, l.tpm).await?;
    }
    Ok(axum::Json(a).into_response())
}

async fn set_suspended(
    state: &AppState,
    p: &Principal,
    account: &str,
    suspended: bool,
) -> Result<Response, MgmtError> {
    p.require_operator()?;
    admin::set_account_status(&state.store, &p.actor(), account, suspended).await?;
    Ok(axum::Json(state.store.account(account).await?).into_response())
}

pub async fn suspend(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
) -> Result<Response, MgmtError> {
    set_suspended(&state, &p, &account, true).await
}

pub async fn unsuspend(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
) -> Result<Response, MgmtError> {
    set_suspended(&state, &p, &account, false).await
}

pub async fn members(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
    query: Result<axum::extract::Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Read).await?;
    let q = PageQuery::from_query(query)?;
    let members = state.store.members(&account).await?;
    page(members, &q, |m| by_creation(m.created_ms, &m.user_id))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberAdd {
    email: String,
    role: Role,
    /// Needed only when the email belongs to no user yet (the invitee's first password).
    #[serde(default)]
    password: Option<String>,
}

pub async fn add_member(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
    body: super::error::Body,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Owner).await?;
    let req: MemberAdd = parse(&body)?;
    // Operators administer users and add them directly (creating one with `password`).
    if p.is_operator() {
        let m = admin::add_member(
            &state.store,
            &p.actor(),
            &account,
            &req.email,
            req.role,
            req.password.as_deref(),
        )
        .await?;
        return Ok((StatusCode::CREATED, axum::Json(m)).into_response());
    }
    // An owner changes a member's role directly, and invites anyone else: they join only by
    // accepting, and the answer does not say whether the email has a login.
    if req.password.is_some() {
        return Err(MgmtError::invalid(
            "password",
            "password: owners invite; the invitee chooses their own password when accepting",
        ));
    }
    let email = req.email.trim().to_ascii_lowercase();
    let members = state.store.members(&account).await?;
    if members.iter().any(|m| m.email == email) {
        let m =
            admin::add_member(&state.store, &p.actor(), &account, &email, req.role, None).await?;
        return Ok((StatusCode::CREATED, axum::Json(m)).into_response());
    }
    let created = admin::invite(
        &state.store,
        state.keys.hasher(),
        &p.actor(),
        &account,
        &email,
        req.role,
        p.user_id(),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(created)).into_response())
}

/// Pending invitations of the account (owners).
pub async fn invitations(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
    query: Result<axum::extract::Query<PageQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Owner).await?;
    let q = PageQuery::from_query(query)?;
    let pending = state.store.account_invitations(&account).await?;
    page(pending, &q, |i| by_creation(i.created_ms, &i.id))
}

/// Revokes a pending invitation (owners).
pub async fn revoke_invitation(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path((account, id)): Path<(String, String)>,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Owner).await?;
    state.store.delete_invitation(&account, &id).await?;
    crate::admin::audit(
        &state.store,
        &p.actor(),
        Some(&account),
        "invitation.revoke",
        Some(&id),
    )
    .await;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// The signed-in user of a session (invitations are answered by the invitee in person).
fn session_user(p: &Principal) -> Result<&crate::store::User, MgmtError> {
    match &p.who {
        super::auth::Who::User(u) => Ok(u),
        _ => Err(MgmtError::session_required(
            "invitations are accepted by the invited user, signed in",
        )),
    }
}

/// Invitations addressed to the signed-in user's email.
pub async fn my_invitations(
    State(state): State<Arc<AppState>>,
    p: Principal,
) -> Result<Response, MgmtError> {
    let user = session_user(&p)?;
    let pending = state.store.invitations_for(&user.email).await?;
    Ok(axum::Json(json!({"data": pending})).into_response())
}

/// The signed-in user accepts an invitation addressed to them.
pub async fn accept_my_invitation(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(id): Path<String>,
) -> Result<Response, MgmtError> {
    let user = session_user(&p)?;
    let invitation = state
        .store
        .invitations_for(&user.email)
        .await?
        .into_iter()
        .find(|i| i.id == id)
        .ok_or_else(|| MgmtError::not_found("invitation"))?;
    let m = admin::accept_invitation(&state.store, &p.actor(), &invitation, user).await?;
    Ok((StatusCode::CREATED, axum::Json(m)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InvitationAccept {
    token: String,
    password: String,
}

/// Someone without a login accepts an invitation with its token, choosing a password: the
/// user and the membership are created. An email that has a login accepts signed in.
pub async fn accept_invitation_with_token(
    State(state): State<Arc<AppState>>,
    ctx: Option<axum::Extension<crate::app::RequestContext>>,
    body: super::error::Body,
) -> Result<Response, MgmtError> {
    let req: InvitationAccept = parse(&body)?;
    let ip = ctx.and_then(|c| c.client_ip);
    let subjects = super::session::throttle_subjects(&state, "invitation", ip, None);
    if let Some(refused) = super::session::check_throttle(&state, &subjects).await {
        return Ok(refused);
    }
    let hash = state.keys.hasher().hash("invitation", req.token.trim());
    let invitation = match state.store.invitation_by_token(&hash).await {
        Ok(i) => i,
        Err(crate::store::StoreError::NotFound(_)) => {
            for s in &subjects {
                state.limits.failed(s).await;
            }
            return Err(MgmtError::not_found("invitation"));
        }
        Err(e) => return Err(e.into()),
    };
    match state.store.user_by_email(&invitation.email).await {
        Ok(_) => {
            return Err(MgmtError::new(
                StatusCode::CONFLICT,
                "login_exists",
                "this email already has a login: sign in and accept the invitation there",
            ));
        }
        Err(crate::store::StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let actor = crate::admin::Actor {
        kind: "invitation",
        id: Some(invitation.id.clone()),
        client_ip: ip.map(crate::keys::truncate_ip),
    };
    let user = admin::create_user(
        &state.store,
        &actor,
        &invitation.email,
        &req.password,
        false,
    )
    .await?;
    let m = admin::accept_invitation(&state.store, &actor, &invitation, &user).await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({"user": user, "membership": m})),
    )
        .into_response())
}

pub async fn remove_member(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path((account, user_id)): Path<(String, String)>,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Owner).await?;
    admin::remove_member(&state.store, &p.actor(), &account, &user_id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn users(
    State(state): State<Arc<AppState>>,
    p: Principal,
) -> Result<Response, MgmtError> {
    p.require_operator()?;
    Ok(axum::Json(json!({"data": state.store.list_users().await?})).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserCreate {
    email: String,
    password: String,
    #[serde(default)]
    operator: bool,
}

pub async fn create_user(
    State(state): State<Arc<AppState>>,
    p: Principal,
    body: super::error::Body,
) -> Result<Response, MgmtError> {
    p.require_operator()?;
    let req: UserCreate = parse(&body)?;
    let user = admin::create_user(
        &state.store,
        &p.actor(),
        &req.email,
        &req.password,
        req.operator,
    )
    .await?;
    Ok((StatusCode::CREATED, axum::Json(user)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Range {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
}

pub async fn usage_summary(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
    range: Result<axum::extract::Query<Range>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Read).await?;
    let axum::extract::Query(range) =
        range.map_err(|e| MgmtError::invalid("query", e.body_text()))?;
    let parse = |field: &str, v: &Option<String>, default: i64| -> Result<i64, MgmtError> {
        v.as_deref().map_or(Ok(default), |t| {
            crate::time::parse_rfc3339(t)
                .map_err(|e| MgmtError::invalid(field, format!("{field}: {e}")))
        })
    };
    let from = parse("from", &range.from, 0)?;
    let to = parse("to", &range.to, i64::MAX)?;
    Ok(axum::Json(admin::usage_summary(&state.store, &account, from, to).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccount {
    /// The account's exact name, typed to confirm.
    confirm: String,
}

/// Erases the account (owner only); the ledger and daily aggregates are kept pseudonymised.
pub async fn delete_account(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
    body: super::error::Body,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Owner).await?;
    let req: DeleteAccount = parse(&body)?;
    let erased = admin::delete_account(&state.store, &p.actor(), &account, &req.confirm).await?;
    Ok(axum::Json(json!({"deleted": true, "erased": erased})).into_response())
}

/// Everything held about the account, as one JSON document (per-request records streamed).
pub async fn export_all(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
) -> Result<Response, MgmtError> {
    use futures_util::StreamExt;
    p.authorize(&state, &account, Need::Owner).await?;
    let snapshot = admin::account_snapshot(&state.store, &account).await?;
    let mut head = snapshot.to_string();
    head.pop(); // the closing brace; the records array follows
    head.push_str(",\"usage_records\":");
    let records = crate::usage::export::export(
        state.store.clone(),
        account.clone(),
        0,
        i64::MAX,
        crate::usage::export::Format::Json,
        crate::usage::export::Level::Request,
    );
    let body = futures_util::stream::once(async move {
        Ok::<_, crate::store::StoreError>(bytes::Bytes::from(head))
    })
    .chain(records)
    .chain(futures_util::stream::once(async {
        Ok(bytes::Bytes::from_static(b"}"))
    }));
    let mut response = axum::body::Body::from_stream(body).into_response();
    response.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        axum::http::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}
