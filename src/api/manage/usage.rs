//! Usage analytics (from rollups) and export (streamed) for an account.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::auth::{Need, Principal};
use super::error::MgmtError;
use crate::app::AppState;
use crate::store::{Granularity, GroupBy};
use crate::time::{now_ms, parse_rfc3339};
use crate::usage::export::{self, Format, Level};

const DAY_MS: i64 = 86_400_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    range: Option<String>,
    #[serde(default)]
    bucket: Option<String>,
    #[serde(default)]
    group_by: Option<String>,
}

/// Resolves `from`/`to`/`range` into `[from_ms, to_ms)`; `range` (24h|7d|30d) counts back from `to` (default now).
fn window(
    from: &Option<String>,
    to: &Option<String>,
    range: &Option<String>,
    default_range: i64,
) -> Result<(i64, i64), MgmtError> {
    let parse = |field: &str, v: &str| {
        parse_rfc3339(v).map_err(|e| MgmtError::invalid(field, format!("{field}: {e}")))
    };
    let to_ms = match to {
        Some(t) => parse("to", t)?,
        None => now_ms(),
    };
    let span = match range.as_deref() {
        None => None,
        Some("24h") => Some(DAY_MS),
        Some("7d") => Some(7 * DAY_MS),
        Some("30d") => Some(30 * DAY_MS),
        Some(_) => return Err(MgmtError::invalid("range", "range: must be 24h, 7d or 30d")),
    };
    let from_ms = match (from, span) {
        (Some(_), Some(_)) => {
            return Err(MgmtError::invalid(
                "range",
                "range: give either range or from, not both",
            ));
        }
        (Some(f), None) => parse("from", f)?,
        (None, Some(s)) => to_ms - s,
        (None, None) => to_ms - default_range,
    };
    if from_ms >= to_ms {
        return Err(MgmtError::invalid("from", "from: must be before to"));
    }
    Ok((from_ms, to_ms))
}

/// What an analytics query asks for, checked and bounded.
struct Analytics {
    from: i64,
    to: i64,
    granularity: Granularity,
    group: Breakdown,
}

/// How an analytics query splits its figures: by a rollup column, or by endpoint (read
/// from the per-request records, so only within `usage.retention_days`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Breakdown {
    Rollup(GroupBy),
    Endpoint,
}

fn analytics_params(q: &UsageQuery) -> Result<Analytics, MgmtError> {
    let (from, to) = window(&q.from, &q.to, &q.range, DAY_MS)?;
    let granularity = match q.bucket.as_deref() {
        Some("minute") => Granularity::Minute,
        Some("hour") => Granularity::Hour,
        Some("day") => Granularity::Day,
        None if to - from <= 7 * DAY_MS => Granularity::Hour,
        None => Granularity::Day,
        Some(_) => {
            return Err(MgmtError::invalid(
                "bucket",
                "bucket: must be minute, hour or day",
            ));
        }
    };
    let buckets = (to - from) / granularity.ms();
    if buckets > 10_000 {
        return Err(MgmtError::invalid(
            "bucket",
            "bucket: too many buckets for this range; use a coarser bucket",
        ));
    }
    let group = match q.group_by.as_deref() {
        None => Breakdown::Rollup(GroupBy::Nothing),
        Some("model") => Breakdown::Rollup(GroupBy::Model),
        Some("key") => Breakdown::Rollup(GroupBy::Key),
        Some("endpoint") => Breakdown::Endpoint,
        Some(_) => {
            return Err(MgmtError::invalid(
                "group_by",
                "group_by: must be model, key or endpoint",
            ));
        }
    };
    Ok(Analytics {
        from,
        to,
        granularity,
        group,
    })
}

/// Runs a raw query string through each query parser of the management API (analytics,
/// export, paging) that accepts its parameters, as the handlers do; for the fuzz target and
/// property tests: it must answer Ok or a 400 naming a field, never panic.
pub fn check_query_string(query: &str) -> Result<(), MgmtError> {
    let uri: axum::http::Uri = format!("/?{query}")
        .parse()
        .map_err(|_| MgmtError::invalid("query", "query: not a valid URI query"))?;
    let invalid = |e: QueryRejection| MgmtError::invalid("query", e.body_text());
    if let Ok(Query(q)) = Query::<UsageQuery>::try_from_uri(&uri).map_err(invalid) {
        analytics_params(&q)?;
    }
    if let Ok(Query(q)) = Query::<ExportQuery>::try_from_uri(&uri).map_err(invalid) {
        window(&q.from, &q.to, &q.range, 30 * DAY_MS)?;
        export_params(q.format.as_deref(), q.granularity.as_deref())?;
    }
    if let Ok(page) = super::page::PageQuery::from_query(Query::try_from_uri(&uri)) {
        super::page::page(Vec::<u8>::new(), &page, |n| n.to_string())?;
    }
    Ok(())
}

