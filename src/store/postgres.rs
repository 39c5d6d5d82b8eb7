//! The PostgreSQL backend: one database shared by every gateway instance, migrated on open.
//!
//! Method for method the same as the SQLite backend (`store/sqlite/`), with SQL written
//! for PostgreSQL. What SQLite gets from its single writer (`BEGIN IMMEDIATE`), this backend
//! gets from transaction-level advisory locks, one per kind of ordered write (see the
//! `*_LOCK` constants); they are released at commit, after the commit is visible.
//!
//! Text ordering: where results are sorted by a text column, the SQL says `COLLATE "C"`
//! (byte order), which is what SQLite uses, so both backends list things identically
//! whatever the database's default collation.
//!
//! Erasure: PostgreSQL has no `secure_delete`. Erased rows are removed by DELETE/UPDATE
//! and become dead tuples that (auto)VACUUM reclaims; the database's files and WAL are
//! the operator's to protect (disk encryption, WAL retention), not ours to overwrite.

use std::str::FromStr;
use std::time::Duration;

use sqlx::PgConnection;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::StoreError;

mod billing;
mod migrations;
// The queries written once for both stores, compiled against this backend's types.
#[allow(clippy::duplicate_mod)]
#[path = "shared/mod.rs"]
mod shared;
mod usage;

/// This backend's types, for the modules written once for both (`store/shared/`).
type DbConn = PgConnection;
/// Whether `schema_migrations` has its checksum column yet (1 or 0).
const CHECKSUM_COLUMN_EXISTS: &str = "SELECT COUNT(*) FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = 'schema_migrations' AND column_name = 'checksum'";
type DbRow = sqlx::postgres::PgRow;
type DbQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;
type ThisStore = PgStore;

/// The database server's clock in Unix milliseconds (what `changed_ms` columns are
/// stamped with, so every instance compares against one clock).
const CLOCK_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::BIGINT";

/// A fresh key version; only ever evaluated under `KEY_VERSION_LOCK` (see `keys.rs`).
const NEXT_KEY_VERSION: &str = "nextval('api_keys_version_seq')";

/// Rows read inside a write are locked until it commits.
const FOR_UPDATE: &str = " FOR UPDATE";
/// The insertion order of usage records, and the posting cursor over it.
const USAGE_ORDER: &str = "seq";
const POSTED_CURSOR: &str = "posted_seq";

/// Text compared byte by byte, as SQLite compares it.
const BYTEWISE: &str = " COLLATE \"C\"";

/// One snapshot for several reads: under READ COMMITTED a batch committing between them
/// would show in one read but not the next.
async fn snapshot(tx: &mut sqlx::Transaction<'_, sqlx::Postgres>) -> Result<(), sqlx::Error> {
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl PgStore {
    /// Runs one statement that assigns key versions, under `KEY_VERSION_LOCK` in its own
    /// transaction (see `keys.rs`); returns the number of rows it changed.
    async fn versioned(
        &self,
        query: sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        xact_lock(&mut tx, KEY_VERSION_LOCK).await?;
        let changed = query.execute(&mut *tx).await?.rows_affected();
        tx.commit().await?;
        Ok(changed)
    }
}

/// Serialises membership changes of one account (READ COMMITTED would let two owners
/// demoting each other at once both see the other still an owner): the account row is
/// locked for the rest of the transaction.
async fn lock_account(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    account_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE")
        .bind(account_id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Orders key-version changes across instances (see `keys.rs`).
async fn lock_key_versions(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
) -> Result<(), sqlx::Error> {
    xact_lock(tx, KEY_VERSION_LOCK).await
}

/// Gives every key of an account a new version, so every instance's key cache re-reads
/// them. The caller holds `KEY_VERSION_LOCK` (see `keys.rs`).
async fn bump_account_keys(conn: &mut PgConnection, account_id: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE api_keys SET version = nextval('api_keys_version_seq') WHERE account_id = $1",
    )
    .bind(account_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

use migrations::MIGRATIONS;

/// Serialises concurrent starters (servers and CLIs) while they migrate.
const MIGRATION_LOCK: i64 = 0x696e_7374_6167_0001;
/// Held by every transaction that assigns key versions, so versions commit in order
/// (see `keys.rs` for why the key cache needs that).
const KEY_VERSION_LOCK: i64 = 0x696e_7374_6167_0002;
/// Keeps the ledger's hash chain linear: one appender at a time.
const LEDGER_LOCK: i64 = 0x696e_7374_6167_0003;
/// Usage inserts take it shared, posting takes it exclusive: when posting reads the
/// highest usage sequence number, no insert that drew a lower one is still uncommitted.
const USAGE_POSTING_LOCK: i64 = 0x696e_7374_6167_0004;

#[derive(Clone)]
pub struct PgStore {
    pub(super) pool: PgPool,
}

/// Takes a transaction-level advisory lock (released when the transaction ends).
async fn xact_lock(conn: &mut PgConnection, lock: i64) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(lock)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Takes a transaction-level advisory lock in shared mode.
async fn xact_lock_shared(conn: &mut PgConnection, lock: i64) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock_shared($1)")
        .bind(lock)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl PgStore {
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Setup(format!("invalid PostgreSQL URL: {e}")))?
            .application_name("instagen");
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations in one transaction under an advisory lock, so starters
    /// that race each wait for the first, then find nothing left to do.
    async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        xact_lock(&mut tx, MIGRATION_LOCK).await?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL, checksum TEXT)",
        )
        .execute(&mut *tx)
        .await?;
        shared::migrations_applied::verify(&mut tx, MIGRATIONS).await?;
        let current: i64 =
            sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM schema_migrations")
                .fetch_one(&mut *tx)
                .await?;
        for (i, sql) in MIGRATIONS.iter().enumerate() {
            let version = i as i64 + 1;
            if version <= current {
                continue;
            }
            sqlx::raw_sql(*sql).execute(&mut *tx).await?;
            shared::migrations_applied::record(&mut tx, version, sql).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Runs `f` in a transaction, committed when it succeeds and rolled back otherwise.
    pub(super) async fn in_tx<T>(
        &self,
        f: impl for<'c> AsyncFnOnce(&'c mut PgConnection) -> Result<T, sqlx::Error>,
    ) -> Result<T, StoreError> {
        let mut tx = self.pool.begin().await?;
        let value = f(&mut tx).await?;
        tx.commit().await?;
        Ok(value)
    }

    /// Erases account `id` (see `rights.rs`). Run `post_usage` first so the ledger holds
    /// every charge. PostgreSQL has no `secure_delete`: the dead tuples erased rows leave
    /// are reclaimed by (auto)VACUUM, which cannot run inside a transaction.
    pub async fn erase_account(&self, id: &str) -> Result<super::Erased, StoreError> {
        self.in_tx(async |c| {
            // The keys get new versions; take the lock first (see `keys.rs`).
            xact_lock(c, KEY_VERSION_LOCK).await?;
            shared::rights::erase_rows(c, id).await
        })
        .await
        .map_err(shared::rights::not_found_as_account)
    }

    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Migration 13 seeds the running sums under the ledger and posting locks; its SQL
    /// names them by value, so it must name the values the code locks with.
    #[test]
    fn the_running_sums_migration_takes_the_locks_that_appends_and_posting_take() {
        let sql = MIGRATIONS[12];
        for lock in [LEDGER_LOCK, USAGE_POSTING_LOCK] {
            assert!(
                sql.contains(&format!("pg_advisory_xact_lock({lock})")),
                "{lock}"
            );
        }
    }
}
