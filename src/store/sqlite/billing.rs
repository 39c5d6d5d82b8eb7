//! SQLite's side of the ledger: appenders kept one at a time by an immediate transaction,
//! and usage posting from the per-account sums of unposted usage (the rest of the ledger
//! is written once for both stores, in `store/shared/ledger.rs`).

use super::SqliteStore;
use super::shared::ledger::post_sums;
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

    /// Runs a ledger append: SQLite's one writer keeps the hash chain linear.
    pub(super) async fn ledger_tx<T>(
        &self,
        f: impl for<'c> AsyncFnOnce(&'c mut sqlx::SqliteConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, StoreError> {
        self.immediate(f).await
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
            let sums = sqlx::query(
                "SELECT COALESCE(a.billing_id, CASE WHEN a.status = 'deleted' THEN a.id END, 'erased') AS billing_id,
                        SUM(p.cost_nanos) AS cost, SUM(p.requests) AS n
                 FROM usage_unposted p LEFT JOIN accounts a ON a.id = p.account_id
                 GROUP BY 1 ORDER BY 1",
            )
            .fetch_all(&mut *c)
            .await?;
            if sums.is_empty() {
                return Ok(0);
            }
            let now = now_ms();
            let posted = post_sums(c, &sums, since, now).await?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, account: &str, cost: i64) -> crate::usage::UsageRecord {
        crate::usage::UsageRecord {
            request_id: id.into(),
            account_id: account.into(),
            key_id: "key_1".into(),
            endpoint: "chat.completions".into(),
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
             ALTER TABLE usage_records DROP COLUMN cache_write_5m_tokens;
             ALTER TABLE usage_records DROP COLUMN cache_write_1h_tokens;
             ALTER TABLE usage_records DROP COLUMN reasoning_tokens;
             ALTER TABLE usage_rollups DROP COLUMN cache_write_5m_tokens;
             ALTER TABLE usage_rollups DROP COLUMN cache_write_1h_tokens;
             ALTER TABLE usage_rollups DROP COLUMN reasoning_tokens;
             DROP TABLE alert_rules; DROP TABLE alert_deliveries; DROP TABLE privacy_notices;
             DROP INDEX key_usage_totals_changed; ALTER TABLE key_usage_totals DROP COLUMN changed_ms;
             DROP TABLE usage_endpoint_rollups;
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
