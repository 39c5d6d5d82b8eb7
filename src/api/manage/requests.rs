//! An account's request log for its owners and members: each request's metadata record
//! (model, endpoint, status, timings, each token kind, cost), newest first, optionally of
//! one key, and one record by its request id. Never content: there is none to give.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{Need, Principal};
use super::error::MgmtError;
use super::page::{PageQuery, by_creation, page_of};
use crate::api::standing::Generation;
use crate::app::AppState;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogQuery {
    #[serde(default)]
    key_id: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    cursor: Option<String>,
}

/// `GET …/requests[?key_id=]`: the newest records first, a page at a time; the cursor is
/// the last record's start time and id.
pub async fn list(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
    query: Result<Query<LogQuery>, QueryRejection>,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Read).await?;
    let Query(q) = query.map_err(|e| super::page::query_error(&e, "key_id"))?;
    if q.key_id
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 128)
    {
        return Err(MgmtError::invalid("key_id", "key_id: not a key id"));
    }
    let paging = PageQuery {
        limit: q.limit,
        cursor: q.cursor,
    };
    let limit = paging.limit()?;
    let records = state
        .store
        .recent_usage_records(
            &account,
            q.key_id.as_deref(),
            paging.after_creation()?,
            i64::try_from(limit + 1).unwrap_or(i64::MAX),
        )
        .await?;
    let page: Vec<Generation> = records.iter().map(Generation::from).collect();
    Ok(page_of(page, limit, |g| by_creation(g.started_ms, g.id)))
}

/// `GET …/requests/{request_id}`: one record (the `x-request-id` of an answer).
pub async fn get(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path((account, id)): Path<(String, String)>,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Read).await?;
    let record = state
        .store
        .usage_record(&account, &id)
        .await?
        .ok_or_else(|| MgmtError::not_found("request"))?;
    Ok(axum::Json(Generation::from(&record)).into_response())
}
