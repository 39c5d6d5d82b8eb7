//! Access keys: the lifecycle (create, update, rotate, disable, delete) and what
//! authentication reads. Usage statistics come from the rollup tables, never the log.
//! Written once for both stores: each includes this file with its own types, its
//! `NEXT_KEY_VERSION`, `versioned` and `snapshot` — the places the dialects differ here.
//!
//! # Key versions
//! Every instance polls `keys_changed_since(v)` every 250 ms and then asks for versions
//! above the highest one it has seen, so a change must never become visible *after* a
//! change with a higher version. SQLite gets that for free (one writer at a time, version
//! `MAX + 1`). Here versions come from the sequence `api_keys_version_seq` (`nextval`:
//! unique and increasing across processes), but a sequence alone is not enough: a
//! transaction that drew 10 may commit after one that drew 11, and a poller that already
//! read 11 would skip 10 forever. So every transaction that assigns versions first takes
//! the transaction-level advisory lock `KEY_VERSION_LOCK` and keeps it until it commits:
//! version-assigning transactions run one after another, each drawing its numbers after
//! the previous one committed, and PostgreSQL makes a commit visible before it releases
//! the transaction's locks. Any snapshot that shows version N therefore shows every
//! version below N that will ever exist. Key changes are rare management actions, so
//! serialising them costs nothing measurable; readers take no lock. (The alternative,
//! re-reading a window of recent changes on every poll, would make every poll of every
//! instance heavier to make rare writes cheaper.)

use std::collections::HashMap;

use sqlx::Row;

use super::{BYTEWISE, DbRow, NEXT_KEY_VERSION as NEXT_VERSION, ThisStore, snapshot};
use crate::keys::KeyHash;
use crate::store::codec::{
    hash_of, models_json, models_of, positive, spend_limit_usd, spend_nanos, stats,
};
use crate::store::{
    KeyInfo, KeyLimits, KeyRow, KeySpec, KeyStats, KeyStatus, KeyUpdate, StoreError, UsageStats,
};
use crate::time::now_ms;

