//! Invitations: an owner asks someone to join an account; they join only by accepting.
//!
//! Only the token's keyed hash is kept; an invitation is deleted when accepted, revoked,
//! or found expired, and with its account. Written once for both stores: each includes
//! this file with its own `DbRow` and `ThisStore`.

use sqlx::Row;

use super::{DbRow, ThisStore};
use crate::keys::KeyHash;
use crate::store::{Invitation, Role, StoreError};
use crate::time::now_ms;

const SELECT: &str =
    "SELECT i.id, i.account_id, a.name AS account_name, i.email, i.role, i.invited_by,
        i.created_ms, i.expires_ms
    FROM invitations i JOIN accounts a ON a.id = i.account_id";

fn invitation_of(row: &DbRow) -> Result<Invitation, StoreError> {
    let role: String = row.try_get("role")?;
    Ok(Invitation {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        account_name: row.try_get("account_name")?,
        email: row.try_get("email")?,
        role: Role::parse(&role).ok_or(StoreError::invalid(
            "role",
            format!("stored role `{role}` is unknown"),
        ))?,
        invited_by: row.try_get("invited_by")?,
        created_ms: row.try_get("created_ms")?,
        expires_ms: row.try_get("expires_ms")?,
    })
}

impl ThisStore {
    /// Stores an invitation (replacing an earlier one for the same account and email).
    pub async fn create_invitation(
        &self,
        invitation: &Invitation,
        token_hash: &KeyHash,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "DELETE FROM invitations WHERE expires_ms < $1 OR (account_id = $2 AND email = $3)",
        )
        .bind(now_ms())
        .bind(&invitation.account_id)
        .bind(&invitation.email)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO invitations (id, account_id, email, role, token_hash, invited_by, created_ms, expires_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&invitation.id)
        .bind(&invitation.account_id)
        .bind(&invitation.email)
        .bind(invitation.role.as_str())
        .bind(token_hash.0.as_slice())
        .bind(invitation.invited_by.as_deref())
        .bind(invitation.created_ms)
        .bind(invitation.expires_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Pending invitations of an account, oldest first.
    pub async fn account_invitations(
        &self,
        account_id: &str,
    ) -> Result<Vec<Invitation>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE i.account_id = $1 AND i.expires_ms >= $2 ORDER BY i.created_ms, i.id"
        )))
        .bind(account_id)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(invitation_of).collect()
    }

    /// Pending invitations addressed to `email`, oldest first.
    pub async fn invitations_for(&self, email: &str) -> Result<Vec<Invitation>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE i.email = $1 AND i.expires_ms >= $2 ORDER BY i.created_ms, i.id"
        )))
        .bind(email)
        .bind(now_ms())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(invitation_of).collect()
    }

    /// The pending invitation whose token hashes to `token_hash`.
    pub async fn invitation_by_token(
        &self,
        token_hash: &KeyHash,
    ) -> Result<Invitation, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{SELECT} WHERE i.token_hash = $1 AND i.expires_ms >= $2"
        )))
        .bind(token_hash.0.as_slice())
        .bind(now_ms())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("invitation"))?;
        invitation_of(&row)
    }

    /// Deletes an invitation of `account_id` (accepted or revoked).
    pub async fn delete_invitation(&self, account_id: &str, id: &str) -> Result<(), StoreError> {
        let done = sqlx::query("DELETE FROM invitations WHERE account_id = $1 AND id = $2")
            .bind(account_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("invitation"));
        }
        Ok(())
    }
}
