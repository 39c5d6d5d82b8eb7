//! The ledger (appended under an immediate transaction so the chain stays linear),
//! usage posting by insertion order, balances and key spend for the budget tracker.

use std::collections::{BTreeMap, HashMap};

use futures_util::TryStreamExt;
use sqlx::Row;
use sqlx::sqlite::SqliteRow;

use super::SqliteStore;
use crate::billing::ledger::{GENESIS, LedgerEntry, entry_hash};
use crate::store::StoreError;
use crate::time::now_ms;

fn entry_of(row: &SqliteRow) -> Result<LedgerEntry, sqlx::Error> {
    Ok(LedgerEntry {
        seq: row.try_get("seq")?,
        ts_ms: row.try_get("ts_ms")?,
        billing_id: row.try_get("billing_id")?,
        kind: row.try_get("kind")?,
        amount_nanos: row.try_get("amount_nanos")?,
        period_start_ms: row.try_get("period_start_ms")?,
        period_end_ms: row.try_get("period_end_ms")?,
        memo: row.try_get("memo")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

async fn append(
    conn: &mut sqlx::SqliteConnection,
    billing_id: &str,
    kind: &str,
    amount_nanos: i64,
    period: Option<(i64, i64)>,
    memo: &str,
) -> Result<LedgerEntry, sqlx::Error> {
    let last = sqlx::query("SELECT seq, hash FROM ledger ORDER BY seq DESC LIMIT 1")
        .fetch_optional(&mut *conn)
        .await?;
    let (seq, prev_hash) = match last {
        Some(row) => (
            row.try_get::<i64, _>("seq")? + 1,
            row.try_get::<String, _>("hash")?,
        ),
        None => (1, GENESIS.to_owned()),
    };
    let mut e = LedgerEntry {
        seq,
        ts_ms: now_ms(),
        billing_id: billing_id.to_owned(),
        kind: kind.to_owned(),
        amount_nanos,
        period_start_ms: period.map(|p| p.0),
        period_end_ms: period.map(|p| p.1),
        memo: memo.to_owned(),
        prev_hash,
        hash: String::new(),
    };
    e.hash = entry_hash(&e);
    sqlx::query(
        "INSERT INTO ledger (seq, ts_ms, billing_id, kind, amount_nanos, period_start_ms, period_end_ms, memo, prev_hash, hash)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(e.seq)
    .bind(e.ts_ms)
    .bind(&e.billing_id)
    .bind(&e.kind)
    .bind(e.amount_nanos)
    .bind(e.period_start_ms)
    .bind(e.period_end_ms)
    .bind(&e.memo)
    .bind(&e.prev_hash)
    .bind(&e.hash)
    .execute(&mut *conn)
    .await?;
    Ok(e)
}

impl SqliteStore {
    /// Runs `f` inside `BEGIN IMMEDIATE … COMMIT` (rolled back on error).
    pub(super) async fn immediate<T>(
        &self,
        f: impl for<'c> AsyncFnOnce(&'c mut sqlx::SqliteConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, StoreError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        match f(&mut conn).await {
            Ok(v) => {
                sqlx::query("COMMIT").execute(&mut *conn).await?;
                Ok(v)
            }
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(e.into())
            }
        }
    }

    pub async fn append_ledger(
        &self,
        billing_id: &str,
        kind: &str,
        amount_nanos: i64,
        memo: &str,
    ) -> Result<LedgerEntry, StoreError> {
        self.immediate(async |c| append(c, billing_id, kind, amount_nanos, None, memo).await)
            .await
    }

    pub async fn ledger(
        &self,
        billing_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let rows = match billing_id {
            Some(b) => {
                sqlx::query("SELECT * FROM ledger WHERE billing_id = ? ORDER BY seq DESC LIMIT ?")
                    .bind(b)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM ledger ORDER BY seq")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows.iter().map(entry_of).collect::<Result<_, _>>()?)
    }

    /// Posts every usage record not yet posted as one `usage` entry per account.
    pub async fn post_usage(&self) -> Result<usize, StoreError> {
        self.immediate(async |c| {
            let cursor: i64 =
                sqlx::query_scalar("SELECT posted_rowid FROM billing_cursor WHERE id = 1")
                    .fetch_one(&mut *c)
                    .await?;
            let since: i64 =
                sqlx::query_scalar("SELECT posted_ms FROM billing_cursor WHERE id = 1")
                    .fetch_one(&mut *c)
                    .await?;
            let max: Option<i64> = sqlx::query_scalar("SELECT MAX(rowid) FROM usage_records")
                .fetch_one(&mut *c)
                .await?;
            let Some(max) = max.filter(|m| *m > cursor) else {
                return Ok(0);
            };
            // Summed per account while reading the range in rowid order: a GROUP BY in SQL
            // sorted the whole range, a 2 MB sort buffer every posting that the allocator
            // then kept.
            let mut per_account: HashMap<String, (i64, i64)> = HashMap::new();
            {
                let mut rows = sqlx::query(
                    "SELECT account_id, cost_nanos FROM usage_records WHERE rowid > ? AND rowid <= ?",
                )
                .bind(cursor)
                .bind(max)
                .fetch(&mut *c);
                while let Some(row) = rows.try_next().await? {
                    let account: &str = row.try_get(0)?;
                    let cost: i64 = row.try_get(1)?;
                    match per_account.get_mut(account) {
                        Some((sum, n)) => {
                            *sum += cost;
                            *n += 1;
                        }
                        None => {
                            per_account.insert(account.to_owned(), (cost, 1));
                        }
                    }
                }
            }
            // A record that lands after its account was erased (a stream still running
            // then) is billed to `erased` rather than lost.
            let mut per_billing: BTreeMap<String, (i64, i64)> = BTreeMap::new();
            for (account, (cost, n)) in per_account {
                let billing_id: Option<String> =
                    sqlx::query_scalar("SELECT billing_id FROM accounts WHERE id = ?")
                        .bind(&account)
                        .fetch_optional(&mut *c)
                        .await?
                        .flatten();
                let entry = per_billing
                    .entry(billing_id.unwrap_or_else(|| "erased".to_owned()))
                    .or_default();
                entry.0 += cost;
                entry.1 += n;
            }
            let now = now_ms();
            let mut posted = 0;
            for (billing_id, (cost, n)) in &per_billing {
                if *cost == 0 {
                    continue;
                }
                append(
                    c,
                    billing_id,
                    "usage",
                    -cost,
                    Some((since, now)),
                    &format!("{n} requests"),
                )
                .await?;
                posted += 1;
            }
            sqlx::query("UPDATE billing_cursor SET posted_rowid = ?, posted_ms = ? WHERE id = 1")
                .bind(max)
                .bind(now)
                .execute(&mut *c)
                .await?;
            Ok(posted)
        })
        .await
    }

    /// Every account's balance: ledger total minus usage not yet posted.
    pub async fn balances(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.id AS id,
                    COALESCE((SELECT SUM(amount_nanos) FROM ledger l WHERE l.billing_id = a.billing_id), 0)
                  - COALESCE((SELECT SUM(u.cost_nanos) FROM usage_records u
                              WHERE +u.account_id = a.id AND u.rowid > (SELECT posted_rowid FROM billing_cursor WHERE id = 1)), 0)
                    AS balance
             FROM accounts a",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("balance")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// (key id, limit, spent this period) for every live key with a spend limit.
    pub async fn key_spend(
        &self,
        day_start_ms: i64,
        month_start_ms: i64,
    ) -> Result<Vec<(String, i64, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT k.id AS id, k.spend_limit_nanos AS lim,
                    CASE COALESCE(k.spend_limit_period, 'total')
                        WHEN 'total' THEN COALESCE((SELECT cost_nanos FROM key_usage_totals t WHERE t.key_id = k.id), 0)
                        WHEN 'day' THEN COALESCE((SELECT SUM(cost_nanos) FROM key_usage_hourly h WHERE h.key_id = k.id AND h.hour_ms >= ?), 0)
                        ELSE COALESCE((SELECT SUM(cost_nanos) FROM key_usage_hourly h WHERE h.key_id = k.id AND h.hour_ms >= ?), 0)
                    END AS spent
             FROM api_keys k WHERE k.spend_limit_nanos IS NOT NULL AND k.status != 'deleted'",
        )
        .bind(day_start_ms)
        .bind(month_start_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("lim")?, r.try_get("spent")?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(Into::into)
    }

    /// (ledger total, unposted usage, newest `limit` entries), read in one snapshot so a
    /// posting that runs meanwhile cannot make the figures disagree.
    pub async fn billing_snapshot(
        &self,
        billing_id: &str,
        account_id: &str,
        limit: i64,
    ) -> Result<(i64, i64, Vec<LedgerEntry>), StoreError> {
        let mut tx = self.pool.begin().await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(amount_nanos), 0) FROM ledger WHERE billing_id = ?",
        )
        .bind(billing_id)
        .fetch_one(&mut *tx)
        .await?;
        let unposted: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(cost_nanos), 0) FROM usage_records
             WHERE +account_id = ? AND rowid > (SELECT posted_rowid FROM billing_cursor WHERE id = 1)",
        )
        .bind(account_id)
        .fetch_one(&mut *tx)
        .await?;
        let rows =
            sqlx::query("SELECT * FROM ledger WHERE billing_id = ? ORDER BY seq DESC LIMIT ?")
                .bind(billing_id)
                .bind(limit)
                .fetch_all(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok((
            total,
            unposted,
            rows.iter().map(entry_of).collect::<Result<_, _>>()?,
        ))
    }
}
