//! Persistence: the store's domain rows and the backends behind one enum.
//!
//! Only typed metadata crosses this boundary: ids, names the account holder chose for
//! keys and accounts, counts, prices, timestamps. The schema has no column that could
//! hold a prompt or an output. SQL lives here and nowhere else.

mod sqlite;

use crate::usage::UsageRecord;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    Conflict(&'static str),
    #[error("cannot prepare the store: {0}")]
    Setup(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    Active,
    Disabled,
    Deleted,
}

impl KeyStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "active",
            KeyStatus::Disabled => "disabled",
            KeyStatus::Deleted => "deleted",
        }
    }

    fn parse(s: &str) -> KeyStatus {
        match s {
            "active" => KeyStatus::Active,
            "disabled" => KeyStatus::Disabled,
            _ => KeyStatus::Deleted,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Account {
    pub id: String,
    pub name: String,
    pub created_ms: i64,
}

/// What authentication needs of a key; `hash` is `None` once deleted.
#[derive(Debug, Clone)]
pub struct KeyRow {
    pub id: String,
    pub account_id: String,
    pub hash: Option<crate::keys::KeyHash>,
    pub status: KeyStatus,
    pub version: i64,
}

/// A key as its owner sees it in a listing: metadata and usage statistics, never the hash.
#[derive(Debug, Clone, serde::Serialize)]
pub struct KeyInfo {
    pub id: String,
    pub account_id: String,
    pub name: String,
    pub description: String,
    pub status: &'static str,
    pub created_ms: i64,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_nanos: i64,
    pub last_used_ms: Option<i64>,
}

/// Aggregated usage for one model over a time range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageTotals {
    pub model: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_nanos: i64,
}

/// The store, dispatched by backend. PostgreSQL joins as a second variant.
#[derive(Clone)]
pub enum Store {
    Sqlite(SqliteStore),
}

impl Store {
    /// Opens (creating and migrating) the store named by `url`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Ok(Store::Sqlite(SqliteStore::open(url).await?))
    }

    pub async fn create_account(&self, name: &str) -> Result<Account, StoreError> {
        match self {
            Store::Sqlite(s) => s.create_account(name).await,
        }
    }

    pub async fn account_by_name(&self, name: &str) -> Result<Account, StoreError> {
        match self {
            Store::Sqlite(s) => s.account_by_name(name).await,
        }
    }

    pub async fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        match self {
            Store::Sqlite(s) => s.list_accounts().await,
        }
    }

    pub async fn insert_key(
        &self,
        account_id: &str,
        id: &str,
        name: &str,
        description: &str,
        hash: &crate::keys::KeyHash,
    ) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.insert_key(account_id, id, name, description, hash).await,
        }
    }

    pub async fn list_keys(&self, account_id: &str) -> Result<Vec<KeyInfo>, StoreError> {
        match self {
            Store::Sqlite(s) => s.list_keys(account_id).await,
        }
    }

    /// Sets a key's status; `Deleted` also erases its hash so it can never authenticate again.
    pub async fn set_key_status(&self, id: &str, status: KeyStatus) -> Result<(), StoreError> {
        match self {
            Store::Sqlite(s) => s.set_key_status(id, status).await,
        }
    }

    pub async fn keys_changed_since(&self, version: i64) -> Result<Vec<KeyRow>, StoreError> {
        match self {
            Store::Sqlite(s) => s.keys_changed_since(version).await,
        }
    }

    /// Inserts usage records; a record whose request id is already stored is skipped,
    /// which makes journal replay idempotent.
    pub async fn insert_usage(&self, records: &[UsageRecord]) -> Result<u64, StoreError> {
        match self {
            Store::Sqlite(s) => s.insert_usage(records).await,
        }
    }

    /// Per-request records of an account in `[from_ms, to_ms)`, oldest first.
    pub async fn usage_records(
        &self,
        account_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<UsageRecord>, StoreError> {
        match self {
            Store::Sqlite(s) => s.usage_records(account_id, from_ms, to_ms).await,
        }
    }

    pub async fn usage_by_model(
        &self,
        account_id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<UsageTotals>, StoreError> {
        match self {
            Store::Sqlite(s) => s.usage_by_model(account_id, from_ms, to_ms).await,
        }
    }

    /// Whether the store answers a trivial query (readiness).
    pub async fn ping(&self) -> bool {
        match self {
            Store::Sqlite(s) => s.ping().await,
        }
    }

    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
        }
    }
}
