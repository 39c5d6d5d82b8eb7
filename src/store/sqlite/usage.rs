//! Usage records on SQLite: batched idempotent inserts and the rollups they feed (the
//! queries over them are written once, in `store/shared/usage_queries.rs`).

use std::sync::{Arc, OnceLock};

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::codec::to_i64;
use crate::usage::UsageRecord;

/// Rows per multi-row INSERT (`USAGE_COLUMNS` parameters each, well under SQLite's
/// variable limit).
const USAGE_ROWS_PER_INSERT: usize = 64;

/// The parameters of one usage row (`insert_usage_sql`, `insert_usage`).
const USAGE_COLUMNS: usize = 23;

/// Adds each value to `args`, in order; a value that does not encode is an error.
macro_rules! add {
    ($args:ident, $($value:expr),+ $(,)?) => {
        $( sqlx::Arguments::add(&mut $args, $value).map_err(sqlx::Error::Encode)?; )+
    };
}

/// `INSERT OR IGNORE` of `rows` usage records; the SQL for each row count is built once
/// and reused, so SQLite's statement cache sees at most `USAGE_ROWS_PER_INSERT` shapes.
fn insert_usage_sql(rows: usize) -> sqlx::AssertSqlSafe<Arc<str>> {
    static CACHE: OnceLock<Vec<Arc<str>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        (0..=USAGE_ROWS_PER_INSERT)
            .map(|n| {
                let row = format!("({})", vec!["?"; USAGE_COLUMNS].join(", "));
                let values = vec![row; n].join(", ");
                Arc::from(format!(
                    "INSERT OR IGNORE INTO usage_records (request_id, account_id, key_id, endpoint, model, provider,
                        started_ms, finished_ms, status, error_kind, stream, input_tokens, cached_input_tokens,
                        output_tokens, estimated, cost_nanos, latency_us, ttft_us, attempts, region,
                        cache_write_5m_tokens, cache_write_1h_tokens, reasoning_tokens) VALUES {values}"
                ))
            })
            .collect()
    });
    sqlx::AssertSqlSafe(cache[rows.min(USAGE_ROWS_PER_INSERT)].clone())
}

/// Splits a batch into chunks of `USAGE_ROWS_PER_INSERT` rows and then powers of two, so
/// only 7 statement shapes ever exist: every shape SQLite prepares stays in each
/// connection's statement cache, and a cache of 64 shapes per connection (with the rollup
/// triggers of the time compiled into each) was most of the resident memory a soak saw grow.
fn pow2_chunks<T>(mut rows: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if rows.is_empty() {
            return None;
        }
        let n = if rows.len() >= USAGE_ROWS_PER_INSERT {
            USAGE_ROWS_PER_INSERT
        } else {
            1 << (usize::BITS - 1 - rows.len().leading_zeros())
        };
        let (chunk, rest) = rows.split_at(n);
        rows = rest;
        Some(chunk)
    })
}

/// Gathers the batch's newly inserted rows (`rowid > ?`) by account, key, model and
/// minute into this connection's scratch table, in one pass over them; the rollups are
/// then folded from those few groups (`ROLLUP_SQL`), not from the rows four times over.
/// Journal replays insert nothing (`OR IGNORE`) and so add nothing. `NOT INDEXED` keeps
/// SQLite on the rowid range: an index that orders by the group would scan every row.
const GATHER_SQL: [&str; 3] = [
    "CREATE TEMP TABLE IF NOT EXISTS usage_batch (
        account_id TEXT NOT NULL, key_id TEXT NOT NULL, model TEXT NOT NULL, minute INTEGER NOT NULL,
        n INTEGER NOT NULL, i INTEGER NOT NULL, ci INTEGER NOT NULL, o INTEGER NOT NULL,
        c INTEGER NOT NULL, e INTEGER NOT NULL, err INTEGER NOT NULL, w5 INTEGER NOT NULL,
        w1 INTEGER NOT NULL, r INTEGER NOT NULL, last_started INTEGER NOT NULL)",
    "DELETE FROM temp.usage_batch",
    "INSERT INTO temp.usage_batch
        SELECT account_id, key_id, COALESCE(model, ''), (started_ms / 60000) * 60000,
               COUNT(*), SUM(input_tokens), SUM(cached_input_tokens), SUM(output_tokens),
               SUM(cost_nanos), SUM(estimated), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END),
               SUM(cache_write_5m_tokens), SUM(cache_write_1h_tokens), SUM(reasoning_tokens),
               MAX(started_ms)
        FROM usage_records NOT INDEXED WHERE rowid > ? GROUP BY 1, 2, 3, 4",
];

