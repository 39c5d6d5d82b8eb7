//! Usage records in PostgreSQL: batched idempotent inserts (the rollups are triggers; the
//! queries over them are written once, in `store/shared/usage_queries.rs`).

use super::{PgStore, USAGE_POSTING_LOCK, xact_lock_shared};
use crate::store::StoreError;
use crate::store::codec::to_i64;
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
        output_tokens, estimated, cost_nanos, latency_us, ttft_us, attempts, region,
        cache_write_5m_tokens, cache_write_1h_tokens, reasoning_tokens)
    SELECT * FROM UNNEST($1::TEXT[], $2::TEXT[], $3::TEXT[], $4::TEXT[], $5::TEXT[], $6::TEXT[],
        $7::BIGINT[], $8::BIGINT[], $9::BIGINT[], $10::TEXT[], $11::BOOLEAN[], $12::BIGINT[], $13::BIGINT[],
        $14::BIGINT[], $15::BOOLEAN[], $16::BIGINT[], $17::BIGINT[], $18::BIGINT[], $19::BIGINT[], $20::TEXT[],
        $21::BIGINT[], $22::BIGINT[], $23::BIGINT[])
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
                .bind(col(|r| to_i64(r.cache_write_5m_tokens)))
                .bind(col(|r| to_i64(r.cache_write_1h_tokens)))
                .bind(col(|r| to_i64(r.reasoning_tokens)))
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }
}
