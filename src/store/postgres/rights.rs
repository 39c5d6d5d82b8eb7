//! Data rights and retention in PostgreSQL: erase an account's personal data (keeping the
//! ledger and daily aggregates under an opaque tombstone id), and purge old per-request
//! records.
//!
//! PostgreSQL has no `secure_delete`: erased rows are removed by DELETE/UPDATE here, and
//! the dead tuples they leave are reclaimed by (auto)VACUUM, which this module does not
//! run (it cannot run inside a transaction, and autovacuum already does it).

use super::{KEY_VERSION_LOCK, PgStore, xact_lock};
use crate::store::{Erased, StoreError};
use crate::time::now_ms;

impl PgStore {
    /// Erases account `id`. Run `post_usage` first so the ledger holds every charge.
    pub async fn erase_account(&self, id: &str) -> Result<Erased, StoreError> {
        self.in_tx(async |c| {
            // The keys get new versions below; take the lock first (see `keys.rs`).
            xact_lock(c, KEY_VERSION_LOCK).await?;
            let tombstone: String = match sqlx::query_scalar::<_, Option<String>>(
                "SELECT billing_id FROM accounts WHERE id = $1 FOR UPDATE",
            )
            .bind(id)
            .fetch_optional(&mut *c)
            .await?
            {
                Some(Some(b)) => b,
                _ => return Err(sqlx::Error::RowNotFound),
            };
            let mut e = Erased {
                tombstone_id: tombstone.clone(),
                ..Erased::default()
            };
            // Users who belong to no other account and are not operators go entirely.
            let lonely: Vec<String> = sqlx::query_scalar(
                "SELECT m.user_id FROM memberships m JOIN users u ON u.id = m.user_id
                 WHERE m.account_id = $1 AND NOT u.is_operator
                   AND NOT EXISTS (SELECT 1 FROM memberships o WHERE o.user_id = m.user_id AND o.account_id != m.account_id)",
            )
            .bind(id)
            .fetch_all(&mut *c)
            .await?;
            sqlx::query("DELETE FROM memberships WHERE account_id = $1")
                .bind(id)
                .execute(&mut *c)
                .await?;
            for user in &lonely {
                sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                    .bind(user)
                    .execute(&mut *c)
                    .await?;
                sqlx::query("DELETE FROM mgmt_tokens WHERE created_by = $1")
                    .bind(user)
                    .execute(&mut *c)
                    .await?;
                e.users += sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(user)
                    .execute(&mut *c)
                    .await?
                    .rows_affected();
            }
            e.tokens = sqlx::query("DELETE FROM mgmt_tokens WHERE account_id = $1")
                .bind(id)
                .execute(&mut *c)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM invitations WHERE account_id = $1")
                .bind(id)
                .execute(&mut *c)
                .await?;
            e.security_events = sqlx::query("DELETE FROM security_events WHERE account_id = $1")
                .bind(id)
                .execute(&mut *c)
                .await?
                .rows_affected();
            for table in ["key_usage_hourly", "key_usage_totals"] {
                let sql = sqlx::AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE key_id IN (SELECT id FROM api_keys WHERE account_id = $1)"
                ));
                sqlx::query(sql).bind(id).execute(&mut *c).await?;
            }
            // A tombstone account row (no name, no billing mapping) holds what is kept.
            sqlx::query(
                "INSERT INTO accounts (id, name, created_ms, status, billing_id) VALUES ($1, $1, 0, 'deleted', NULL)",
            )
            .bind(&tombstone)
            .execute(&mut *c)
            .await?;
            // Keys stay as hash-less, nameless tombstones so every instance's key cache
            // learns (by version) that they are gone.
            e.keys = sqlx::query(
                "UPDATE api_keys SET account_id = $1, name = '', description = '', secret_hash = NULL, previous_hash = NULL,
                     allowed_models = NULL, status = 'deleted', deleted_ms = $2,
                     version = nextval('api_keys_version_seq')
                 WHERE account_id = $3",
            )
            .bind(&tombstone)
            .bind(now_ms())
            .bind(id)
            .execute(&mut *c)
            .await?
            .rows_affected();
            e.usage_records = sqlx::query("DELETE FROM usage_records WHERE account_id = $1")
                .bind(id)
                .execute(&mut *c)
                .await?
                .rows_affected();
            sqlx::query("DELETE FROM usage_rollups WHERE account_id = $1 AND granularity != 'day'")
                .bind(id)
                .execute(&mut *c)
                .await?;
            sqlx::query("UPDATE usage_rollups SET account_id = $1 WHERE account_id = $2")
                .bind(&tombstone)
                .bind(id)
                .execute(&mut *c)
                .await?;
            // Usage not yet posted stays billable, under the tombstone (after the rollups,
            // in the order the insert triggers lock these tables).
            sqlx::query("UPDATE usage_unposted SET account_id = $1 WHERE account_id = $2")
                .bind(&tombstone)
                .bind(id)
                .execute(&mut *c)
                .await?;
            sqlx::query("DELETE FROM audit_log WHERE account_id = $1")
                .bind(id)
                .execute(&mut *c)
                .await?;
            sqlx::query("DELETE FROM accounts WHERE id = $1")
                .bind(id)
                .execute(&mut *c)
                .await?;
            Ok(e)
        })
        .await
        .map_err(|e| match e {
            StoreError::Db(sqlx::Error::RowNotFound) => StoreError::NotFound("account"),
            e => e,
        })
    }

    /// Deletes per-request records started before `before_ms` that are already posted to
    /// the ledger, minute rollups older than two days, security events older than 90 days
    /// and expired sessions. Returns the number of records removed.
    pub async fn purge(&self, before_ms: i64) -> Result<u64, StoreError> {
        let cursor: i64 = sqlx::query_scalar("SELECT posted_seq FROM billing_cursor WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        let mut removed = 0;
        loop {
            // In slices, so a large purge never holds many row locks for long.
            let n = sqlx::query(
                "DELETE FROM usage_records WHERE seq IN
                    (SELECT seq FROM usage_records WHERE started_ms < $1 AND seq <= $2 LIMIT 5000)",
            )
            .bind(before_ms)
            .bind(cursor)
            .execute(&self.pool)
            .await?
            .rows_affected();
            removed += n;
            if n < 5000 {
                break;
            }
        }
        let now = now_ms();
        sqlx::query("DELETE FROM usage_rollups WHERE granularity = 'minute' AND bucket_ms < $1")
            .bind(now - 2 * 86_400_000)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM sessions WHERE expires_ms < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM security_events WHERE bucket_ms < $1")
            .bind(now - 90 * 86_400_000)
            .execute(&self.pool)
            .await?;
        Ok(removed)
    }
}