/// Folds the batch's groups (`temp.usage_batch`) into the rollups, one upsert per group,
/// as PostgreSQL's statement-level triggers do with their transition table.
const ROLLUP_SQL: [&str; 4] = [
    "INSERT INTO key_usage_hourly (key_id, hour_ms, requests, input_tokens, output_tokens, cost_nanos)
        SELECT key_id, (minute / 3600000) * 3600000, SUM(n), SUM(i), SUM(o), SUM(c)
        FROM temp.usage_batch GROUP BY 1, 2
    ON CONFLICT (key_id, hour_ms) DO UPDATE SET
        requests = requests + excluded.requests,
        input_tokens = input_tokens + excluded.input_tokens,
        output_tokens = output_tokens + excluded.output_tokens,
        cost_nanos = cost_nanos + excluded.cost_nanos",
    // `changed_ms` is `CLOCK_MS`: when the budget sync should read this key again.
    "INSERT INTO key_usage_totals (key_id, requests, input_tokens, output_tokens, cost_nanos, last_used_ms, changed_ms)
        SELECT key_id, SUM(n), SUM(i), SUM(o), SUM(c), MAX(last_started),
               CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
        FROM temp.usage_batch GROUP BY 1
    ON CONFLICT (key_id) DO UPDATE SET
        requests = requests + excluded.requests,
        input_tokens = input_tokens + excluded.input_tokens,
        output_tokens = output_tokens + excluded.output_tokens,
        cost_nanos = cost_nanos + excluded.cost_nanos,
        last_used_ms = MAX(last_used_ms, excluded.last_used_ms),
        changed_ms = excluded.changed_ms",
    // Each minute group is counted into its minute, hour and day.
    "INSERT INTO usage_rollups (account_id, granularity, bucket_ms, key_id, model, requests, input_tokens,
                               cached_input_tokens, output_tokens, cost_nanos, estimated_requests, error_requests,
                               cache_write_5m_tokens, cache_write_1h_tokens, reasoning_tokens)
        SELECT m.account_id, g.name, (m.minute / g.ms) * g.ms, m.key_id, m.model,
               SUM(n), SUM(i), SUM(ci), SUM(o), SUM(c), SUM(e), SUM(err), SUM(w5), SUM(w1), SUM(r)
        FROM temp.usage_batch m, (SELECT 'minute' AS name, 60000 AS ms UNION ALL SELECT 'hour', 3600000 UNION ALL SELECT 'day', 86400000) g
        WHERE true GROUP BY 1, 2, 3, 4, 5
    ON CONFLICT (account_id, granularity, bucket_ms, key_id, model) DO UPDATE SET
        requests = requests + excluded.requests,
        input_tokens = input_tokens + excluded.input_tokens,
        cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens,
        output_tokens = output_tokens + excluded.output_tokens,
        cost_nanos = cost_nanos + excluded.cost_nanos,
        estimated_requests = estimated_requests + excluded.estimated_requests,
        error_requests = error_requests + excluded.error_requests,
        cache_write_5m_tokens = cache_write_5m_tokens + excluded.cache_write_5m_tokens,
        cache_write_1h_tokens = cache_write_1h_tokens + excluded.cache_write_1h_tokens,
        reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens",
    // What the next posting will debit, per account (balances read it every second).
    "INSERT INTO usage_unposted (account_id, requests, cost_nanos)
        SELECT account_id, SUM(n), SUM(c)
        FROM temp.usage_batch GROUP BY 1
    ON CONFLICT (account_id) DO UPDATE SET
        requests = requests + excluded.requests,
        cost_nanos = cost_nanos + excluded.cost_nanos",
];

impl SqliteStore {
    pub async fn insert_usage(&self, records: &[UsageRecord]) -> Result<u64, StoreError> {
        let mut tx = self.usage_pool.begin().await?;
        let mut inserted = 0;
        for chunk in pow2_chunks(records) {
            // Arguments sized once and added in place: `Query::bind` moves the query by
            // value and checks its state for every one of a chunk's ~1,500 values.
            let mut args = sqlx::sqlite::SqliteArguments::default();
            sqlx::Arguments::reserve(&mut args, chunk.len() * USAGE_COLUMNS, 0);
            for r in chunk {
                // Shared strings go in by reference count; a borrowed one would be copied.
                add!(
                    args,
                    r.request_id.clone(),
                    r.account_id.clone(),
                    r.key_id.clone(),
                    r.endpoint.clone(),
                    r.model.clone(),
                    r.provider.clone(),
                    r.started_ms,
                    r.finished_ms,
                    i64::from(r.status),
                    r.error_kind.as_deref(),
                    r.stream,
                    to_i64(r.input_tokens),
                    to_i64(r.cached_input_tokens),
                    to_i64(r.output_tokens),
                    r.estimated,
                    r.cost_nanos,
                    to_i64(r.latency_us),
                    r.ttft_us.map(to_i64),
                    i64::from(r.attempts),
                    r.region.as_deref(),
                    to_i64(r.cache_write_5m_tokens),
                    to_i64(r.cache_write_1h_tokens),
                    to_i64(r.reasoning_tokens),
                );
            }
            let query = sqlx::query_with(insert_usage_sql(chunk.len()), args);
            inserted += query.execute(&mut *tx).await?.rows_affected();
        }
        if inserted > 0 {
            // The write lock is held since the first insert, so this batch's rows are the
            // newest `inserted` rowids: each new row takes the largest rowid plus one.
            let last: i64 = sqlx::query_scalar("SELECT MAX(rowid) FROM usage_records")
                .fetch_one(&mut *tx)
                .await?;
            let first_new = last - to_i64(inserted);
            let [create, clear, gather] = GATHER_SQL;
            sqlx::query(create).execute(&mut *tx).await?;
            sqlx::query(clear).execute(&mut *tx).await?;
            sqlx::query(gather)
                .bind(first_new)
                .execute(&mut *tx)
                .await?;
            for sql in ROLLUP_SQL {
                sqlx::query(sql).execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(inserted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_into_few_statement_shapes() {
        let rows: Vec<u32> = (0..203).collect();
        let sizes: Vec<usize> = pow2_chunks(&rows).map(<[u32]>::len).collect();
        assert_eq!(sizes, [64, 64, 64, 8, 2, 1]);
        assert_eq!(sizes.iter().sum::<usize>(), 203);
        let mut shapes = std::collections::BTreeSet::new();
        for n in 1..=1000 {
            let rows: Vec<u32> = (0..n).collect();
            shapes.extend(pow2_chunks(&rows).map(<[u32]>::len));
        }
        assert_eq!(shapes.len(), 7, "{shapes:?}");
    }
}
