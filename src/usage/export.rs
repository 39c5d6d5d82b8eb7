//! Usage export: per-request records or daily aggregates as RFC 4180 CSV or JSON,
//! streamed page by page (constant memory for any range). Metadata only.
//!
//! Columns of the per-request export, in order: `request_id, started_at, finished_at,
//! account_id, key_id, endpoint, model, provider, status, error_kind, stream,
//! input_tokens, cached_input_tokens, output_tokens, estimated, cost_usd, latency_ms,
//! ttft_ms`. Daily aggregates: `date, model, requests, input_tokens, cached_input_tokens,
//! output_tokens, cost_usd, estimated_requests, error_requests`.

use bytes::Bytes;
use futures_util::Stream;
use serde_json::json;

use super::UsageRecord;
use crate::billing::Money;
use crate::store::{Granularity, GroupBy, Store, StoreError, UsagePoint};
use crate::time::format_rfc3339;

const PAGE: i64 = 1_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Csv,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// One row per request.
    Request,
    /// One row per day and model, from the daily rollups.
    Day,
}

pub const REQUEST_COLUMNS: &[&str] = &[
    "request_id",
    "started_at",
    "finished_at",
    "account_id",
    "key_id",
    "endpoint",
    "model",
    "provider",
    "status",
    "error_kind",
    "stream",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "estimated",
    "cost_usd",
    "latency_ms",
    "ttft_ms",
];

pub const DAY_COLUMNS: &[&str] = &[
    "date",
    "model",
    "requests",
    "input_tokens",
    "cached_input_tokens",
    "output_tokens",
    "cost_usd",
    "estimated_requests",
    "error_requests",
];

/// RFC 4180: quote a field holding a comma, quote or line break; double inner quotes.
fn csv_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

fn csv_row(out: &mut String, fields: &[String]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, f);
    }
    out.push_str("\r\n");
}

fn ms3(us: u64) -> String {
    format!("{}.{:03}", us / 1000, us % 1000)
}

fn request_fields(r: &UsageRecord) -> Vec<String> {
    vec![
        r.request_id.clone(),
        format_rfc3339(r.started_ms),
        format_rfc3339(r.finished_ms),
        r.account_id.clone(),
        r.key_id.clone(),
        r.endpoint.clone(),
        r.model.clone().unwrap_or_default(),
        r.provider.clone().unwrap_or_default(),
        r.status.to_string(),
        r.error_kind.clone().unwrap_or_default(),
        r.stream.to_string(),
        r.input_tokens.to_string(),
        r.cached_input_tokens.to_string(),
        r.output_tokens.to_string(),
        r.estimated.to_string(),
        Money::from_nanos(r.cost_nanos).to_string(),
        ms3(r.latency_us),
        r.ttft_us.map(ms3).unwrap_or_default(),
    ]
}

fn request_json(r: &UsageRecord) -> serde_json::Value {
    json!({
        "request_id": r.request_id, "started_at": format_rfc3339(r.started_ms), "finished_at": format_rfc3339(r.finished_ms),
        "account_id": r.account_id, "key_id": r.key_id, "endpoint": r.endpoint, "model": r.model, "provider": r.provider,
        "status": r.status, "error_kind": r.error_kind, "stream": r.stream, "input_tokens": r.input_tokens,
        "cached_input_tokens": r.cached_input_tokens, "output_tokens": r.output_tokens, "estimated": r.estimated,
        "cost_usd": Money::from_nanos(r.cost_nanos).to_string(), "cost_nanos": r.cost_nanos,
        "latency_ms": r.latency_us as f64 / 1000.0, "ttft_ms": r.ttft_us.map(|t| t as f64 / 1000.0),
    })
}

fn day_fields(p: &UsagePoint) -> Vec<String> {
    vec![
        format_rfc3339(p.bucket_ms.unwrap_or(0))[..10].to_owned(),
        p.group.clone().unwrap_or_default(),
        p.requests.to_string(),
        p.input_tokens.to_string(),
        p.cached_input_tokens.to_string(),
        p.output_tokens.to_string(),
        p.cost_usd.clone(),
        p.estimated_requests.to_string(),
        p.error_requests.to_string(),
    ]
}

fn day_json(p: &UsagePoint) -> serde_json::Value {
    json!({
        "date": &format_rfc3339(p.bucket_ms.unwrap_or(0))[..10], "model": p.group, "requests": p.requests,
        "input_tokens": p.input_tokens, "cached_input_tokens": p.cached_input_tokens, "output_tokens": p.output_tokens,
        "cost_usd": p.cost_usd, "cost_nanos": p.cost_nanos, "estimated_requests": p.estimated_requests,
        "error_requests": p.error_requests,
    })
}

struct State {
    store: Store,
    account: String,
    from: i64,
    to: i64,
    format: Format,
    level: Level,
    after: Option<(i64, String)>,
    started: bool,
    done: bool,
}

/// The export as a stream of byte chunks (header, one chunk per page, trailer).
pub fn export(
    store: Store,
    account: String,
    from: i64,
    to: i64,
    format: Format,
    level: Level,
) -> impl Stream<Item = Result<Bytes, StoreError>> + Send {
    let state = State {
        store,
        account,
        from,
        to,
        format,
        level,
        after: None,
        started: false,
        done: false,
    };
    futures_util::stream::try_unfold(state, |mut st| async move {
        if st.done {
            return Ok(None);
        }
        let mut out = String::new();
        let first = !st.started;
        if first {
            st.started = true;
            match st.format {
                Format::Csv => {
                    let cols: Vec<String> = match st.level {
                        Level::Request => REQUEST_COLUMNS,
                        Level::Day => DAY_COLUMNS,
                    }
                    .iter()
                    .map(|c| (*c).to_owned())
                    .collect();
                    csv_row(&mut out, &cols);
                }
                Format::Json => out.push('['),
            }
        }
        let mut wrote_any = !first;
        match st.level {
            Level::Request => {
                let page = st
                    .store
                    .usage_records_page(&st.account, st.from, st.to, st.after.take(), PAGE)
                    .await?;
                if (page.len() as i64) < PAGE {
                    st.done = true;
                }
                if let Some(last) = page.last() {
                    st.after = Some((last.started_ms, last.request_id.clone()));
                }
                for r in &page {
                    match st.format {
                        Format::Csv => csv_row(&mut out, &request_fields(r)),
                        Format::Json => {
                            if wrote_any {
                                out.push(',');
                            }
                            out.push_str(&request_json(r).to_string());
                            wrote_any = true;
                        }
                    }
                }
            }
            Level::Day => {
                let points = st
                    .store
                    .usage_rollup(
                        &st.account,
                        Granularity::Day,
                        st.from,
                        st.to,
                        true,
                        GroupBy::Model,
                    )
                    .await?;
                st.done = true;
                for (i, p) in points.iter().enumerate() {
                    match st.format {
                        Format::Csv => csv_row(&mut out, &day_fields(p)),
                        Format::Json => {
                            if i > 0 {
                                out.push(',');
                            }
                            out.push_str(&day_json(p).to_string());
                        }
                    }
                }
            }
        }
        if st.done && st.format == Format::Json {
            out.push(']');
        }
        Ok(Some((Bytes::from(out), st)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_per_rfc_4180() {
        let mut out = String::new();
        csv_row(
            &mut out,
            &["a".into(), "b,c".into(), "say \"hi\"".into(), "x\ny".into()],
        );
        assert_eq!(out, "a,\"b,c\",\"say \"\"hi\"\"\",\"x\ny\"\r\n");
    }
}