/// Totals, a time series and a breakdown, all from the rollup tables.
pub async fn analytics(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
    query: Result<Query<UsageQuery>, QueryRejection>,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Read).await?;
    let Query(q) = query.map_err(|e| MgmtError::invalid("query", e.body_text()))?;
    let Analytics {
        from,
        to,
        granularity,
        group,
    } = analytics_params(&q)?;
    let store = &state.store;
    // The first bucket's start: the rollups count whole buckets.
    let floor = from.div_euclid(granularity.ms()) * granularity.ms();
    let totals = store
        .usage_rollup(&account, granularity, from, to, false, GroupBy::Nothing)
        .await?;
    // A series split by endpoint would need the records bucket by bucket: endpoint
    // breakdowns come as totals, beside the unsplit series.
    let series_group = match group {
        Breakdown::Rollup(g) => g,
        Breakdown::Endpoint => GroupBy::Nothing,
    };
    let series = store
        .usage_rollup(&account, granularity, from, to, true, series_group)
        .await?;
    let groups = match group {
        Breakdown::Rollup(GroupBy::Nothing) => Vec::new(),
        Breakdown::Rollup(g) => {
            store
                .usage_rollup(&account, granularity, from, to, false, g)
                .await?
        }
        Breakdown::Endpoint => store.usage_by_endpoint(&account, floor, to).await?,
    };
    let totals = totals.into_iter().next().unwrap_or_default();
    Ok(axum::Json(json!({
        "account_id": account,
        "from_ms": floor,
        "to_ms": to,
        "bucket": granularity.as_str(),
        "group_by": q.group_by,
        "totals": totals,
        "series": series,
        "groups": groups,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    range: Option<String>,
    #[serde(default)]
    granularity: Option<String>,
}

/// Parses export parameters shared with the CLI.
pub fn export_params(
    format: Option<&str>,
    granularity: Option<&str>,
) -> Result<(Format, Level), MgmtError> {
    let format = match format {
        None | Some("csv") => Format::Csv,
        Some("json") => Format::Json,
        Some(_) => return Err(MgmtError::invalid("format", "format: must be csv or json")),
    };
    let level = match granularity {
        None | Some("request") => Level::Request,
        Some("day") => Level::Day,
        Some(_) => {
            return Err(MgmtError::invalid(
                "granularity",
                "granularity: must be request or day",
            ));
        }
    };
    Ok((format, level))
}

/// Streams per-request records (or daily aggregates) as CSV or JSON.
pub async fn export_usage(
    State(state): State<Arc<AppState>>,
    p: Principal,
    Path(account): Path<String>,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> Result<Response, MgmtError> {
    p.authorize(&state, &account, Need::Read).await?;
    let Query(q) = query.map_err(|e| MgmtError::invalid("query", e.body_text()))?;
    let (from, to) = window(&q.from, &q.to, &q.range, 30 * DAY_MS)?;
    let (format, level) = export_params(q.format.as_deref(), q.granularity.as_deref())?;
    let (content_type, ext) = match format {
        Format::Csv => ("text/csv; charset=utf-8; header=present", "csv"),
        Format::Json => ("application/json", "json"),
    };
    let stream = export::export(
        state.store.clone(),
        account.clone(),
        from,
        to,
        format,
        level,
    );
    let mut response = Body::from_stream(stream).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"usage-{account}.{ext}\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_dates_and_ranges_are_400s_naming_the_field() {
        for (query, field) in [
            ("from=2026-01-01T00:00:00%2B12%C3%A90", "from"),
            ("to=2026-02-31", "to"),
            ("from=2026-01-01T00:00:00%2B99:99", "from"),
            ("range=1y", "range"),
            ("bucket=minute&range=30d", "bucket"),
            ("limit=0", "limit"),
        ] {
            let e = check_query_string(query).unwrap_err();
            assert_eq!(e.status, axum::http::StatusCode::BAD_REQUEST, "{query}");
            assert_eq!(e.field.as_deref(), Some(field), "{query}: {}", e.message);
        }
        assert!(check_query_string("range=7d&group_by=model").is_ok());
    }

    proptest::proptest! {
        #[test]
        fn any_query_string_is_answered_or_refused_with_a_field(s in "\\PC{0,80}") {
            if let Err(e) = check_query_string(&s) {
                proptest::prop_assert!(e.status.is_client_error());
                proptest::prop_assert!(e.field.is_some());
            }
        }

        #[test]
        fn query_like_strings_never_panic(
            k in "(from|to|range|bucket|group_by|limit|cursor|format|granularity)",
            v in "[0-9T:+%.ZzéA-F-]{0,40}",
        ) {
            let _ = check_query_string(&format!("{k}={v}"));
        }
    }
}
