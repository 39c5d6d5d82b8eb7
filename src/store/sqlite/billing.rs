//! The ledger (appended under an immediate transaction so the chain stays linear),
//! usage posting from the per-account sums of unposted usage, balances and key spend for
//! the budget tracker.

use sqlx::Row;

use super::SqliteStore;
use super::ledger::{append, entry_of};
use crate::billing::ledger::{LedgerEntry, LedgerKind};
use crate::store::StoreError;
use crate::time::now_ms;

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
        kind: LedgerKind,
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
    ///
    /// The usage insert sums what is unposted per account (`usage_unposted`) in the same
    /// transaction as the records, and this runs under an immediate transaction too, so
    /// each record is counted exactly once: before this posting or after it. Reading the
    /// sums costs one row per account, however many requests the minute held.
    pub async fn post_usage(&self) -> Result<usize, StoreError> {
        self.immediate(async |c| {
            let since: i64 =
                sqlx::query_scalar("SELECT posted_ms FROM billing_cursor WHERE id = 1")
                    .fetch_one(&mut *c)
                    .await?;
            // Usage an erasure moved to the account's tombstone is billed to it (its id is
            // the billing id); a record that lands after its account was erased (a stream
            // still running then) is billed to `erased` rather than lost.
            // One row per account: grouping them by billing id in SQL is cheap now.
            let rows = sqlx::query(
                "SELECT COALESCE(a.billing_id, CASE WHEN a.status = 'deleted' THEN a.id END, 'erased') AS billing_id,
                        SUM(p.cost_nanos) AS cost, SUM(p.requests) AS n
                 FROM usage_unposted p LEFT JOIN accounts a ON a.id = p.account_id
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
            sqlx::query("DELETE FROM usage_unposted").execute(&mut *c).await?;
            // Every record stored so far is posted now: the purge may remove them.
            sqlx::query(
                "UPDATE billing_cursor SET posted_ms = ?,
                     posted_rowid = MAX(posted_rowid, COALESCE((SELECT MAX(rowid) FROM usage_records), 0))
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
                    COALESCE((SELECT t.amount_nanos FROM ledger_totals t WHERE t.billing_id = a.billing_id), 0)
                  - COALESCE((SELECT p.cost_nanos FROM usage_unposted p WHERE p.account_id = a.id), 0)
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
            "SELECT COALESCE((SELECT amount_nanos FROM ledger_totals WHERE billing_id = ?), 0)",
        )
        .bind(billing_id)
        .fetch_one(&mut *tx)
        .await?;
        let unposted: i64 = sqlx::query_scalar(
            "SELECT COALESCE((SELECT cost_nanos FROM usage_unposted WHERE account_id = ?), 0)",
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, account: &str, cost: i64) -> crate::usage::UsageRecord {
        crate::usage::UsageRecord {
            request_id: id.to_owned(),
            account_id: account.to_owned(),
            key_id: "key_1".to_owned(),
            endpoint: "chat.completions".to_owned(),
            status: 200,
            cost_nanos: cost,
            ..Default::default()
        }
    }

    /// A database from before the running sums gets them seeded on upgrade: ledger totals
    /// from the ledger, unposted usage from exactly the records after the posting cursor.
    #[tokio::test]
    async fn upgrading_seeds_ledger_totals_and_unposted_sums_from_what_is_stored() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let store = SqliteStore::open(&url).await.unwrap();
        store
            .insert_usage(&[record("r1", "acct_a", 100)])
            .await
            .unwrap();
        store.post_usage().await.unwrap();
        store
            .insert_usage(&[record("r2", "acct_a", 20), record("r3", "acct_b", 3)])
            .await
            .unwrap();
        // Back to schema 12: no sums table.
        sqlx::raw_sql(
            "DROP TABLE usage_unposted; DROP TRIGGER ledger_totals_insert; DROP TABLE ledger_totals;
             DROP TRIGGER key_usage_hourly_integer_insert; DROP TRIGGER key_usage_hourly_integer_update;
             DROP TRIGGER key_usage_totals_integer_insert; DROP TRIGGER key_usage_totals_integer_update;
             DROP TRIGGER usage_rollups_integer_insert; DROP TRIGGER usage_rollups_integer_update;
             DROP TABLE invitations;
             DELETE FROM schema_migrations WHERE version >= 13",
        )
        .execute(&store.pool)
        .await
        .unwrap();
        store.close().await;
        let store = SqliteStore::open(&url).await.unwrap();
        let sums: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT account_id, requests, cost_nanos FROM usage_unposted ORDER BY account_id",
        )
        .fetch_all(&store.pool)
        .await
        .unwrap();
        assert_eq!(
            sums,
            [("acct_a".to_owned(), 1, 20), ("acct_b".to_owned(), 1, 3)]
        );
        // r1 was posted before the upgrade, to `erased` (acct_a has no account row).
        let totals: Vec<(String, i64)> =
            sqlx::query_as("SELECT billing_id, amount_nanos FROM ledger_totals")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        assert_eq!(totals, [("erased".to_owned(), -100)]);
        // And kept from then on: the next posting adds to them.
        assert_eq!(store.post_usage().await.unwrap(), 1);
        let (total, unposted, _) = store.billing_snapshot("erased", "acct_a", 1).await.unwrap();
        assert_eq!((total, unposted), (-123, 0));
    }
}
