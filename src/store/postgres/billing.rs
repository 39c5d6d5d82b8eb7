//! The ledger in PostgreSQL (appended under `LEDGER_LOCK` so the hash chain stays linear
//! across instances), usage posting from the per-account sums of unposted usage, balances
//! and key spend for the budget tracker.

use sqlx::Row;

use super::ledger::{append, entry_of};
use super::{LEDGER_LOCK, PgStore, USAGE_POSTING_LOCK, xact_lock};
use crate::billing::ledger::{LedgerEntry, LedgerKind};
use crate::store::StoreError;
use crate::time::now_ms;

impl PgStore {
    pub async fn append_ledger(
        &self,
        billing_id: &str,
        kind: LedgerKind,
        amount_nanos: i64,
        memo: &str,
    ) -> Result<LedgerEntry, StoreError> {
        self.in_tx(async |c| {
            xact_lock(c, LEDGER_LOCK).await?;
            append(c, billing_id, kind, amount_nanos, None, memo).await
        })
        .await
    }

    pub async fn ledger(
        &self,
        billing_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        let rows = match billing_id {
            Some(b) => {
                sqlx::query("SELECT * FROM ledger WHERE billing_id = $1 ORDER BY seq DESC LIMIT $2")
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
    ///
    /// A trigger on insert sums unposted usage per account (`usage_unposted`) in the
    /// inserting transaction. Inserts hold `USAGE_POSTING_LOCK` shared and posting takes it
    /// exclusive, so every batch is counted exactly once: before this posting or after it.
    /// Reading the sums costs one row per account, however many requests the minute held.
    /// The cursor (`posted_seq`) still marks what the retention purge may remove: once
    /// posting holds the lock, every record numbered so far is committed and posted.
    pub async fn post_usage(&self) -> Result<usize, StoreError> {
        self.in_tx(async |c| {
            xact_lock(c, USAGE_POSTING_LOCK).await?;
            xact_lock(c, LEDGER_LOCK).await?;
            let since: i64 =
                sqlx::query_scalar("SELECT posted_ms FROM billing_cursor WHERE id = 1")
                    .fetch_one(&mut *c)
                    .await?;
            // Usage an erasure moved to the account's tombstone is billed to it (its id is
            // the billing id); a record that lands after its account was erased (a stream
            // still running then) is billed to `erased` rather than lost.
            let rows = sqlx::query(
                "WITH p AS (DELETE FROM usage_unposted RETURNING account_id, requests, cost_nanos)
                 SELECT COALESCE(a.billing_id, CASE WHEN a.status = 'deleted' THEN a.id END, 'erased') COLLATE \"C\" AS billing_id,
                        SUM(p.cost_nanos)::BIGINT AS cost, SUM(p.requests)::BIGINT AS n
                 FROM p LEFT JOIN accounts a ON a.id = p.account_id
                 GROUP BY 1 ORDER BY 1",
            )
            .fetch_all(&mut *c)
            .await?;
            if rows.is_empty() {
                return Ok(0);
            }
            let now = now_ms();
            let mut posted = 0;
            for row in &rows {
                let cost: i64 = row.try_get("cost")?;
                let n: i64 = row.try_get("n")?;
                if cost == 0 {
                    continue;
                }
                let billing_id: String = row.try_get("billing_id")?;
                append(
                    c,
                    &billing_id,
                    LedgerKind::Usage,
                    -cost,
                    Some((since, now)),
                    &format!("{n} requests"),
                )
                .await?;
                posted += 1;
            }
            sqlx::query(
                "UPDATE billing_cursor SET posted_ms = $1,
                     posted_seq = GREATEST(posted_seq, COALESCE((SELECT MAX(seq) FROM usage_records), 0))
                 WHERE id = 1",
            )
            .bind(now)
            .execute(&mut *c)
            .await?;
            Ok(posted)
        })
        .await
    }

    pub async fn ledger_totals(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(
            sqlx::query_as(
                "SELECT billing_id, amount_nanos FROM ledger_totals ORDER BY billing_id",
            )
            .fetch_all(&self.pool)
            .await?,
        )
    }

    /// Every account's balance: ledger total minus usage not yet posted.
    pub async fn balances(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.id AS id,
                    (COALESCE((SELECT t.amount_nanos FROM ledger_totals t WHERE t.billing_id = a.billing_id), 0)
                   - COALESCE((SELECT p.cost_nanos FROM usage_unposted p WHERE p.account_id = a.id), 0))::BIGINT
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
                    (CASE COALESCE(k.spend_limit_period, 'total')
                        WHEN 'total' THEN COALESCE((SELECT cost_nanos FROM key_usage_totals t WHERE t.key_id = k.id), 0)
                        WHEN 'day' THEN COALESCE((SELECT SUM(cost_nanos) FROM key_usage_hourly h WHERE h.key_id = k.id AND h.hour_ms >= $1), 0)
                        ELSE COALESCE((SELECT SUM(cost_nanos) FROM key_usage_hourly h WHERE h.key_id = k.id AND h.hour_ms >= $2), 0)
                    END)::BIGINT AS spent
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

    /// (ledger total, unposted usage, newest `limit` entries), read in one REPEATABLE READ
    /// snapshot so a posting that commits meanwhile cannot make the figures disagree.
    pub async fn billing_snapshot(
        &self,
        billing_id: &str,
        account_id: &str,
        limit: i64,
    ) -> Result<(i64, i64, Vec<LedgerEntry>), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COALESCE((SELECT amount_nanos FROM ledger_totals WHERE billing_id = $1), 0)",
        )
        .bind(billing_id)
        .fetch_one(&mut *tx)
        .await?;
        let unposted: i64 = sqlx::query_scalar(
            "SELECT COALESCE((SELECT cost_nanos FROM usage_unposted WHERE account_id = $1), 0)",
        )
        .bind(account_id)
        .fetch_one(&mut *tx)
        .await?;
        let rows =
            sqlx::query("SELECT * FROM ledger WHERE billing_id = $1 ORDER BY seq DESC LIMIT $2")
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
