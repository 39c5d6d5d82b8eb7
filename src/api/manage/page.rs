//! Paged lists: `?limit=` (1–1000, default 100) and `?cursor=` (the `next_cursor` of the
//! page before), answered as `{"data": [...], "next_cursor": "…" | null}`.
//!
//! Each list orders its items by a key that is unique and stable (creation time and id,
//! or an inverted id for newest-first lists); the cursor is the last key of a page, so an
//! item created or deleted between two pages moves nothing already seen.

use axum::extract::Query;
use axum::extract::rejection::QueryRejection;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::MgmtError;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default)]
    pub cursor: Option<String>,
}

impl PageQuery {
    /// The query of a list that takes nothing else, with a 400 naming the bad parameter.
    pub fn from_query(query: Result<Query<PageQuery>, QueryRejection>) -> Result<Self, MgmtError> {
        query.map(|Query(q)| q).map_err(|e| {
            let text = e.body_text();
            let field = if text.contains("cursor") {
                "cursor"
            } else {
                "limit"
            };
            MgmtError::invalid(field, format!("{field}: {text}"))
        })
    }
}

/// A list's query string refused: the 400 names `limit` or `cursor` when the complaint is
/// about one of them, else `other` (the list's own filter).
pub fn query_error(e: &QueryRejection, other: &str) -> MgmtError {
    let text = e.body_text();
    let field = ["limit", "cursor"]
        .into_iter()
        .find(|f| text.contains(f))
        .unwrap_or(other);
    MgmtError::invalid(field, format!("{field}: {text}"))
}

/// One page of `items`, ordered by `key` (which must be unique per item).
pub fn page<T: Serialize>(
    items: Vec<T>,
    q: &PageQuery,
    key: impl Fn(&T) -> String,
) -> Result<Response, MgmtError> {
    let limit = q.limit()?;
    if q.cursor.as_ref().is_some_and(|c| c.len() > 512) {
        return Err(MgmtError::invalid(
            "cursor",
            "cursor: not a cursor this API gave",
        ));
    }
    let mut keyed: Vec<(String, T)> = items.into_iter().map(|t| (key(&t), t)).collect();
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let start = q
        .cursor
        .as_deref()
        .map_or(0, |c| keyed.partition_point(|(k, _)| k.as_str() <= c));
    let items: Vec<T> = keyed
        .into_iter()
        .skip(start)
        .take(limit + 1)
        .map(|(_, t)| t)
        .collect();
    Ok(page_of(items, limit, key))
}

#[derive(Serialize)]
struct Page<T> {
    data: Vec<T>,
    next_cursor: Option<String>,
}

impl PageQuery {
    /// The page size asked for (1–1000, default 100), or a 400 naming `limit`.
    pub fn limit(&self) -> Result<usize, MgmtError> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(MgmtError::invalid(
                "limit",
                format!("limit: must be between 1 and {MAX_LIMIT}"),
            ));
        }
        Ok(limit)
    }

    /// The (creation time, id) a `by_creation` cursor names, or a 400 naming `cursor`.
    pub fn after_creation(&self) -> Result<Option<(i64, &str)>, MgmtError> {
        let Some(cursor) = self.cursor.as_deref() else {
            return Ok(None);
        };
        cursor
            .split_once('.')
            .and_then(|(ms, id)| Some((ms.parse::<i64>().ok()?, id)))
            .filter(|_| cursor.len() <= 512)
            .map(Some)
            .ok_or_else(|| MgmtError::invalid("cursor", "cursor: not a cursor this API gave"))
    }
}

/// A page a store query produced: `limit + 1` items were asked for, so one more than
/// `limit` means there is a next page, which starts after the last item shown.
pub fn page_of<T: Serialize>(
    mut items: Vec<T>,
    limit: usize,
    key: impl Fn(&T) -> String,
) -> Response {
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(key)
    } else {
        None
    };
    // Serialised straight from the items: no intermediate JSON tree of a whole page.
    axum::Json(Page {
        data: items,
        next_cursor,
    })
    .into_response()
}

/// A key for oldest-first lists: creation time, then id.
pub fn by_creation(created_ms: i64, id: &str) -> String {
    format!("{:020}.{id}", created_ms.max(0))
}

/// A key for newest-first lists of increasing numbers (audit ids, hour buckets).
pub fn newest_first(n: i64) -> String {
    format!("{:020}", i64::MAX - n.max(0))
}
