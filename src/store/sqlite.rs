//! The embedded SQLite backend (WAL mode), created and migrated on open.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::{Account, KeyInfo, KeyRow, KeyStatus, StoreError, UsageTotals};
use crate::keys::{KeyHash, random_id};
use crate::time::now_ms;
use crate::usage::UsageRecord;

/// Schema versions, applied in order exactly once. Never edit a shipped entry; append.
const MIGRATIONS: &[&str] = &[
    // 1: accounts, keys, usage records (metadata only: no column can hold content).
    r#"
    CREATE TABLE accounts (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        created_ms  INTEGER NOT NULL
    );
    CREATE TABLE api_keys (
        id           TEXT PRIMARY KEY,
        account_id   TEXT NOT NULL REFERENCES accounts(id),
        name         TEXT NOT NULL,
        description  TEXT NOT NULL DEFAULT '',
        secret_hash  BLOB,
        status       TEXT NOT NULL CHECK (status IN ('active','disabled','deleted')),
        created_ms   INTEGER NOT NULL,
        version      INTEGER NOT NULL
    );
    CREATE INDEX api_keys_version ON api_keys(version);
    CREATE INDEX api_keys_account ON api_keys(account_id);
    CREATE TABLE usage_records (
        request_id          TEXT PRIMARY KEY,
        account_id          TEXT NOT NULL,
        key_id              TEXT NOT NULL,
        endpoint            TEXT NOT NULL,
        model               TEXT,
        provider            TEXT,
        started_ms          INTEGER NOT NULL,
        finished_ms         INTEGER NOT NULL,
        status              INTEGER NOT NULL,
        error_kind          TEXT,
        stream              INTEGER NOT NULL,
        input_tokens        INTEGER NOT NULL,
        cached_input_tokens INTEGER NOT NULL,
        output_tokens       INTEGER NOT NULL,
        estimated           INTEGER NOT NULL,
        cost_nanos          INTEGER NOT NULL,
        latency_us          INTEGER NOT NULL,
        ttft_us             INTEGER
    );
    CREATE INDEX usage_account_time ON usage_records(account_id, started_ms);
    CREATE INDEX usage_key_time ON usage_records(key_id, started_ms);
    "#,
];

/// Rows per multi-row INSERT (18 parameters each, well under SQLite's variable limit).
const USAGE_ROWS_PER_INSERT: usize = 64;

/// `INSERT OR IGNORE` of `rows` usage records; the SQL for each row count is built once
/// and reused, so SQLite's statement cache sees at most `USAGE_ROWS_PER_INSERT` shapes.
fn insert_usage_sql(rows: usize) -> sqlx::AssertSqlSafe<Arc<str>> {
    static CACHE: OnceLock<Vec<Arc<str>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| {
        (0..=USAGE_ROWS_PER_INSERT)
            .map(|n| {
                let row = format!("({})", vec!["?"; 18].join(", "));
                let values = vec![row; n].join(", ");
                Arc::from(format!(
                    "INSERT OR IGNORE INTO usage_records (request_id, account_id, key_id, endpoint, model, provider,
                        started_ms, finished_ms, status, error_kind, stream, input_tokens, cached_input_tokens,
                        output_tokens, estimated, cost_nanos, latency_us, ttft_us) VALUES {values}"
                ))
            })
            .collect()
    });
    sqlx::AssertSqlSafe(cache[rows.min(USAGE_ROWS_PER_INSERT)].clone())
}

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

fn path_of(url: &str) -> Result<PathBuf, StoreError> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
        .ok_or_else(|| StoreError::Setup(format!("not a sqlite URL: {url}")))?;
    let rest = rest.split('?').next().unwrap_or(rest);
    if rest.is_empty() {
        return Err(StoreError::Setup("sqlite URL names no file".to_owned()));
    }
    Ok(PathBuf::from(rest))
}

fn hash_of(blob: Option<Vec<u8>>) -> Option<KeyHash> {
    blob.and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .map(KeyHash)
}

