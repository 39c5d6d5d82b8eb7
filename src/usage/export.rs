//! Usage export: per-request records or daily aggregates as RFC 4180 CSV or JSON,
//! streamed page by page (constant memory for any range). Metadata only.
//!
//! The columns are one table per level (`REQUEST`, `DAY`) that both formats are written
//! from: every field we hold of a request (provider, region and attempts included), and
//! every kind of token (cache reads, 5-minute and 1-hour cache writes, reasoning).

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

/// One exported value: CSV writes it as text, JSON as its own type.
enum Cell {
    Text(String),
    Opt(Option<String>),
    Int(i128),
    Bool(bool),
    /// Microseconds, exported as milliseconds with three decimals.
    Ms(Option<u64>),
}

impl Cell {
    fn csv(&self) -> String {
        match self {
            Cell::Text(t) => t.clone(),
            Cell::Opt(t) => t.clone().unwrap_or_default(),
            Cell::Int(n) => n.to_string(),
            Cell::Bool(b) => b.to_string(),
            Cell::Ms(us) => us.map(ms3).unwrap_or_default(),
        }
    }

    fn json(&self) -> serde_json::Value {
        match self {
            Cell::Text(t) => json!(t),
            Cell::Opt(t) => json!(t),
            Cell::Int(n) => i64::try_from(*n).map_or_else(|_| json!(n.to_string()), |n| json!(n)),
            Cell::Bool(b) => json!(b),
            Cell::Ms(us) => json!(us.map(|t| t as f64 / 1000.0)),
        }
    }
}

type Column<T> = (&'static str, fn(&T) -> Cell);

/// Every field we hold of a request, in export order: the right of access covers them all.
const REQUEST: &[Column<UsageRecord>] = &[
    ("request_id", |r| Cell::Text(r.request_id.to_string())),
    ("started_at", |r| Cell::Text(format_rfc3339(r.started_ms))),
    ("finished_at", |r| Cell::Text(format_rfc3339(r.finished_ms))),
    ("account_id", |r| Cell::Text(r.account_id.to_string())),
    ("key_id", |r| Cell::Text(r.key_id.to_string())),
    ("endpoint", |r| Cell::Text(r.endpoint.to_string())),
    ("model", |r| {
        Cell::Opt(r.model.as_deref().map(str::to_owned))
    }),
    ("provider", |r| {
        Cell::Opt(r.provider.as_deref().map(str::to_owned))
    }),
    ("region", |r| Cell::Opt(r.region.clone())),
    ("attempts", |r| Cell::Int(r.attempts.into())),
    ("status", |r| Cell::Int(r.status.into())),
    ("error_kind", |r| Cell::Opt(r.error_kind.clone())),
    ("stream", |r| Cell::Bool(r.stream)),
    ("input_tokens", |r| Cell::Int(r.input_tokens.into())),
    ("cached_input_tokens", |r| {
        Cell::Int(r.cached_input_tokens.into())
    }),
    ("cache_write_5m_tokens", |r| {
        Cell::Int(r.cache_write_5m_tokens.into())
    }),
    ("cache_write_1h_tokens", |r| {
        Cell::Int(r.cache_write_1h_tokens.into())
    }),
    ("output_tokens", |r| Cell::Int(r.output_tokens.into())),
    ("reasoning_tokens", |r| Cell::Int(r.reasoning_tokens.into())),
    ("estimated", |r| Cell::Bool(r.estimated)),
    ("cost_usd", |r| {
        Cell::Text(Money::from_nanos(r.cost_nanos).to_string())
    }),
    ("cost_nanos", |r| Cell::Int(r.cost_nanos.into())),
    ("latency_ms", |r| Cell::Ms(Some(r.latency_us))),
    ("ttft_ms", |r| Cell::Ms(r.ttft_us)),
];

/// Daily aggregates per model, in export order.
const DAY: &[Column<UsagePoint>] = &[
    ("date", |p| {
        Cell::Text(format_rfc3339(p.bucket_ms.unwrap_or(0))[..10].to_owned())
    }),
    ("model", |p| Cell::Opt(p.group.clone())),
    ("requests", |p| Cell::Int(p.requests.into())),
    ("input_tokens", |p| Cell::Int(p.input_tokens.into())),
    ("cached_input_tokens", |p| {
        Cell::Int(p.cached_input_tokens.into())
    }),
    ("cache_write_5m_tokens", |p| {
        Cell::Int(p.cache_write_5m_tokens.into())
    }),
    ("cache_write_1h_tokens", |p| {
        Cell::Int(p.cache_write_1h_tokens.into())
    }),
    ("output_tokens", |p| Cell::Int(p.output_tokens.into())),
    ("reasoning_tokens", |p| Cell::Int(p.reasoning_tokens.into())),
    ("cost_usd", |p| Cell::Text(p.cost_usd.clone())),
    ("cost_nanos", |p| Cell::Int(p.cost_nanos.into())),
    ("estimated_requests", |p| {
        Cell::Int(p.estimated_requests.into())
    }),
    ("error_requests", |p| Cell::Int(p.error_requests.into())),
];

/// The column names of a level's table, in order.
fn names<T>(columns: &[Column<T>]) -> Vec<String> {
    columns.iter().map(|(name, _)| (*name).to_owned()).collect()
}

/// The per-request export's column names, in order.
pub fn request_columns() -> Vec<String> {
    names(REQUEST)
}

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

fn csv_of<T>(columns: &[Column<T>], row: &T, out: &mut String) {
    let fields: Vec<String> = columns.iter().map(|(_, cell)| cell(row).csv()).collect();
    csv_row(out, &fields);
}

fn json_of<T>(columns: &[Column<T>], row: &T) -> serde_json::Value {
    serde_json::Value::Object(
        columns
            .iter()
            .map(|(name, cell)| ((*name).to_owned(), cell(row).json()))
            .collect(),
    )
}

/// One row of the export (a record or a daily point) in `format`, after a comma when
/// it is not the first JSON element.
fn write_row<T>(columns: &[Column<T>], row: &T, format: Format, first: bool, out: &mut String) {
    match format {
        Format::Csv => csv_of(columns, row, out),
        Format::Json => {
            if !first {
                out.push(',');
            }
            out.push_str(&json_of(columns, row).to_string());
        }
    }
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
                    let cols = match st.level {
                        Level::Request => names(REQUEST),
                        Level::Day => names(DAY),
                    };
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
                    st.after = Some((last.started_ms, last.request_id.to_string()));
                }
                for r in &page {
                    write_row(REQUEST, r, st.format, !wrote_any, &mut out);
                    wrote_any = true;
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
                    write_row(DAY, p, st.format, i == 0, &mut out);
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
