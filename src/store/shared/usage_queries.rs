//! The queries over usage records and their rollups, written once for both stores (each
//! includes this file with its own types); inserting records and folding them into the
//! rollups stays per backend, where the dialects really differ.

use sqlx::Row;

use super::{BYTEWISE, DbRow, ThisStore};
use crate::billing::Money;
use crate::store::codec::{stats, to_u64};
use crate::store::{Granularity, GroupBy, StoreError, UsagePoint, UsageStats, UsageTotals};
use crate::usage::UsageRecord;

impl ThisStore {
    /// Every record of the account started in `[from_ms, to_ms)`, in order: one page as
    /// large as it gets.
    pub async fn usage_records(
        &self,
        account_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        self.usage_records_page(account_id, from_ms, to_ms, None, i64::MAX)
            .await
    }

    /// The record of request `request_id` if it is `account_id`'s (and written yet).
    pub async fn usage_record(
        &self,
        account_id: &str,
        request_id: &str,
    ) -> Result<Option<UsageRecord>, StoreError> {
        let row =
            sqlx::query("SELECT * FROM usage_records WHERE request_id = $1 AND account_id = $2")
                .bind(request_id)
                .bind(account_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.as_ref().map(record_of).transpose()?)
    }

    /// A key's requests, tokens and cost since `day_ms` and since `month_ms` (hour-aligned,
    /// the month's start no later than the day's).
    pub async fn key_usage_day_and_month(
        &self,
        key_id: &str,
        day_ms: i64,
        month_ms: i64,
    ) -> Result<(UsageStats, UsageStats), StoreError> {
        let row = sqlx::query(
            "SELECT CAST(COALESCE(SUM(CASE WHEN hour_ms >= $2 THEN requests END), 0) AS BIGINT) AS rd,
                    CAST(COALESCE(SUM(CASE WHEN hour_ms >= $2 THEN input_tokens END), 0) AS BIGINT) AS id,
                    CAST(COALESCE(SUM(CASE WHEN hour_ms >= $2 THEN output_tokens END), 0) AS BIGINT) AS od,
                    CAST(COALESCE(SUM(CASE WHEN hour_ms >= $2 THEN cost_nanos END), 0) AS BIGINT) AS cd,
                    CAST(COALESCE(SUM(requests), 0) AS BIGINT) AS rm,
                    CAST(COALESCE(SUM(input_tokens), 0) AS BIGINT) AS im,
                    CAST(COALESCE(SUM(output_tokens), 0) AS BIGINT) AS om,
                    CAST(COALESCE(SUM(cost_nanos), 0) AS BIGINT) AS cm
             FROM key_usage_hourly WHERE key_id = $1 AND hour_ms >= $3",
        )
        .bind(key_id)
        .bind(day_ms)
        .bind(month_ms.min(day_ms))
        .fetch_one(&self.pool)
        .await?;
        let g = |c: &str| row.try_get::<i64, _>(c);
        Ok((
            stats(g("rd")?, g("id")?, g("od")?, g("cd")?),
            stats(g("rm")?, g("im")?, g("om")?, g("cm")?),
        ))
    }