impl SqliteStore {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let path = path_of(url)?;
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent).map_err(|e| {
                StoreError::Setup(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)")
            .execute(&mut *conn)
            .await?;
        // BEGIN IMMEDIATE serialises concurrent starters (a server and a CLI at once).
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let result = async {
            let current: i64 =
                sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                    .fetch_one(&mut *conn)
                    .await?;
            for (i, sql) in MIGRATIONS.iter().enumerate() {
                let version = i as i64 + 1;
                if version <= current {
                    continue;
                }
                sqlx::raw_sql(*sql).execute(&mut *conn).await?;
                sqlx::query("INSERT INTO schema_migrations (version, applied_ms) VALUES (?, ?)")
                    .bind(version)
                    .bind(now_ms())
                    .execute(&mut *conn)
                    .await?;
            }
            Ok::<_, sqlx::Error>(())
        }
        .await;
        match result {
            Ok(()) => {
                sqlx::query("COMMIT").execute(&mut *conn).await?;
                Ok(())
            }
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(e.into())
            }
        }
    }

    pub async fn create_account(&self, name: &str) -> Result<Account, StoreError> {
        let account = Account {
            id: format!(
                "acct_{}",
                random_id(16).map_err(|e| StoreError::Setup(e.to_string()))?
            ),
            name: name.to_owned(),
            created_ms: now_ms(),
        };
        let result = sqlx::query("INSERT INTO accounts (id, name, created_ms) VALUES (?, ?, ?)")
            .bind(&account.id)
            .bind(&account.name)
            .bind(account.created_ms)
            .execute(&self.pool)
            .await;
        match result {
            Ok(_) => Ok(account),
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                Err(StoreError::Conflict("account"))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn account_by_name(&self, name: &str) -> Result<Account, StoreError> {
        let row = sqlx::query("SELECT id, name, created_ms FROM accounts WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("account"))?;
        Ok(Account {
            id: row.try_get("id")?,
            name: row.try_get("name")?,
            created_ms: row.try_get("created_ms")?,
        })
    }

    pub async fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        let rows =
            sqlx::query("SELECT id, name, created_ms FROM accounts ORDER BY created_ms, name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| {
                Ok(Account {
                    id: row.try_get("id")?,
                    name: row.try_get("name")?,
                    created_ms: row.try_get("created_ms")?,
                })
            })
            .collect()
    }

    pub async fn insert_key(
        &self,
        account_id: &str,
        id: &str,
        name: &str,
        description: &str,
        hash: &KeyHash,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, account_id, name, description, secret_hash, status, created_ms, version)
             VALUES (?, ?, ?, ?, ?, 'active', ?, (SELECT COALESCE(MAX(version), 0) + 1 FROM api_keys))",
        )
        .bind(id)
        .bind(account_id)
        .bind(name)
        .bind(description)
        .bind(hash.0.as_slice())
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn list_keys(&self, account_id: &str) -> Result<Vec<KeyInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT k.id, k.account_id, k.name, k.description, k.status, k.created_ms,
                    COUNT(u.request_id) AS requests,
                    COALESCE(SUM(u.input_tokens), 0) AS input_tokens,
                    COALESCE(SUM(u.output_tokens), 0) AS output_tokens,
                    COALESCE(SUM(u.cost_nanos), 0) AS cost_nanos,
                    MAX(u.started_ms) AS last_used_ms
             FROM api_keys k LEFT JOIN usage_records u ON u.key_id = k.id
             WHERE k.account_id = ? AND k.status != 'deleted'
             GROUP BY k.id ORDER BY k.created_ms, k.id",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let status: String = row.try_get("status")?;
                Ok(KeyInfo {
                    id: row.try_get("id")?,
                    account_id: row.try_get("account_id")?,
                    name: row.try_get("name")?,
                    description: row.try_get("description")?,
                    status: KeyStatus::parse(&status).as_str(),
                    created_ms: row.try_get("created_ms")?,
                    requests: row.try_get("requests")?,
                    input_tokens: row.try_get("input_tokens")?,
                    output_tokens: row.try_get("output_tokens")?,
                    cost_nanos: row.try_get("cost_nanos")?,
                    last_used_ms: row.try_get("last_used_ms")?,
                })
            })
            .collect()
    }

    pub async fn set_key_status(&self, id: &str, status: KeyStatus) -> Result<(), StoreError> {
        let sql = if status == KeyStatus::Deleted {
            "UPDATE api_keys SET status = ?, secret_hash = NULL,
                 version = (SELECT MAX(version) + 1 FROM api_keys)
             WHERE id = ? AND status != 'deleted'"
        } else {
            "UPDATE api_keys SET status = ?, version = (SELECT MAX(version) + 1 FROM api_keys)
             WHERE id = ? AND status != 'deleted'"
        };
        let done = sqlx::query(sql)
            .bind(status.as_str())
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("key"));
        }
        Ok(())
    }

    pub async fn keys_changed_since(&self, version: i64) -> Result<Vec<KeyRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, account_id, secret_hash, status, version FROM api_keys WHERE version > ? ORDER BY version",
        )
        .bind(version)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let status: String = row.try_get("status")?;
                Ok(KeyRow {
                    id: row.try_get("id")?,
                    account_id: row.try_get("account_id")?,
                    hash: hash_of(row.try_get("secret_hash")?),
                    status: KeyStatus::parse(&status),
                    version: row.try_get("version")?,
                })
            })
            .collect()
    }

    pub async fn insert_usage(&self, records: &[UsageRecord]) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for chunk in records.chunks(USAGE_ROWS_PER_INSERT) {
            let mut query = sqlx::query(insert_usage_sql(chunk.len()));
            for r in chunk {
                query = query
                    .bind(&r.request_id)
                    .bind(&r.account_id)
                    .bind(&r.key_id)
                    .bind(&r.endpoint)
                    .bind(r.model.as_deref())
                    .bind(r.provider.as_deref())
                    .bind(r.started_ms)
                    .bind(r.finished_ms)
                    .bind(i64::from(r.status))
                    .bind(r.error_kind.as_deref())
                    .bind(r.stream)
                    .bind(to_i64(r.input_tokens))
                    .bind(to_i64(r.cached_input_tokens))
                    .bind(to_i64(r.output_tokens))
                    .bind(r.estimated)
                    .bind(r.cost_nanos)
                    .bind(to_i64(r.latency_us))
                    .bind(r.ttft_us.map(to_i64));
            }
            inserted += query.execute(&mut *tx).await?.rows_affected();
        }
        tx.commit().await?;
        Ok(inserted)
    }

    pub async fn usage_records(
        &self,
        account_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT * FROM usage_records WHERE account_id = ? AND started_ms >= ? AND started_ms < ?
             ORDER BY started_ms, request_id",
        )
        .bind(account_id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let status: i64 = row.try_get("status")?;
                Ok(UsageRecord {
                    request_id: row.try_get("request_id")?,
                    account_id: row.try_get("account_id")?,
                    key_id: row.try_get("key_id")?,
                    endpoint: row.try_get("endpoint")?,
                    model: row.try_get("model")?,
                    provider: row.try_get("provider")?,
                    started_ms: row.try_get("started_ms")?,
                    finished_ms: row.try_get("finished_ms")?,
                    status: u16::try_from(status).unwrap_or(0),
                    error_kind: row.try_get("error_kind")?,
                    stream: row.try_get("stream")?,
                    input_tokens: to_u64(row.try_get("input_tokens")?),
                    cached_input_tokens: to_u64(row.try_get("cached_input_tokens")?),
                    output_tokens: to_u64(row.try_get("output_tokens")?),
                    estimated: row.try_get("estimated")?,
                    cost_nanos: row.try_get("cost_nanos")?,
                    latency_us: to_u64(row.try_get("latency_us")?),
                    ttft_us: row.try_get::<Option<i64>, _>("ttft_us")?.map(to_u64),
                })
            })
            .collect()
    }

    pub async fn usage_by_model(
        &self,
        account_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<UsageTotals>, StoreError> {
        let rows = sqlx::query(
            "SELECT COALESCE(model, '') AS model, COUNT(*) AS requests,
                    COALESCE(SUM(input_tokens), 0) AS input_tokens,
                    COALESCE(SUM(output_tokens), 0) AS output_tokens,
                    COALESCE(SUM(cost_nanos), 0) AS cost_nanos
             FROM usage_records WHERE account_id = ? AND started_ms >= ? AND started_ms < ?
             GROUP BY COALESCE(model, '') ORDER BY model",
        )
        .bind(account_id)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(UsageTotals {
                    model: row.try_get("model")?,
                    requests: row.try_get("requests")?,
                    input_tokens: row.try_get("input_tokens")?,
                    output_tokens: row.try_get("output_tokens")?,
                    cost_nanos: row.try_get("cost_nanos")?,
                })
            })
            .collect()
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
