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
    values_sql(
        &CACHE,
        "INSERT OR IGNORE INTO usage_records (request_id, account_id, key_id, endpoint, model, provider,
            started_ms, finished_ms, status, error_kind, stream, input_tokens, cached_input_tokens,
            output_tokens, estimated, cost_nanos, latency_us, ttft_us, attempts, region,
            cache_write_5m_tokens, cache_write_1h_tokens, reasoning_tokens) VALUES",
        USAGE_COLUMNS,
        rows,
    )
}

/// `INSERT` of `rows` groups into the scratch table (`GATHER_SQL`), as records go in.
fn insert_groups_sql(rows: usize) -> sqlx::AssertSqlSafe<Arc<str>> {
    static CACHE: OnceLock<Vec<Arc<str>>> = OnceLock::new();
    values_sql(
        &CACHE,
        "INSERT INTO temp.usage_batch VALUES",
        GROUP_COLUMNS,
        rows,
    )
}

/// `head` and `rows` rows of `columns` parameters, built once a row count into `cache`.
fn values_sql(
    cache: &OnceLock<Vec<Arc<str>>>,
    head: &str,
    columns: usize,
    rows: usize,
) -> sqlx::AssertSqlSafe<Arc<str>> {
    let cache = cache.get_or_init(|| {
        (0..=USAGE_ROWS_PER_INSERT)
            .map(|n| {
                let row = format!("({})", vec!["?"; columns].join(", "));
                Arc::from(format!("{head} {}", vec![row; n].join(", ")))
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

/// The grouping of a batch's rows that the rollups are folded from: by account, key,
/// model, endpoint and minute, with the sums the rollups add up. Read by SQLite from the rows it
/// inserted (`GATHER_SQL`) when a batch had replays in it; a batch of new records only is
/// grouped in memory instead (`Groups::of`), to the same rows, and written to the scratch
/// table as many groups a statement as records go in (`insert_groups_sql`).
macro_rules! gather_select {
    () => {
        "SELECT account_id, key_id, COALESCE(model, ''), endpoint, (started_ms / 60000) * 60000,
               COUNT(*), SUM(input_tokens), SUM(cached_input_tokens), SUM(output_tokens),
               SUM(cost_nanos), SUM(estimated), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END),
               SUM(cache_write_5m_tokens), SUM(cache_write_1h_tokens), SUM(reasoning_tokens),
               MAX(started_ms)
        FROM usage_records NOT INDEXED WHERE rowid > ? GROUP BY 1, 2, 3, 4, 5"
    };
}

/// This connection's scratch table of the batch's groups, emptied, and then filled with
/// the batch's newly inserted rows (`rowid > ?`) grouped, in one pass over them; the
/// rollups are then folded from those few groups (`ROLLUP_SQL`), not from the rows five
/// times over. Journal replays insert nothing (`OR IGNORE`) and so add nothing. `NOT
/// INDEXED` keeps SQLite on the rowid range: an index that orders by the group would scan
/// every row.
const GATHER_SQL: [&str; 3] = [
    "CREATE TEMP TABLE IF NOT EXISTS usage_batch (
        account_id TEXT NOT NULL, key_id TEXT NOT NULL, model TEXT NOT NULL, endpoint TEXT NOT NULL,
        minute INTEGER NOT NULL,
        n INTEGER NOT NULL, i INTEGER NOT NULL, ci INTEGER NOT NULL, o INTEGER NOT NULL,
        c INTEGER NOT NULL, e INTEGER NOT NULL, err INTEGER NOT NULL, w5 INTEGER NOT NULL,
        w1 INTEGER NOT NULL, r INTEGER NOT NULL, last_started INTEGER NOT NULL)",
    "DELETE FROM temp.usage_batch",
    concat!("INSERT INTO temp.usage_batch ", gather_select!()),
];

/// A group's figures in the scratch table: its request count, nine sums and latest start.
const GROUP_FIGURES: usize = 11;

/// The columns of the scratch table (`GATHER_SQL`): a group's five, then its figures.
const GROUP_COLUMNS: usize = 5 + GROUP_FIGURES;

/// One row of `temp.usage_batch`: the group's account, key, model, endpoint and minute;
/// then its request count, the sums `i, ci, o, c, e, err, w5, w1, r` and the latest start.
#[cfg(test)]
type GroupRow = ((String, String, String, String, i64), [i64; GROUP_FIGURES]);

/// A group's account, key, model (`""` for none), endpoint and minute.
type Group<'a> = (&'a str, &'a str, &'a str, &'a str, i64);

/// A batch of new records grouped as `gather_select!` groups its rows, in first-seen
/// order: each group with its request count, its sums and its latest start (`GroupRow`).
#[derive(Debug, Default)]
struct Groups<'a> {
    rows: Vec<(Group<'a>, [i64; GROUP_FIGURES])>,
    index: crate::idmap::IdMap<Group<'a>, usize>,
}

impl<'a> Groups<'a> {
    /// The groups of `records`, every one of them stored; `None` when a sum leaves
    /// SQLite's integers (SQLite's own `SUM` then fails the batch, as it should).
    fn of(records: &'a [UsageRecord]) -> Option<Self> {
        let mut groups = Self::default();
        for r in records {
            let group = (
                &*r.account_id,
                &*r.key_id,
                r.model.as_deref().unwrap_or(""),
                &*r.endpoint,
                (r.started_ms / 60_000) * 60_000,
            );
            let at = *groups.index.entry(group).or_insert_with(|| {
                groups.rows.push((group, [0; GROUP_FIGURES]));
                groups.rows.len() - 1
            });
            let sums = &mut groups.rows.get_mut(at)?.1;
            let stored = [
                1,
                to_i64(r.input_tokens),
                to_i64(r.cached_input_tokens),
                to_i64(r.output_tokens),
                r.cost_nanos,
                i64::from(r.estimated),
                i64::from(r.status >= 400),
                to_i64(r.cache_write_5m_tokens),
                to_i64(r.cache_write_1h_tokens),
                to_i64(r.reasoning_tokens),
            ];
            for (sum, v) in sums.iter_mut().zip(stored) {
                *sum = sum.checked_add(v)?;
            }
            sums[10] = match sums[0] {
                1 => r.started_ms,
                _ => sums[10].max(r.started_ms),
            };
        }
        Some(groups)
    }

    /// The groups as the scratch table's rows.
    #[cfg(test)]
    fn table(&self) -> Vec<GroupRow> {
        self.rows
            .iter()
            .map(|&((account, key, model, endpoint, minute), sums)| {
                let group = (
                    account.into(),
                    key.into(),
                    model.into(),
                    endpoint.into(),
                    minute,
                );
                (group, sums)
            })
            .collect()
    }
}

/// Folds the batch's groups (`temp.usage_batch`) into the rollups, one upsert per group,
/// as PostgreSQL's statement-level triggers do with their transition table.
const ROLLUP_SQL: [&str; 5] = [
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
    // Per endpoint, for breakdowns by endpoint: hours and days only, so a batch adds a
    // few rows an account, not one a minute it spans.
    "INSERT INTO usage_endpoint_rollups (account_id, granularity, bucket_ms, endpoint, requests, input_tokens,
                                        cached_input_tokens, cache_write_5m_tokens, cache_write_1h_tokens,
                                        output_tokens, reasoning_tokens, cost_nanos, estimated_requests,
                                        error_requests)
        SELECT m.account_id, g.name, (m.minute / g.ms) * g.ms, m.endpoint,
               SUM(n), SUM(i), SUM(ci), SUM(w5), SUM(w1), SUM(o), SUM(r), SUM(c), SUM(e), SUM(err)
        FROM temp.usage_batch m, (SELECT 'hour' AS name, 3600000 AS ms UNION ALL SELECT 'day', 86400000) g
        WHERE true GROUP BY 1, 2, 3, 4
    ON CONFLICT (account_id, granularity, bucket_ms, endpoint) DO UPDATE SET
        requests = requests + excluded.requests,
        input_tokens = input_tokens + excluded.input_tokens,
        cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens,
        cache_write_5m_tokens = cache_write_5m_tokens + excluded.cache_write_5m_tokens,
        cache_write_1h_tokens = cache_write_1h_tokens + excluded.cache_write_1h_tokens,
        output_tokens = output_tokens + excluded.output_tokens,
        reasoning_tokens = reasoning_tokens + excluded.reasoning_tokens,
        cost_nanos = cost_nanos + excluded.cost_nanos,
        estimated_requests = estimated_requests + excluded.estimated_requests,
        error_requests = error_requests + excluded.error_requests",
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
            let [create, clear, gather] = GATHER_SQL;
            sqlx::query(create).execute(&mut *tx).await?;
            sqlx::query(clear).execute(&mut *tx).await?;
            // Every record new (no replay among them): grouped here, not read back.
            let all_new = inserted == u64::try_from(records.len()).unwrap_or(u64::MAX);
            match all_new.then(|| Groups::of(records)).flatten() {
                Some(groups) => {
                    // Many groups (a batch over many keys) go in as many rows a statement
                    // as records do: each statement is a round trip to SQLite's thread.
                    for chunk in pow2_chunks(&groups.rows) {
                        let mut args = sqlx::sqlite::SqliteArguments::default();
                        sqlx::Arguments::reserve(&mut args, chunk.len() * GROUP_COLUMNS, 0);
                        for &((account, key, model, endpoint, minute), sums) in chunk {
                            add!(args, account, key, model, endpoint, minute);
                            for sum in sums {
                                add!(args, sum);
                            }
                        }
                        let query = sqlx::query_with(insert_groups_sql(chunk.len()), args);
                        query.execute(&mut *tx).await?;
                    }
                }
                None => {
                    // The write lock is held since the first insert, so this batch's rows
                    // are the newest `inserted` rowids: each new row takes the largest
                    // rowid plus one.
                    let last: i64 = sqlx::query_scalar("SELECT MAX(rowid) FROM usage_records")
                        .fetch_one(&mut *tx)
                        .await?;
                    sqlx::query(gather)
                        .bind(last - to_i64(inserted))
                        .execute(&mut *tx)
                        .await?;
                }
            }
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

    /// Records across two accounts, three keys, models (and none), minutes, statuses and
    /// every kind of token, in no order.
    fn varied_records() -> Vec<UsageRecord> {
        (0..200u64)
            .map(|i| UsageRecord {
                request_id: format!("req_group_{i}").into(),
                account_id: ["acc_a", "acc_b"][(i % 2) as usize].into(),
                key_id: ["key_1", "key_2", "key_3"][(i % 3) as usize].into(),
                endpoint: ["chat.completions", "responses", "messages"][(i % 7 % 3) as usize]
                    .into(),
                model: [Some("m1".into()), Some("m2".into()), None][(i % 5 % 3) as usize].clone(),
                started_ms: 1_700_000_000_000 + ((i * 7_919) % 5) as i64 * 45_000 + i as i64,
                finished_ms: 1_700_000_000_000,
                status: [200, 200, 429, 500][(i % 4) as usize],
                input_tokens: i * 13,
                cached_input_tokens: i % 11,
                cache_write_5m_tokens: i % 3,
                cache_write_1h_tokens: i % 2,
                output_tokens: i * 3 + 1,
                reasoning_tokens: i % 7,
                estimated: i % 6 == 0,
                cost_nanos: (i * 1_234_567) as i64,
                ..Default::default()
            })
            .collect()
    }

    #[tokio::test]
    async fn a_new_batch_grouped_in_memory_matches_what_sqlite_gathers_from_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&format!("sqlite://{}/g.db", dir.path().display()))
            .await
            .unwrap();
        let records = varied_records();
        assert_eq!(store.insert_usage(&records).await.unwrap(), 200);
        type Row = (
            String,
            String,
            String,
            String,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
        );
        let rows: Vec<Row> = sqlx::query_as(gather_select!())
            .bind(0i64)
            .fetch_all(&store.usage_pool)
            .await
            .unwrap();
        let mut from_rows: Vec<GroupRow> = rows
            .into_iter()
            .map(|r| {
                let sums = [r.5, r.6, r.7, r.8, r.9, r.10, r.11, r.12, r.13, r.14, r.15];
                ((r.0, r.1, r.2, r.3, r.4), sums)
            })
            .collect();
        let mut in_memory = Groups::of(&records).unwrap().table();
        assert!(from_rows.len() > 20, "{} groups", from_rows.len());
        from_rows.sort();
        in_memory.sort();
        assert_eq!(in_memory, from_rows);
    }

    #[tokio::test]
    async fn rollups_are_the_same_whether_a_batch_is_grouped_in_memory_or_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let open = |name: &str| {
            let url = format!("sqlite://{}/{name}.db", dir.path().display());
            async move { SqliteStore::open(&url).await.unwrap() }
        };
        let (fresh, replayed) = (open("fresh").await, open("replayed").await);
        let records = varied_records();
        assert_eq!(fresh.insert_usage(&records).await.unwrap(), 200);
        // A replayed record in the batch sends it down SQLite's read-back path.
        assert_eq!(replayed.insert_usage(&records[..1]).await.unwrap(), 1);
        assert_eq!(replayed.insert_usage(&records).await.unwrap(), 199);
        for table in [
            "key_usage_hourly",
            "key_usage_totals",
            "usage_rollups",
            "usage_endpoint_rollups",
            "usage_unposted",
        ] {
            let (a, b) = (dump(&fresh, table).await, dump(&replayed, table).await);
            assert!(!a.is_empty(), "{table} is empty");
            assert_eq!(a, b, "{table}");
        }
    }

    /// Every row of `table` as text, sorted (its `changed_ms` stamps left out).
    async fn dump(store: &SqliteStore, table: &str) -> Vec<Vec<String>> {
        use sqlx::{Column, Row};
        let sql = format!("SELECT * FROM {table}");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&store.usage_pool)
            .await
            .unwrap();
        let mut rows: Vec<Vec<String>> = rows
            .iter()
            .map(|row| {
                (0..row.len())
                    .filter(|&i| row.column(i).name() != "changed_ms")
                    .map(|i| match row.try_get::<i64, _>(i) {
                        Ok(n) => n.to_string(),
                        Err(_) => row.get::<String, _>(i),
                    })
                    .collect()
            })
            .collect();
        rows.sort();
        rows
    }

    /// A database from before the endpoint rollups has them seeded from its records on
    /// upgrade, and folded from then on: they end as a store that had them all along has.
    #[tokio::test]
    async fn upgrading_seeds_endpoint_rollups_from_the_records() {
        let dir = tempfile::tempdir().unwrap();
        let url = |name: &str| format!("sqlite://{}/{name}.db", dir.path().display());
        let records = varied_records();
        let upgraded = SqliteStore::open(&url("upgraded")).await.unwrap();
        assert_eq!(upgraded.insert_usage(&records[..120]).await.unwrap(), 120);
        // Back to schema 18: no endpoint rollups.
        sqlx::raw_sql(
            "DROP TABLE usage_endpoint_rollups; DELETE FROM schema_migrations WHERE version = 19",
        )
        .execute(&upgraded.pool)
        .await
        .unwrap();
        upgraded.close().await;
        let upgraded = SqliteStore::open(&url("upgraded")).await.unwrap();
        assert_eq!(upgraded.insert_usage(&records[120..]).await.unwrap(), 80);
        let always = SqliteStore::open(&url("always")).await.unwrap();
        assert_eq!(always.insert_usage(&records).await.unwrap(), 200);
        let table = "usage_endpoint_rollups";
        let (a, b) = (dump(&always, table).await, dump(&upgraded, table).await);
        // Two accounts × three endpoints × an hour and a day.
        assert_eq!(a.len(), 12, "{a:?}");
        assert_eq!(a, b);
    }

    #[test]
    fn a_sum_past_sqlites_integers_is_left_to_sqlite() {
        let record = |id: &str| UsageRecord {
            request_id: id.into(),
            cost_nanos: i64::MAX,
            ..Default::default()
        };
        assert!(Groups::of(&[record("a")]).is_some());
        assert!(Groups::of(&[record("a"), record("b")]).is_none());
    }
}
