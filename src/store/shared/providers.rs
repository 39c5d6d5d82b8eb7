//! Operator-managed providers: settings and sealed credentials, versioned for reloads (on
//! PostgreSQL the version row's lock orders concurrent changes). Written once for both
//! stores: each includes this file with its own `DbRow` and `ThisStore`.

use sqlx::Row;

use super::{DbRow, ThisStore};
use crate::store::codec::conflict;
use crate::store::{StoreError, StoredProvider};
use crate::time::now_ms;

fn provider_of(row: &DbRow) -> Result<StoredProvider, sqlx::Error> {
    Ok(StoredProvider {
        name: row.try_get("name")?,
        settings: row.try_get("settings")?,
        credential: row.try_get("credential")?,
        created_ms: row.try_get("created_ms")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

const BUMP: &str = "UPDATE providers_version SET version = version + 1 WHERE id = 1";

impl ThisStore {
    pub async fn list_providers(&self) -> Result<Vec<StoredProvider>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, settings, credential, created_ms, updated_ms FROM providers ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(provider_of).collect::<Result<_, _>>()?)
    }

    /// A number that changes whenever a provider is created, changed or deleted.
    pub async fn providers_version(&self) -> Result<i64, StoreError> {
        let v: i64 = sqlx::query_scalar("SELECT version FROM providers_version WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(v)
    }

    pub async fn create_provider(&self, p: &StoredProvider) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO providers (name, settings, credential, created_ms, updated_ms)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&p.name)
        .bind(&p.settings)
        .bind(&p.credential)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(|e| conflict(e, "provider"))?;
        sqlx::query(BUMP).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn update_provider(&self, p: &StoredProvider) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE providers SET settings = $1, credential = $2, updated_ms = $3 WHERE name = $4",
        )
        .bind(&p.settings)
        .bind(&p.credential)
        .bind(now_ms())
        .bind(&p.name)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("provider"));
        }
        sqlx::query(BUMP).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_provider(&self, name: &str) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM providers WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("provider"));
        }
        sqlx::query(BUMP).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
}
