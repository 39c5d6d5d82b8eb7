//! The embedded SQLite backend (WAL mode), created and migrated on open.

use std::path::PathBuf;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::StoreError;

mod billing;
mod migrations;
// The queries written once for both stores, compiled against this backend's types.
#[allow(clippy::duplicate_mod)]
#[path = "shared/mod.rs"]
mod shared;
mod usage;

/// This backend's types, for the modules written once for both (`store/shared/`).
type DbConn = sqlx::SqliteConnection;
/// Whether `schema_migrations` has its checksum column yet (1 or 0).
const CHECKSUM_COLUMN_EXISTS: &str =
    "SELECT COUNT(*) FROM pragma_table_info('schema_migrations') WHERE name = 'checksum'";
type DbRow = sqlx::sqlite::SqliteRow;
type DbQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;
type ThisStore = SqliteStore;

/// The store's clock in Unix milliseconds (what `changed_ms` columns are stamped with).
const CLOCK_MS: &str = "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)";

/// A fresh key version: one writer at a time, so the next number is always the highest.
const NEXT_KEY_VERSION: &str = "(SELECT COALESCE(MAX(version), 0) + 1 FROM api_keys)";

/// One writer at a time: reads inside a write need no row lock.
const FOR_UPDATE: &str = "";
/// The insertion order of usage records, and the posting cursor over it.
const USAGE_ORDER: &str = "rowid";
const POSTED_CURSOR: &str = "posted_rowid";

/// SQLite compares text byte by byte already.
const BYTEWISE: &str = "";

/// A read transaction is one WAL snapshot from its first read on.
async fn snapshot(_tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>) -> Result<(), sqlx::Error> {
    Ok(())
}

impl SqliteStore {
    /// Runs one statement that assigns key versions (one writer at a time: no lock needed);
    /// returns the number of rows it changed.
    async fn versioned(
        &self,
        query: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    ) -> Result<u64, StoreError> {
        Ok(query.execute(&self.pool).await?.rows_affected())
    }
}

/// SQLite has one writer at a time: the last-owner rule holds within its one statement.
async fn lock_account(
    _tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    _account_id: &str,
) -> Result<(), sqlx::Error> {
    Ok(())
}

/// SQLite has one writer at a time: key versions need no lock of their own.
async fn lock_key_versions(
    _tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
) -> Result<(), sqlx::Error> {
    Ok(())
}

/// Gives every key of an account a new version above every other, so every instance's key
/// cache re-reads them (after a status, region or limit change of the account).
async fn bump_account_keys(
    conn: &mut sqlx::SqliteConnection,
    account_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE api_keys SET version = (SELECT MAX(version) FROM api_keys) + rowid WHERE account_id = $1",
    )
    .bind(account_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

use migrations::MIGRATIONS;

impl SqliteStore {
    /// Erases account `id` (see `rights.rs`). Run `post_usage` first so the ledger holds
    /// every charge.
    pub async fn erase_account(&self, id: &str) -> Result<super::Erased, StoreError> {
        let erased = self
            .immediate(async |c| shared::rights::erase_rows(c, id).await)
            .await
            .map_err(shared::rights::not_found_as_account)?;
        // Overwrite what the WAL still holds of the erased rows (secure_delete zeroes
        // freed pages).
        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&self.pool)
            .await?;
        Ok(erased)
    }
}

#[derive(Clone)]
pub struct SqliteStore {
    pub(super) pool: SqlitePool,
    /// The usage writer's own connection, so its page cache stays warm from one batch to
    /// the next: in WAL mode a commit from one connection drops every other connection's
    /// cached pages, and a batch on whichever pooled connection came free read the pages
    /// of the indexes it writes again (and allocated them again).
    pub(super) usage_pool: SqlitePool,
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

impl SqliteStore {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let path = path_of(url)?;
        // A missing folder is created private; an existing one is the operator's to set.
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
            && !parent.exists()
        {
            crate::files::private_dir(parent).map_err(|e| {
                StoreError::Setup(format!("cannot create {}: {e}", parent.display()))
            })?;
        }
        // Created 0600 before SQLite opens it: its WAL and journal take the same mode.
        crate::files::private_file(&path)
            .map_err(|e| StoreError::Setup(format!("cannot create {}: {e}", path.display())))?;
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Erased rows are overwritten on disk, not merely unlinked.
            .pragma("secure_delete", "ON")
            // The usage writer's scratch table of a batch's groups never touches a file.
            .pragma("temp_store", "MEMORY");
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
            .await?;
        // Opened once the schema is migrated.
        let usage_pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_lazy_with(options);
        let store = Self { pool, usage_pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL, checksum TEXT)")
            .execute(&mut *conn)
            .await?;
        // BEGIN IMMEDIATE serialises concurrent starters (a server and a CLI at once).
        sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
        let result = async {
            shared::migrations_applied::verify(&mut conn, MIGRATIONS).await?;
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
                shared::migrations_applied::record(&mut conn, version, sql).await?;
            }
            Ok::<_, StoreError>(())
        }
        .await;
        match result {
            Ok(()) => {
                sqlx::query("COMMIT").execute(&mut *conn).await?;
                Ok(())
            }
            Err(e) => {
                let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
                Err(e)
            }
        }
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.usage_pool.close().await;
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite is built as `.cargo/config.toml` says, without its memory-usage counters:
    /// with them, each of its allocations takes a global mutex (the usage writer's hot
    /// path).
    #[tokio::test]
    async fn sqlite_is_built_without_memory_status_counters() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let store = SqliteStore::open(&url).await.unwrap();
        let options: Vec<String> = sqlx::query_scalar("PRAGMA compile_options")
            .fetch_all(&store.pool)
            .await
            .unwrap();
        assert!(
            options.iter().any(|o| o == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
    }

    /// A migration edited after a database applied it is refused at start, naming it; a
    /// database from before checksums gets them recorded and starts.
    #[tokio::test]
    async fn an_edited_shipped_migration_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
        let store = SqliteStore::open(&url).await.unwrap();
        sqlx::query("UPDATE schema_migrations SET checksum = NULL")
            .execute(&store.pool)
            .await
            .unwrap();
        store.close().await;
        let store = SqliteStore::open(&url).await.unwrap();
        let missing: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM schema_migrations WHERE checksum IS NULL")
                .fetch_one(&store.pool)
                .await
                .unwrap();
        assert_eq!(missing, 0, "recorded on first start");
        sqlx::query("UPDATE schema_migrations SET checksum = 'edited' WHERE version = 3")
            .execute(&store.pool)
            .await
            .unwrap();
        store.close().await;
        let err = SqliteStore::open(&url).await.err().unwrap();
        assert!(err.to_string().contains("migration 3"), "{err}");
    }
}
