//! Usage records in PostgreSQL: batched idempotent inserts and the queries over them.

use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{PgStore, USAGE_POSTING_LOCK, xact_lock_shared};
use crate::billing::Money;
use crate::store::codec::{to_i64, to_u64};
use crate::store::{Granularity, GroupBy, StoreError, UsagePoint, UsageTotals};
use crate::usage::UsageRecord;

/// Records per INSERT: one statement whatever the count (columns travel as arrays), but
/// bounded so a large journal replay never builds one huge message.
const USAGE_ROWS_PER_INSERT: usize = 1024;

/// One INSERT of a whole batch: each column bound as an array and zipped by `UNNEST`, so
/// there is a single statement shape for the statement cache. A record whose request id
/// is stored already is skipped (`ON CONFLICT DO NOTHING`), which makes journal replay
/// idempotent; the rollup triggers see only the rows actually inserted.
const INSERT_USAGE: &str = "INSERT INTO usage_records (request_id, account_id, key_id, endpoint, model, provider,
        started_ms, finished_ms, status, error_kind, stream, input_tokens, cached_input_tokens,
        output_tokens, estimated, cost_nanos, latency_us, ttft_us, attempts, region)
    SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[],
        $7::BIGINT[], $8::BIGINT[], $9::BIGINT[], $10::TEXT[], $11::BOOLEAN[], $12::BIGINT[], $13::BIGINT[],
        $14::BIGINT[], $15::BOOLEAN[], $16::BIGINT[], $17::BIGINT[], $18::BIGINT[], $19::BIGINT[], $20::TEXT[])
    ON CONFLICT (request_id) DO NOTHING";

