//! What each store records of its migrations, written once for both: every applied
//! migration's SHA-256, so a migration edited after it shipped is refused at start (it
//! would leave databases that ran the old text and databases that ran the new one).
//! Databases from before checksums get theirs recorded on first start (trust on first use).

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{CHECKSUM_COLUMN_EXISTS, DbConn};
use crate::store::StoreError;

/// The text's SHA-256, hex.
pub(in crate::store) fn checksum(sql: &str) -> String {
    Sha256::digest(sql.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Adds the checksum column to a table from before it, then compares every applied
/// migration's recorded checksum with the text this build carries; records missing ones.
pub(in crate::store) async fn verify(
    conn: &mut DbConn,
    migrations: &[&str],
) -> Result<(), StoreError> {
    let has_column: i64 = sqlx::query_scalar(CHECKSUM_COLUMN_EXISTS)
        .fetch_one(&mut *conn)
        .await?;
    if has_column == 0 {
        sqlx::query("ALTER TABLE schema_migrations ADD COLUMN checksum TEXT")
            .execute(&mut *conn)
            .await?;
    }
    let applied = sqlx::query("SELECT version, checksum FROM schema_migrations ORDER BY version")
        .fetch_all(&mut *conn)
        .await?;
    for row in &applied {
        let version: i64 = row.try_get("version")?;
        let stored: Option<String> = row.try_get("checksum")?;
        let Some(sql) = usize::try_from(version - 1)
            .ok()
            .and_then(|i| migrations.get(i))
        else {
            // A newer build migrated this database; this one knows no more of it.
            continue;
        };
        let expected = checksum(sql);
        match stored {
            Some(s) if s == expected => {}
            Some(_) => {
                return Err(StoreError::Setup(format!(
                    "migration {version} was changed after this database applied it; a shipped \
                     migration must never be edited (add a new one instead)"
                )));
            }
            None => {
                sqlx::query("UPDATE schema_migrations SET checksum = $1 WHERE version = $2")
                    .bind(&expected)
                    .bind(version)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Records one migration as applied, with its checksum.
pub(in crate::store) async fn record(
    conn: &mut DbConn,
    version: i64,
    sql: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO schema_migrations (version, applied_ms, checksum) VALUES ($1, $2, $3)",
    )
    .bind(version)
    .bind(crate::time::now_ms())
    .bind(checksum(sql))
    .execute(&mut *conn)
    .await?;
    Ok(())
}