    /// The account's records, newest first, of one key when `key_id` is given, before the
    /// (started_ms, request_id) `before`; at most `limit`.
    pub async fn recent_usage_records(
        &self,
        account_id: &str,
        key_id: Option<&str>,
        before: Option<(i64, &str)>,
        limit: i64,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        let (before_ms, before_id) = before.unwrap_or((i64::MAX, ""));
        let key_filter = if key_id.is_some() {
            "key_id = $6"
        } else {
            "$6 = ''"
        };
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT * FROM usage_records WHERE account_id = $1 AND {key_filter}
               AND (started_ms < $2 OR (started_ms = $2 AND ($3 = '' OR request_id{BYTEWISE} < $4)))
             ORDER BY started_ms DESC, request_id{BYTEWISE} DESC LIMIT $5"
        ));
        let rows = sqlx::query(sql)
            .bind(account_id)
            .bind(before_ms)
            .bind(before_id)
            .bind(before_id)
            .bind(limit)
            .bind(key_id.unwrap_or(""))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(record_of).collect::<Result<_, _>>()?)
    }

    /// Requests, tokens of each kind and cost per endpoint in `[from_ms, to_ms)`, read as
    /// `usage_by_model` reads its figures: from the rollups, and the edges from the records.
    pub async fn usage_by_endpoint(
        &self,
        account_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<UsagePoint>, StoreError> {
        self.summary(account_id, from_ms, to_ms, Dimension::Endpoint)
            .await
    }

    pub async fn usage_records_page(
        &self,
        account_id: &str,
        from_ms: i64,
        to_ms: i64,
        after: Option<(i64, String)>,
        limit: i64,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        let (after_ms, after_id) = after.unwrap_or((i64::MIN, String::new()));
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT * FROM usage_records WHERE account_id = $1 AND started_ms >= $2 AND started_ms < $3
               AND (started_ms > $4 OR (started_ms = $4 AND request_id{BYTEWISE} > $5))
             ORDER BY started_ms, request_id{BYTEWISE} LIMIT $6"
        ));
        let rows = sqlx::query(sql)
            .bind(account_id)
            .bind(from_ms)
            .bind(to_ms)
            .bind(after_ms)
            .bind(after_id)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(record_of).collect::<Result<_, _>>()?)
    }

    pub async fn usage_rollup(
        &self,
        account_id: &str,
        granularity: Granularity,
        from_ms: i64,
        to_ms: i64,
        by_bucket: bool,
        group: GroupBy,
    ) -> Result<Vec<UsagePoint>, StoreError> {
        let (model_col, key_col) = (format!("model{BYTEWISE}"), format!("key_id{BYTEWISE}"));
        let group_col = match group {
            GroupBy::Nothing => "CAST(NULL AS TEXT)",
            GroupBy::Model => model_col.as_str(),
            GroupBy::Key => key_col.as_str(),
        };
        let bucket_col = if by_bucket {
            "bucket_ms"
        } else {
            "CAST(NULL AS BIGINT)"
        };
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {bucket_col} AS b, {group_col} AS g, CAST(SUM(requests) AS BIGINT) AS requests,
                    CAST(SUM(input_tokens) AS BIGINT) AS input_tokens, CAST(SUM(cached_input_tokens) AS BIGINT) AS cached_input_tokens,
                    CAST(SUM(cache_write_5m_tokens) AS BIGINT) AS cache_write_5m_tokens,
                    CAST(SUM(cache_write_1h_tokens) AS BIGINT) AS cache_write_1h_tokens,
                    CAST(SUM(output_tokens) AS BIGINT) AS output_tokens, CAST(SUM(reasoning_tokens) AS BIGINT) AS reasoning_tokens,
                    CAST(SUM(cost_nanos) AS BIGINT) AS cost_nanos,
                    CAST(SUM(estimated_requests) AS BIGINT) AS estimated_requests, CAST(SUM(error_requests) AS BIGINT) AS error_requests
             FROM usage_rollups
             WHERE account_id = $1 AND granularity = $2 AND bucket_ms >= $3 AND bucket_ms < $4
             GROUP BY b, g ORDER BY b, g"
        ));
        let floor = from_ms.div_euclid(granularity.ms()) * granularity.ms();
        let rows = sqlx::query(sql)
            .bind(account_id)
            .bind(granularity.as_str())
            .bind(floor)
            .bind(to_ms)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| point_of(row, row.try_get("b")?))
            .collect()
    }

    /// Requests, tokens of each kind and cost per model in `[from_ms, to_ms)`.
    pub async fn usage_by_model(
        &self,
        account_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<UsageTotals>, StoreError> {
        let points = self
            .summary(account_id, from_ms, to_ms, Dimension::Model)
            .await?;
        Ok(points
            .into_iter()
            .map(|p| UsageTotals {
                model: p.group.unwrap_or_default(),
                requests: p.requests,
                input_tokens: p.input_tokens,
                cached_input_tokens: p.cached_input_tokens,
                cache_write_5m_tokens: p.cache_write_5m_tokens,
                cache_write_1h_tokens: p.cache_write_1h_tokens,
                output_tokens: p.output_tokens,
                reasoning_tokens: p.reasoning_tokens,
                cost_nanos: p.cost_nanos,
            })
            .collect())
    }

    /// Every kind of figure in `[from_ms, to_ms)`, one point per value of `dimension`, in
    /// its order: whole days, hours and minutes from their rollups (`span::pieces`), which
    /// outlive the records' retention, and only what is left at the range's edges from the
    /// per-request records. One statement, a branch a piece, each read by its index: a
    /// month of a busy account reads a few rows a value, not every request.
    async fn summary(
        &self,
        account_id: &str,
        from_ms: i64,
        to_ms: i64,
        dimension: Dimension,
    ) -> Result<Vec<UsagePoint>, StoreError> {
        use crate::store::span::{minute_rollups_from, pieces};
        let (record_group, table, column, minutes_from) = match dimension {
            Dimension::Model => (
                "COALESCE(model, '')",
                "usage_rollups",
                "model",
                minute_rollups_from(crate::time::now_ms()),
            ),
            // Hours and days only: the minutes at the edges come from the records.
            Dimension::Endpoint => ("endpoint", "usage_endpoint_rollups", "endpoint", i64::MAX),
        };
        let p = pieces(from_ms, to_ms, minutes_from);
        // Each branch reads one piece: its bounds are parameters `$at` and `$at + 1`.
        let records = |at: usize| {
            format!(
                "SELECT {record_group} AS g, 1 AS n, input_tokens AS i,
                        cached_input_tokens AS ci, cache_write_5m_tokens AS w5,
                        cache_write_1h_tokens AS w1, output_tokens AS o, reasoning_tokens AS r,
                        cost_nanos AS c, CASE WHEN estimated THEN 1 ELSE 0 END AS e,
                        CASE WHEN status >= 400 THEN 1 ELSE 0 END AS err
                 FROM usage_records WHERE account_id = $1 AND started_ms >= ${} AND started_ms < ${}",
                at,
                at + 1
            )
        };
        let rollups = |granularity: Granularity, at: usize| {
            format!(
                "SELECT {column}, requests, input_tokens, cached_input_tokens, cache_write_5m_tokens,
                        cache_write_1h_tokens, output_tokens, reasoning_tokens, cost_nanos,
                        estimated_requests, error_requests
                 FROM {table} WHERE account_id = $1 AND granularity = '{}'
                   AND bucket_ms >= ${} AND bucket_ms < ${}",
                granularity.as_str(),
                at,
                at + 1
            )
        };
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT g{BYTEWISE} AS g, CAST(SUM(n) AS BIGINT) AS requests,
                    CAST(SUM(i) AS BIGINT) AS input_tokens, CAST(SUM(ci) AS BIGINT) AS cached_input_tokens,
                    CAST(SUM(w5) AS BIGINT) AS cache_write_5m_tokens,
                    CAST(SUM(w1) AS BIGINT) AS cache_write_1h_tokens,
                    CAST(SUM(o) AS BIGINT) AS output_tokens, CAST(SUM(r) AS BIGINT) AS reasoning_tokens,
                    CAST(SUM(c) AS BIGINT) AS cost_nanos, CAST(SUM(e) AS BIGINT) AS estimated_requests,
                    CAST(SUM(err) AS BIGINT) AS error_requests
             FROM ({} UNION ALL {} UNION ALL {} UNION ALL {} UNION ALL {} UNION ALL {} UNION ALL {}) u
             GROUP BY 1 ORDER BY 1",
            records(2),
            records(4),
            rollups(Granularity::Day, 6),
            rollups(Granularity::Hour, 8),
            rollups(Granularity::Hour, 10),
            rollups(Granularity::Minute, 12),
            rollups(Granularity::Minute, 14),
        ));
        let mut query = sqlx::query(sql).bind(account_id);
        for (start, end) in [
            p.records[0],
            p.records[1],
            p.days,
            p.hours[0],
            p.hours[1],
            p.minutes[0],
            p.minutes[1],
        ] {
            query = query.bind(start).bind(end);
        }
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(|row| point_of(row, None)).collect()
    }
}