impl PgStore {
    /// Inserts a batch in one transaction; returns how many were new. Holds
    /// `USAGE_POSTING_LOCK` shared so posting never runs past an uncommitted batch.
    pub async fn insert_usage(&self, records: &[UsageRecord]) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(0);
        }
        let mut tx = self.pool.begin().await?;
        xact_lock_shared(&mut tx, USAGE_POSTING_LOCK).await?;
        let mut inserted = 0;
        for chunk in records.chunks(USAGE_ROWS_PER_INSERT) {
            let col = |f: fn(&UsageRecord) -> i64| chunk.iter().map(f).collect::<Vec<i64>>();
            let text = |f: fn(&UsageRecord) -> &str| chunk.iter().map(f).collect::<Vec<&str>>();
            let opt_text =
                |f: fn(&UsageRecord) -> Option<&str>| chunk.iter().map(f).collect::<Vec<_>>();
            let flag = |f: fn(&UsageRecord) -> bool| chunk.iter().map(f).collect::<Vec<bool>>();
            let ttft: Vec<Option<i64>> = chunk.iter().map(|r| r.ttft_us.map(to_i64)).collect();
            inserted += sqlx::query(INSERT_USAGE)
                .bind(text(|r| &r.request_id))
                .bind(text(|r| &r.account_id))
                .bind(text(|r| &r.key_id))
                .bind(text(|r| &r.endpoint))
                .bind(opt_text(|r| r.model.as_deref()))
                .bind(opt_text(|r| r.provider.as_deref()))
                .bind(col(|r| r.started_ms))
                .bind(col(|r| r.finished_ms))
                .bind(col(|r| i64::from(r.status)))
                .bind(opt_text(|r| r.error_kind.as_deref()))
                .bind(flag(|r| r.stream))
                .bind(col(|r| to_i64(r.input_tokens)))
                .bind(col(|r| to_i64(r.cached_input_tokens)))
                .bind(col(|r| to_i64(r.output_tokens)))
                .bind(flag(|r| r.estimated))
                .bind(col(|r| r.cost_nanos))
                .bind(col(|r| to_i64(r.latency_us)))
                .bind(ttft)
                .bind(col(|r| i64::from(r.attempts)))
                .bind(opt_text(|r| r.region.as_deref()))
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }

    pub async fn usage_records(
        &self,
        account_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM usage_records WHERE account_id = $1 AND started_ms >= $2 AND started_ms < $3
             ORDER BY started_ms, request_id COLLATE \"C\"",
        )
        .bind(account_id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(record_of).collect::<Result<_, _>>()?)
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
        let rows = sqlx::query(
            "SELECT * FROM usage_records WHERE account_id = $1 AND started_ms >= $2 AND started_ms < $3
               AND (started_ms > $4 OR (started_ms = $4 AND request_id COLLATE \"C\" > $5))
             ORDER BY started_ms, request_id COLLATE \"C\" LIMIT $6",
        )
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
        let group_col = match group {
            GroupBy::Nothing => "NULL::TEXT",
            GroupBy::Model => "model COLLATE \"C\"",
            GroupBy::Key => "key_id COLLATE \"C\"",
        };
        let bucket_col = if by_bucket {
            "bucket_ms"
        } else {
            "NULL::BIGINT"
        };
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT {bucket_col} AS b, {group_col} AS g, SUM(requests)::BIGINT AS requests,
                    SUM(input_tokens)::BIGINT AS input_tokens, SUM(cached_input_tokens)::BIGINT AS cached_input_tokens,
                    SUM(output_tokens)::BIGINT AS output_tokens, SUM(cost_nanos)::BIGINT AS cost_nanos,
                    SUM(estimated_requests)::BIGINT AS estimated_requests, SUM(error_requests)::BIGINT AS error_requests
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
            .map(|row| {
                let cost: i64 = row.try_get("cost_nanos")?;
                Ok(UsagePoint {
                    bucket_ms: row.try_get("b")?,
                    group: row.try_get("g")?,
                    requests: row.try_get("requests")?,
                    input_tokens: row.try_get("input_tokens")?,
                    cached_input_tokens: row.try_get("cached_input_tokens")?,
                    output_tokens: row.try_get("output_tokens")?,
                    cost_nanos: cost,
                    cost_usd: Money::from_nanos(cost).to_string(),
                    estimated_requests: row.try_get("estimated_requests")?,
                    error_requests: row.try_get("error_requests")?,
                })
            })
            .collect()
    }

    pub async fn usage_by_model(
        &self,
        account_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<UsageTotals>, StoreError> {
        let rows = sqlx::query(
            "SELECT COALESCE(model, '') COLLATE \"C\" AS model, COUNT(*) AS requests,
                    COALESCE(SUM(input_tokens), 0)::BIGINT AS input_tokens,
                    COALESCE(SUM(output_tokens), 0)::BIGINT AS output_tokens,
                    COALESCE(SUM(cost_nanos), 0)::BIGINT AS cost_nanos
             FROM usage_records WHERE account_id = $1 AND started_ms >= $2 AND started_ms < $3
             GROUP BY 1 ORDER BY 1",
        )
        .bind(account_id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UsageTotals {
                    model: row.try_get("model")?,
                    requests: row.try_get("requests")?,
                    input_tokens: row.try_get("input_tokens")?,
                    output_tokens: row.try_get("output_tokens")?,
                    cost_nanos: row.try_get("cost_nanos")?,
                })
            })
            .collect()
    }
}

fn record_of(row: &PgRow) -> Result<UsageRecord, sqlx::Error> {
    let status: i64 = row.try_get("status")?;
    Ok(UsageRecord {
        request_id: row.try_get("request_id")?,
        account_id: row.try_get("account_id")?,
        key_id: row.try_get("key_id")?,
        endpoint: row.try_get("endpoint")?,
        model: row.try_get("model")?,
        provider: row.try_get("provider")?,
        started_ms: row.try_get("started_ms")?,
        finished_ms: row.try_get("finished_ms")?,
        status: u16::try_from(status).unwrap_or(0),
        error_kind: row.try_get("error_kind")?,
        stream: row.try_get("stream")?,
        input_tokens: to_u64(row.try_get("input_tokens")?),
        cached_input_tokens: to_u64(row.try_get("cached_input_tokens")?),
        output_tokens: to_u64(row.try_get("output_tokens")?),
        estimated: row.try_get("estimated")?,
        cost_nanos: row.try_get("cost_nanos")?,
        latency_us: to_u64(row.try_get("latency_us")?),
        ttft_us: row.try_get::<Option<i64>, _>("ttft_us")?.map(to_u64),
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(0),
        region: row.try_get("region")?,
    })
}
