//! PostgreSQL's side of the ledger: appenders kept one at a time across instances by
//! `LEDGER_LOCK`, and usage posting from the per-account sums of unposted usage (the rest
//! of the ledger is written once for both stores, in `store/shared/ledger.rs`).

use sqlx::PgConnection;

use super::shared::ledger::post_sums;
use super::{LEDGER_LOCK, PgStore, USAGE_POSTING_LOCK, xact_lock};
use crate::store::StoreError;
use crate::time::now_ms;

impl PgStore {
    /// Runs a ledger append under `LEDGER_LOCK`, so the hash chain stays linear.
    pub(super) async fn ledger_tx<T>(
        &self,
        f: impl for<'c> AsyncFnOnce(&'c mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, StoreError> {
        let mut tx = self.pool.begin().await?;
        xact_lock(&mut tx, LEDGER_LOCK).await?;
        let value = f(&mut tx).await?;
        tx.commit().await?;
        Ok(value)
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
            let sums = sqlx::query(
                "WITH p AS (DELETE FROM usage_unposted RETURNING account_id, requests, cost_nanos)
                 SELECT COALESCE(a.billing_id, CASE WHEN a.status = 'deleted' THEN a.id END, 'erased') COLLATE \"C\" AS billing_id,
                        SUM(p.cost_nanos)::BIGINT AS cost, SUM(p.requests)::BIGINT AS n
                 FROM p LEFT JOIN accounts a ON a.id = p.account_id
                 GROUP BY 1 ORDER BY 1",
            )
            .fetch_all(&mut *c)
            .await?;
            if sums.is_empty() {
                return Ok(0);
            }
            let now = now_ms();
            let posted = post_sums(c, &sums, since, now).await?;
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
}