const HOUR_MS: i64 = 3_600_000;
fn key_of(row: &DbRow) -> Result<KeyInfo, sqlx::Error> {
    let status: String = row.try_get("status")?;
    let id: String = row.try_get("id")?;
    let previous_until: Option<i64> = row.try_get("previous_expires_ms")?;
    let has_previous: Option<Vec<u8>> = row.try_get("previous_hash")?;
    Ok(KeyInfo {
        prefix: format!("ig-{id}"),
        id,
        account_id: row.try_get("account_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        status: KeyStatus::parse(&status),
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
        expires_ms: row.try_get("expires_ms")?,
        allowed_models: models_of(row.try_get("allowed_models")?),
        allowed_regions: models_of(row.try_get("allowed_regions")?),
        limits: KeyLimits {
            rpm: row.try_get("rpm")?,
            tpm: row.try_get("tpm")?,
            max_concurrent: row.try_get("max_concurrent")?,
            spend_limit_usd: spend_limit_usd(row.try_get("spend_limit_nanos")?),
            spend_limit_period: row.try_get("spend_limit_period")?,
        },
        previous_secret_valid_until_ms: has_previous.and(previous_until).filter(|t| *t > now_ms()),
        usage: KeyStats::default(),
        requests: 0,
        cost_nanos: 0,
        last_used_ms: None,
    })
}

impl ThisStore {
    /// Inserts a key unless the account already holds `max_live` keys that are not deleted
    /// (`KeyLimit`). One statement: the count and the insert see the same keys (SQLite has
    /// one writer; on PostgreSQL `versioned` holds the key-version lock). `created_ms` is
    /// the clock's, or one past the account's newest key where that is not earlier, so two
    /// keys made within one millisecond still list in the order they were made.
    pub async fn insert_key(
        &self,
        account_id: &str,
        id: &str,
        hash: &KeyHash,
        spec: &KeySpec,
        max_live: usize,
    ) -> Result<(), StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "INSERT INTO api_keys (id, account_id, name, description, secret_hash, status, created_ms, updated_ms,
                 allowed_models, expires_ms, rpm, tpm, max_concurrent, spend_limit_nanos, spend_limit_period, allowed_regions, version)
             SELECT $1, $2, $3, $4, $5, 'active', latest.t, latest.t, $7, $8, $9, $10, $11, $12, $13, $14, {NEXT_VERSION}
             FROM (SELECT CASE WHEN MAX(created_ms) >= $6 THEN MAX(created_ms) + 1 ELSE $6 END AS t,
                          SUM(CASE WHEN status != 'deleted' THEN 1 ELSE 0 END) AS live
                   FROM api_keys WHERE account_id = $2) AS latest
             WHERE COALESCE(latest.live, 0) < $15"
        ));
        let query = sqlx::query(sql)
            .bind(id)
            .bind(account_id)
            .bind(&spec.name)
            .bind(&spec.description)
            .bind(hash.0.as_slice())
            .bind(now_ms())
            .bind(models_json(&spec.allowed_models))
            .bind(spec.expires_ms)
            .bind(spec.limits.rpm)
            .bind(spec.limits.tpm)
            .bind(spec.limits.max_concurrent)
            .bind(spend_nanos(&spec.limits)?)
            .bind(spec.limits.spend_limit_period.as_deref())
            .bind(models_json(&spec.allowed_regions))
            .bind(i64::try_from(max_live).unwrap_or(i64::MAX));
        if self.versioned(query).await? == 0 {
            return Err(StoreError::KeyLimit(max_live));
        }
        Ok(())
    }

    async fn with_stats(&self, mut keys: Vec<KeyInfo>) -> Result<Vec<KeyInfo>, StoreError> {
        if keys.is_empty() {
            return Ok(keys);
        }
        let account_id = keys[0].account_id.clone();
        let now = now_ms();
        let day = (now - 24 * HOUR_MS) / HOUR_MS * HOUR_MS;
        let month = (now - 30 * 24 * HOUR_MS) / HOUR_MS * HOUR_MS;
        // One snapshot for both reads: under READ COMMITTED a batch committing between
        // them would show in the totals but not in the windows.
        let mut tx = self.pool.begin().await?;
        snapshot(&mut tx).await?;
        let rows = sqlx::query(
            "SELECT h.key_id,
                    CAST(SUM(CASE WHEN h.hour_ms >= $1 THEN h.requests ELSE 0 END) AS BIGINT) AS r24,
                    CAST(SUM(CASE WHEN h.hour_ms >= $1 THEN h.input_tokens ELSE 0 END) AS BIGINT) AS i24,
                    CAST(SUM(CASE WHEN h.hour_ms >= $1 THEN h.output_tokens ELSE 0 END) AS BIGINT) AS o24,
                    CAST(SUM(CASE WHEN h.hour_ms >= $1 THEN h.cost_nanos ELSE 0 END) AS BIGINT) AS c24,
                    CAST(SUM(h.requests) AS BIGINT) AS r30, CAST(SUM(h.input_tokens) AS BIGINT) AS i30,
                    CAST(SUM(h.output_tokens) AS BIGINT) AS o30, CAST(SUM(h.cost_nanos) AS BIGINT) AS c30
             FROM key_usage_hourly h JOIN api_keys k ON k.id = h.key_id
             WHERE k.account_id = $2 AND h.hour_ms >= $3 GROUP BY h.key_id",
        )
        .bind(day)
        .bind(&account_id)
        .bind(month)
        .fetch_all(&mut *tx)
        .await?;
        let mut windows: HashMap<String, (UsageStats, UsageStats)> = HashMap::new();
        for row in &rows {
            let g = |c: &str| row.try_get::<i64, _>(c);
            windows.insert(
                row.try_get("key_id")?,
                (
                    stats(g("r24")?, g("i24")?, g("o24")?, g("c24")?),
                    stats(g("r30")?, g("i30")?, g("o30")?, g("c30")?),
                ),
            );
        }
        let rows = sqlx::query(
            "SELECT t.* FROM key_usage_totals t JOIN api_keys k ON k.id = t.key_id WHERE k.account_id = $1",
        )
        .bind(&account_id)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut totals: HashMap<String, (UsageStats, i64)> = HashMap::new();
        for row in &rows {
            let g = |c: &str| row.try_get::<i64, _>(c);
            totals.insert(
                row.try_get("key_id")?,
                (
                    stats(
                        g("requests")?,
                        g("input_tokens")?,
                        g("output_tokens")?,
                        g("cost_nanos")?,
                    ),
                    g("last_used_ms")?,
                ),
            );
        }
        for k in &mut keys {
            if let Some((d, m)) = windows.remove(&k.id) {
                k.usage.last_24h = d;
                k.usage.last_30d = m;
            } else {
                k.usage.last_24h = stats(0, 0, 0, 0);
                k.usage.last_30d = stats(0, 0, 0, 0);
            }
            match totals.remove(&k.id) {
                Some((all, last)) => {
                    k.requests = all.requests;
                    k.cost_nanos = all.cost_nanos;
                    k.usage.all_time = all;
                    k.usage.last_used_ms = Some(last);
                    k.last_used_ms = Some(last);
                }
                None => k.usage.all_time = stats(0, 0, 0, 0),
            }
        }
        Ok(keys)
    }

    pub async fn key(&self, account_id: &str, id: &str) -> Result<KeyInfo, StoreError> {
        let row = sqlx::query(
            "SELECT * FROM api_keys WHERE account_id = $1 AND id = $2 AND status != 'deleted'",
        )
        .bind(account_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("key"))?;
        let key = key_of(&row)?;
        Ok(self.with_stats(vec![key]).await?.remove(0))
    }

    pub async fn key_account(&self, id: &str) -> Result<String, StoreError> {
        sqlx::query_scalar("SELECT account_id FROM api_keys WHERE id = $1 AND status != 'deleted'")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("key"))
    }

    /// The tombstone of an erased account, found through one of its keys (erasure moves
    /// keys to the tombstone and deletes the account row); `None` while it exists.
    pub async fn tombstone_of(
        &self,
        account_id: &str,
        key_id: &str,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT k.account_id FROM api_keys k WHERE k.id = $1 AND k.account_id <> $2 AND NOT EXISTS (SELECT 1 FROM accounts a WHERE a.id = $2) AND EXISTS (SELECT 1 FROM accounts t WHERE t.id = k.account_id AND t.status = 'deleted')",
        )
            .bind(key_id)
            .bind(account_id)
            .fetch_optional(&self.pool)
            .await?)
    }

    /// Keys of an account in creation order (then id, bytewise): those after `after` (a
    /// page's last key), at most `limit` of them (`None`: all).
    pub async fn list_keys(
        &self,
        account_id: &str,
        include_deleted: bool,
        after: Option<(i64, &str)>,
        limit: Option<i64>,
    ) -> Result<Vec<KeyInfo>, StoreError> {
        let (after_ms, after_id) = after.unwrap_or((i64::MIN, ""));
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT * FROM api_keys WHERE account_id = $1 AND ($2 OR status != 'deleted')
               AND (created_ms, id{BYTEWISE}) > ($3, $4{BYTEWISE})
             ORDER BY created_ms, id{BYTEWISE} LIMIT $5"
        ));
        let rows = sqlx::query(sql)
            .bind(account_id)
            .bind(include_deleted)
            .bind(after_ms)
            .bind(after_id)
            .bind(limit.unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await?;
        let keys = rows.iter().map(key_of).collect::<Result<Vec<_>, _>>()?;
        self.with_stats(keys).await
    }

    pub async fn update_key(
        &self,
        account_id: &str,
        id: &str,
        u: &KeyUpdate,
    ) -> Result<(), StoreError> {
        let current = self.key(account_id, id).await?;
        let name = u.name.clone().unwrap_or(current.name);
        let description = u.description.clone().unwrap_or(current.description);
        let models = u.allowed_models.clone().unwrap_or(current.allowed_models);
        let regions = u.allowed_regions.clone().unwrap_or(current.allowed_regions);
        let expires = u.expires_ms.unwrap_or(current.expires_ms);
        let limits = u.limits.clone().unwrap_or(current.limits);
        let status = match u.enabled {
            Some(true) => KeyStatus::Active,
            Some(false) => KeyStatus::Disabled,
            None => current.status,
        };
        let sql = sqlx::AssertSqlSafe(format!(
            "UPDATE api_keys SET name = $1, description = $2, allowed_models = $3, expires_ms = $4, rpm = $5, tpm = $6,
                 max_concurrent = $7, spend_limit_nanos = $8, spend_limit_period = $9, status = $10, updated_ms = $11, allowed_regions = $12,
                 version = {NEXT_VERSION}
             WHERE account_id = $13 AND id = $14 AND status != 'deleted'"
        ));
        let query = sqlx::query(sql)
            .bind(name)
            .bind(description)
            .bind(models_json(&models))
            .bind(expires)
            .bind(limits.rpm)
            .bind(limits.tpm)
            .bind(limits.max_concurrent)
            .bind(spend_nanos(&limits)?)
            .bind(limits.spend_limit_period.as_deref())
            .bind(status.as_str())
            .bind(now_ms())
            .bind(models_json(&regions))
            .bind(account_id)
            .bind(id);
        self.versioned(query).await?;
        Ok(())
    }

    pub async fn rotate_key(
        &self,
        account_id: &str,
        id: &str,
        hash: &KeyHash,
        grace_until_ms: Option<i64>,
    ) -> Result<(), StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "UPDATE api_keys SET
                 previous_hash = CASE WHEN $1 IS NULL THEN NULL ELSE secret_hash END,
                 previous_expires_ms = $2,
                 secret_hash = $3, updated_ms = $4, version = {NEXT_VERSION}
             WHERE account_id = $5 AND id = $6 AND status != 'deleted'"
        ));
        let query = sqlx::query(sql)
            .bind(grace_until_ms)
            .bind(grace_until_ms)
            .bind(hash.0.as_slice())
            .bind(now_ms())
            .bind(account_id)
            .bind(id);
        if self.versioned(query).await? == 0 {
            return Err(StoreError::NotFound("key"));
        }
        Ok(())
    }

    pub async fn set_key_status(
        &self,
        account_id: &str,
        id: &str,
        status: KeyStatus,
    ) -> Result<(), StoreError> {
        let erase = if status == KeyStatus::Deleted {
            ", secret_hash = NULL, previous_hash = NULL, deleted_ms = $3"
        } else {
            ""
        };
        let sql = sqlx::AssertSqlSafe(format!(
            "UPDATE api_keys SET status = $1, updated_ms = $3, version = {NEXT_VERSION}{erase}
             WHERE account_id = $4 AND id = $2 AND status != 'deleted'"
        ));
        let query = sqlx::query(sql)
            .bind(status.as_str())
            .bind(id)
            .bind(now_ms())
            .bind(account_id);
        if self.versioned(query).await? == 0 {
            return Err(StoreError::NotFound("key"));
        }
        Ok(())
    }

    pub async fn keys_changed_since(
        &self,
        version: i64,
        limit: i64,
    ) -> Result<Vec<KeyRow>, StoreError> {
        // The limit is written into the statement, not bound: SQLite plans a bound `LIMIT`
        // by its value, so each poll would prepare the statement again (~250 k
        // instructions). The caller's page size is a constant, so the text is one.
        let sql = sqlx::AssertSqlSafe(format!(
            "SELECT k.id, k.account_id, k.secret_hash, k.status, k.version, k.expires_ms, k.allowed_models,
                    k.previous_hash, k.previous_expires_ms, k.spend_limit_nanos, k.allowed_regions, k.rpm, k.tpm, k.max_concurrent,
                    a.status AS account_status, a.allowed_regions AS account_regions, a.rpm AS account_rpm, a.tpm AS account_tpm
             FROM api_keys k LEFT JOIN accounts a ON a.id = k.account_id
             WHERE k.version > $1 ORDER BY k.version LIMIT {limit}"
        ));
        let rows = sqlx::query(sql).bind(version).fetch_all(&self.pool).await?;
        rows.iter()
            .map(|row| {
                let status: String = row.try_get("status")?;
                let account_status: Option<String> = row.try_get("account_status")?;
                Ok(KeyRow {
                    id: row.try_get("id")?,
                    account_id: row.try_get("account_id")?,
                    hash: hash_of(row.try_get("secret_hash")?),
                    status: KeyStatus::parse(&status),
                    version: row.try_get("version")?,
                    account_active: account_status.as_deref() == Some("active"),
                    expires_ms: row.try_get("expires_ms")?,
                    allowed_models: models_of(row.try_get("allowed_models")?),
                    previous_hash: hash_of(row.try_get("previous_hash")?),
                    previous_expires_ms: row.try_get("previous_expires_ms")?,
                    spend_limit_nanos: row.try_get("spend_limit_nanos")?,
                    allowed_regions: models_of(row.try_get("allowed_regions")?),
                    account_regions: models_of(row.try_get("account_regions")?),
                    quotas: crate::limits::KeyQuotas {
                        key_rpm: positive(row.try_get("rpm")?),
                        key_tpm: positive(row.try_get("tpm")?),
                        max_concurrent: positive(row.try_get("max_concurrent")?)
                            .map(|n| u32::try_from(n).unwrap_or(u32::MAX)),
                        account_rpm: positive(row.try_get("account_rpm")?),
                        account_tpm: positive(row.try_get("account_tpm")?),
                    },
                })
            })
            .collect()
    }
}