/// What a summary is split by: each has its rollup table, folded from the same batches
/// (per model: minutes, hours and days; per endpoint: hours and days).
#[derive(Clone, Copy)]
enum Dimension {
    Model,
    Endpoint,
}

/// A row of aggregates (group in `g`) as a usage point of `bucket_ms`.
fn point_of(row: &DbRow, bucket_ms: Option<i64>) -> Result<UsagePoint, StoreError> {
    let cost: i64 = row.try_get("cost_nanos")?;
    Ok(UsagePoint {
        bucket_ms,
        group: row.try_get("g")?,
        requests: row.try_get("requests")?,
        input_tokens: row.try_get("input_tokens")?,
        cached_input_tokens: row.try_get("cached_input_tokens")?,
        cache_write_5m_tokens: row.try_get("cache_write_5m_tokens")?,
        cache_write_1h_tokens: row.try_get("cache_write_1h_tokens")?,
        output_tokens: row.try_get("output_tokens")?,
        reasoning_tokens: row.try_get("reasoning_tokens")?,
        cost_nanos: cost,
        cost_usd: Money::from_nanos(cost).to_string(),
        estimated_requests: row.try_get("estimated_requests")?,
        error_requests: row.try_get("error_requests")?,
    })
}

fn record_of(row: &DbRow) -> Result<UsageRecord, sqlx::Error> {
    let status: i64 = row.try_get("status")?;
    Ok(UsageRecord {
        request_id: row.try_get("request_id")?,
        account_id: row.try_get("account_id")?,
        key_id: row.try_get("key_id")?,
        endpoint: row.try_get::<String, _>("endpoint")?.into(),
        model: row.try_get("model")?,
        provider: row.try_get("provider")?,
        started_ms: row.try_get("started_ms")?,
        finished_ms: row.try_get("finished_ms")?,
        status: u16::try_from(status).unwrap_or(0),
        error_kind: row.try_get("error_kind")?,
        stream: row.try_get("stream")?,
        input_tokens: to_u64(row.try_get("input_tokens")?),
        cached_input_tokens: to_u64(row.try_get("cached_input_tokens")?),
        cache_write_5m_tokens: to_u64(row.try_get("cache_write_5m_tokens")?),
        cache_write_1h_tokens: to_u64(row.try_get("cache_write_1h_tokens")?),
        output_tokens: to_u64(row.try_get("output_tokens")?),
        reasoning_tokens: to_u64(row.try_get("reasoning_tokens")?),
        estimated: row.try_get("estimated")?,
        cost_nanos: row.try_get("cost_nanos")?,
        latency_us: to_u64(row.try_get("latency_us")?),
        ttft_us: row.try_get::<Option<i64>, _>("ttft_us")?.map(to_u64),
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
        region: row.try_get("region")?,
    })
}
