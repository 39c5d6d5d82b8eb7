//! Data rights and retention, written once for both stores: erase an account's personal
//! data (keeping the ledger and daily aggregates under an opaque tombstone id), and purge
//! old per-request records. Each store includes this file with its own types and runs
//! `erase_rows` under its own write lock (see `erase_account` in each backend).

use super::{DbConn, FOR_UPDATE, POSTED_CURSOR, ThisStore, USAGE_ORDER, bump_account_keys};
use crate::store::{Erased, StoreError};
use crate::time::now_ms;

/// Erases account `id`'s personal data inside the caller's write transaction; the
/// caller has posted its usage first, so the ledger holds every charge.
pub(in crate::store) async fn erase_rows(c: &mut DbConn, id: &str) -> Result<Erased, sqlx::Error> {
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT billing_id FROM accounts WHERE id = $1{FOR_UPDATE}"
    ));
    let tombstone: String = match sqlx::query_scalar::<_, Option<String>>(sql)
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
    let by_account = async |c: &mut DbConn, sql: &'static str| {
        sqlx::query(sql)
            .bind(id)
            .execute(&mut *c)
            .await
            .map(|r| r.rows_affected())
    };
    by_account(c, "DELETE FROM memberships WHERE account_id = $1").await?;
    for user in &lonely {
        for sql in [
            "DELETE FROM sessions WHERE user_id = $1",
            "DELETE FROM mgmt_tokens WHERE created_by = $1",
            "DELETE FROM alert_deliveries WHERE user_id = $1",
        ] {
            sqlx::query(sql).bind(user).execute(&mut *c).await?;
        }
        e.users += sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user)
            .execute(&mut *c)
            .await?
            .rows_affected();
    }
    e.tokens = by_account(c, "DELETE FROM mgmt_tokens WHERE account_id = $1").await?;
    by_account(c, "DELETE FROM invitations WHERE account_id = $1").await?;
    by_account(c, "DELETE FROM alert_rules WHERE account_id = $1").await?;
    by_account(c, "DELETE FROM alert_deliveries WHERE account_id = $1").await?;
    e.security_events = by_account(c, "DELETE FROM security_events WHERE account_id = $1").await?;
    by_account(
        c,
        "DELETE FROM key_usage_hourly WHERE key_id IN (SELECT id FROM api_keys WHERE account_id = $1)",
    )
    .await?;
    by_account(
        c,
        "DELETE FROM key_usage_totals WHERE key_id IN (SELECT id FROM api_keys WHERE account_id = $1)",
    )
    .await?;
    // A tombstone account row (no name, no billing mapping) holds what is kept.
    sqlx::query(
        "INSERT INTO accounts (id, name, created_ms, status, billing_id) VALUES ($1, $1, 0, 'deleted', NULL)",
    )
    .bind(&tombstone)
    .execute(&mut *c)
    .await?;
    // Keys stay as hash-less, nameless tombstones with new versions, so every instance's
    // key cache learns that they are gone.
    bump_account_keys(c, id).await?;
    e.keys = sqlx::query(
        "UPDATE api_keys SET account_id = $1, name = '', description = '', secret_hash = NULL, previous_hash = NULL,
             allowed_models = NULL, status = 'deleted', deleted_ms = $2
         WHERE account_id = $3",
    )
    .bind(&tombstone)
    .bind(now_ms())
    .bind(id)
    .execute(&mut *c)
    .await?
    .rows_affected();
    e.usage_records = by_account(c, "DELETE FROM usage_records WHERE account_id = $1").await?;
    // Day rollups stay, under the tombstone, with the billing records; finer ones go.
    by_account(
        c,
        "DELETE FROM usage_rollups WHERE account_id = $1 AND granularity != 'day'",
    )
    .await?;
    by_account(
        c,
        "DELETE FROM usage_endpoint_rollups WHERE account_id = $1 AND granularity != 'day'",
    )
    .await?;
    // Usage not yet posted stays billable, under the tombstone (after the rollups, in the
    // order the insert triggers lock these tables).
    for table in ["usage_rollups", "usage_endpoint_rollups", "usage_unposted"] {
        let sql = sqlx::AssertSqlSafe(format!(
            "UPDATE {table} SET account_id = $1 WHERE account_id = $2"
        ));
        sqlx::query(sql)
            .bind(&tombstone)
            .bind(id)
            .execute(&mut *c)
            .await?;
    }
    by_account(c, "DELETE FROM audit_log WHERE account_id = $1").await?;
    by_account(c, "DELETE FROM accounts WHERE id = $1").await?;
    Ok(e)
}

/// An erasure that found no account reads as "account not found".
pub(in crate::store) fn not_found_as_account(e: StoreError) -> StoreError {
    match e {
        StoreError::Db(sqlx::Error::RowNotFound) => StoreError::NotFound("account"),
        e => e,
    }
}

impl ThisStore {
    /// Deletes per-request records started before `before_ms` that are already posted to
    /// the ledger, minute rollups older than two days, security events older than 90 days
    /// and expired sessions. Returns the number of records removed.
    pub async fn purge(&self, before_ms: i64) -> Result<u64, StoreError> {
        let cursor: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT {POSTED_CURSOR} FROM billing_cursor WHERE id = 1"
        )))
        .fetch_one(&self.pool)
        .await?;
        let slice = format!(
            "DELETE FROM usage_records WHERE {USAGE_ORDER} IN
                (SELECT {USAGE_ORDER} FROM usage_records WHERE started_ms < $1 AND {USAGE_ORDER} <= $2 LIMIT 5000)"
        );
        let mut removed = 0;
        loop {
            // In slices, so a large purge never holds the write lock for long.
            let n = sqlx::query(sqlx::AssertSqlSafe(slice.as_str()))
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
        for (sql, before) in [
            (
                "DELETE FROM usage_rollups WHERE granularity = 'minute' AND bucket_ms < $1",
                now - crate::store::span::MINUTE_ROLLUPS_KEPT_MS,
            ),
            ("DELETE FROM sessions WHERE expires_ms < $1", now),
            (
                "DELETE FROM security_events WHERE bucket_ms < $1",
                now - 90 * 86_400_000,
            ),
        ] {
            sqlx::query(sql).bind(before).execute(&self.pool).await?;
        }
        Ok(removed)
    }
}
