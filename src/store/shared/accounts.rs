//! Accounts, users, memberships, sessions, management tokens, audit log and security
//! events. Key authentication data lives in `keys.rs`. Written once for both stores: each
//! includes this file with its own types and its locking (`lock_account`,
//! `lock_key_versions`, `bump_account_keys`), the only places the dialects differ here.

use sqlx::Row;

use super::{DbQuery, DbRow, ThisStore, bump_account_keys, lock_account, lock_key_versions};
use crate::keys::{KeyHash, random_id};
use crate::store::codec::{conflict, hash_of};
use crate::store::{
    Account, AccountStatus, AuditEntry, Membership, Role, SecurityEvent, SessionRow, StoreError,
    TokenInfo, TokenStatus, User,
};
use crate::time::now_ms;

fn new_id(prefix: &str) -> Result<String, StoreError> {
    Ok(format!(
        "{prefix}_{}",
        random_id(16).map_err(|e| StoreError::Setup(e.to_string()))?
    ))
}

fn account_of(row: &DbRow) -> Result<Account, sqlx::Error> {
    Ok(Account {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        status: {
            let s: String = row.try_get("status")?;
            AccountStatus::parse(&s).ok_or_else(|| {
                sqlx::Error::Decode(format!("unknown account status `{s}`").into())
            })?
        },
        created_ms: row.try_get("created_ms")?,
        billing_id: row
            .try_get::<Option<String>, _>("billing_id")?
            .unwrap_or_default(),
        allowed_regions: row
            .try_get::<Option<String>, _>("allowed_regions")?
            .and_then(|t| serde_json::from_str(&t).ok()),
        rpm: row.try_get("rpm")?,
        tpm: row.try_get("tpm")?,
    })
}

fn user_of(row: &DbRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        is_operator: row.try_get("is_operator")?,
        created_ms: row.try_get("created_ms")?,
        password_hash: row.try_get("password_hash")?,
        privacy_seen_version: row.try_get("privacy_seen_version")?,
    })
}

fn membership_of(row: &DbRow) -> Result<Membership, sqlx::Error> {
    let role: String = row.try_get("role")?;
    Ok(Membership {
        account_id: row.try_get("account_id")?,
        account_name: row.try_get("account_name")?,
        user_id: row.try_get("user_id")?,
        email: row.try_get("email")?,
        role: Role::parse(&role).unwrap_or(Role::Viewer),
        created_ms: row.try_get("created_ms")?,
    })
}

fn token_of(row: &DbRow) -> Result<TokenInfo, sqlx::Error> {
    Ok(TokenInfo {
        id: row.try_get("id")?,
        account_id: row.try_get("account_id")?,
        role: row.try_get("role")?,
        name: row.try_get("name")?,
        created_ms: row.try_get("created_ms")?,
        last_used_ms: row.try_get("last_used_ms")?,
        status: {
            let s: String = row.try_get("status")?;
            TokenStatus::parse(&s)
                .ok_or_else(|| sqlx::Error::Decode(format!("unknown token status `{s}`").into()))?
        },
        created_by: row.try_get("created_by")?,
        hash: hash_of(row.try_get("secret_hash")?),
    })
}

const MEMBERSHIP_SELECT: &str =
    "SELECT m.account_id, a.name AS account_name, m.user_id, u.email, m.role, m.created_ms
     FROM memberships m JOIN accounts a ON a.id = m.account_id JOIN users u ON u.id = m.user_id";

impl ThisStore {
    pub async fn create_account(&self, name: &str) -> Result<Account, StoreError> {
        let account = Account {
            id: new_id("acct")?,
            name: name.to_owned(),
            status: AccountStatus::Active,
            created_ms: now_ms(),
            allowed_regions: None,
            rpm: None,
            tpm: None,
            billing_id: new_id("bill")?,
        };
        sqlx::query(
            "INSERT INTO accounts (id, name, created_ms, status, billing_id) VALUES ($1, $2, $3, 'active', $4)",
        )
        .bind(&account.id)
        .bind(&account.name)
        .bind(account.created_ms)
        .bind(&account.billing_id)
        .execute(&self.pool)
        .await
        .map_err(|e| conflict(e, "account"))?;
        Ok(account)
    }

    pub async fn account(&self, id: &str) -> Result<Account, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, status, created_ms, billing_id, allowed_regions, rpm, tpm FROM accounts WHERE id = $1 AND status != 'deleted'",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("account"))?;
        Ok(account_of(&row)?)
    }

    pub async fn account_by_name(&self, name: &str) -> Result<Account, StoreError> {
        let row = sqlx::query(
            "SELECT id, name, status, created_ms, billing_id, allowed_regions, rpm, tpm FROM accounts WHERE name = $1 AND status != 'deleted'",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound("account"))?;
        Ok(account_of(&row)?)
    }

    pub async fn list_accounts(&self) -> Result<Vec<Account>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, status, created_ms, billing_id, allowed_regions, rpm, tpm FROM accounts WHERE status != 'deleted' ORDER BY created_ms, name",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(account_of).collect::<Result<_, _>>()?)
    }

    /// Restricts an account to provider regions (`None` lifts it).
    pub async fn set_account_regions(
        &self,
        id: &str,
        regions: Option<&[String]>,
    ) -> Result<(), StoreError> {
        let text = regions.and_then(|r| serde_json::to_string(r).ok());
        let query = sqlx::query(
            "UPDATE accounts SET allowed_regions = $1 WHERE id = $2 AND status != 'deleted'",
        );
        self.change_account(id, query.bind(text).bind(id)).await
    }

    /// Sets the account's rate limits.
    pub async fn set_account_limits(
        &self,
        id: &str,
        rpm: Option<i64>,
        tpm: Option<i64>,
    ) -> Result<(), StoreError> {
        let query = sqlx::query(
            "UPDATE accounts SET rpm = $1, tpm = $2 WHERE id = $3 AND status != 'deleted'",
        );
        self.change_account(id, query.bind(rpm).bind(tpm).bind(id))
            .await
    }

    /// Suspends or reactivates an account.
    pub async fn set_account_status(
        &self,
        id: &str,
        status: AccountStatus,
    ) -> Result<(), StoreError> {
        let query = sqlx::query("UPDATE accounts SET status = $1 WHERE id = $2");
        self.change_account(id, query.bind(status.as_str()).bind(id))
            .await
    }

    /// Runs `update` (one UPDATE of account `id`) and bumps the account's keys' versions,
    /// so every instance's key cache applies the change within a second.
    async fn change_account(&self, id: &str, update: DbQuery<'_>) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        lock_key_versions(&mut tx).await?;
        if update.execute(&mut *tx).await?.rows_affected() == 0 {
            return Err(StoreError::NotFound("account"));
        }
        bump_account_keys(&mut tx, id).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn create_user(
        &self,
        email: &str,
        password_hash: &str,
        is_operator: bool,
    ) -> Result<User, StoreError> {
        let user = User {
            id: new_id("user")?,
            email: email.to_owned(),
            is_operator,
            created_ms: now_ms(),
            password_hash: password_hash.to_owned(),
            privacy_seen_version: None,
        };
        sqlx::query("INSERT INTO users (id, email, password_hash, is_operator, created_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(&user.id)
            .bind(&user.email)
            .bind(&user.password_hash)
            .bind(user.is_operator)
            .bind(user.created_ms)
            .execute(&self.pool)
            .await
            .map_err(|e| conflict(e, "user"))?;
        Ok(user)
    }

    pub async fn user(&self, id: &str) -> Result<User, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("user"))?;
        Ok(user_of(&row)?)
    }

    pub async fn user_by_email(&self, email: &str) -> Result<User, StoreError> {
        let row = sqlx::query("SELECT * FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("user"))?;
        Ok(user_of(&row)?)
    }

    pub async fn set_privacy_seen(&self, user_id: &str, version: &str) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE users SET privacy_seen_version = $1 WHERE id = $2")
            .bind(version)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("user"));
        }
        Ok(())
    }

    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query("SELECT * FROM users ORDER BY created_ms, email")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(user_of).collect::<Result<_, _>>()?)
    }

    /// Adds a member or changes their role. Demoting the account's last owner is refused
    /// ([`StoreError::LastOwner`]) under a lock on the account, so two owners demoting
    /// each other at once cannot both succeed.
    pub async fn set_membership(
        &self,
        account_id: &str,
        user_id: &str,
        role: Role,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        lock_account(&mut tx, account_id).await?;
        let done = sqlx::query(
            "INSERT INTO memberships (account_id, user_id, role, created_ms) VALUES ($1, $2, $3, $4)
             ON CONFLICT (account_id, user_id) DO UPDATE SET role = excluded.role
             WHERE memberships.role <> 'owner' OR excluded.role = 'owner'
                OR (SELECT COUNT(*) FROM memberships o WHERE o.account_id = excluded.account_id AND o.role = 'owner') > 1",
        )
        .bind(account_id)
        .bind(user_id)
        .bind(role.as_str())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::LastOwner);
        }
        tx.commit().await?;
        Ok(())
    }

    /// Removes a member; removing the account's last owner is refused
    /// ([`StoreError::LastOwner`]) in the same statement.
    pub async fn remove_membership(
        &self,
        account_id: &str,
        user_id: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        lock_account(&mut tx, account_id).await?;
        let done = sqlx::query(
            "DELETE FROM memberships AS m WHERE m.account_id = $1 AND m.user_id = $2
               AND (m.role <> 'owner' OR (SELECT COUNT(*) FROM memberships o WHERE o.account_id = m.account_id AND o.role = 'owner') > 1)",
        )
        .bind(account_id)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        if done.rows_affected() > 0 {
            return Ok(());
        }
        match self.role_of(account_id, user_id).await? {
            Some(_) => Err(StoreError::LastOwner),
            None => Err(StoreError::NotFound("member")),
        }
    }

    /// Revokes what a member's access derived from: the management tokens they created in
    /// the account (all of them, or those above `keep_up_to`) and all their sessions.
    pub async fn revoke_member_credentials(
        &self,
        account_id: &str,
        user_id: &str,
        keep_up_to: Option<Role>,
    ) -> Result<u64, StoreError> {
        let above: Vec<&str> = Role::ALL
            .iter()
            .filter(|r| keep_up_to.is_none_or(|k| **r > k))
            .map(|r| r.as_str())
            .collect();
        let mut revoked = 0;
        for role in above {
            revoked += sqlx::query(
                "UPDATE mgmt_tokens SET status = 'revoked', secret_hash = NULL
                 WHERE account_id = $1 AND created_by = $2 AND role = $3 AND status = 'active'",
            )
            .bind(account_id)
            .bind(user_id)
            .bind(role)
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        sqlx::query("DELETE FROM sessions WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(revoked)
    }

    pub async fn role_of(
        &self,
        account_id: &str,
        user_id: &str,
    ) -> Result<Option<Role>, StoreError> {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM memberships WHERE account_id = $1 AND user_id = $2",
        )
        .bind(account_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(role.as_deref().and_then(Role::parse))
    }

    pub async fn members(&self, account_id: &str) -> Result<Vec<Membership>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "{MEMBERSHIP_SELECT} WHERE m.account_id = $1 ORDER BY m.created_ms"
        ));
        let rows = sqlx::query(sql)
            .bind(account_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(membership_of).collect::<Result<_, _>>()?)
    }

    pub async fn memberships_of(&self, user_id: &str) -> Result<Vec<Membership>, StoreError> {
        let sql = sqlx::AssertSqlSafe(format!(
            "{MEMBERSHIP_SELECT} WHERE m.user_id = $1 ORDER BY m.created_ms"
        ));
        let rows = sqlx::query(sql).bind(user_id).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(membership_of).collect::<Result<_, _>>()?)
    }

    pub async fn create_session(
        &self,
        token_hash: &KeyHash,
        user_id: &str,
        csrf_hash: &KeyHash,
        expires_ms: i64,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        sqlx::query("DELETE FROM sessions WHERE expires_ms < $1")
            .bind(now)
            .execute(&self.pool)
            .await?;
        sqlx::query("INSERT INTO sessions (token_hash, user_id, csrf_hash, created_ms, expires_ms) VALUES ($1, $2, $3, $4, $5)")
            .bind(token_hash.0.as_slice())
            .bind(user_id)
            .bind(csrf_hash.0.as_slice())
            .bind(now)
            .bind(expires_ms)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn session(&self, token_hash: &KeyHash) -> Result<Option<SessionRow>, StoreError> {
        let row = sqlx::query(
            "SELECT user_id, csrf_hash, expires_ms FROM sessions WHERE token_hash = $1",
        )
        .bind(token_hash.0.as_slice())
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let csrf = hash_of(row.try_get("csrf_hash")?);
        Ok(csrf
            .map(|csrf_hash| -> Result<SessionRow, sqlx::Error> {
                Ok(SessionRow {
                    user_id: row.try_get("user_id")?,
                    csrf_hash,
                    expires_ms: row.try_get("expires_ms")?,
                })
            })
            .transpose()?)
    }

    pub async fn delete_session(&self, token_hash: &KeyHash) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash.0.as_slice())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn insert_token(
        &self,
        id: &str,
        account_id: Option<&str>,
        role: &str,
        name: &str,
        hash: &KeyHash,
        created_by: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mgmt_tokens (id, account_id, role, name, secret_hash, created_by, created_ms, status)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'active')",
        )
        .bind(id)
        .bind(account_id)
        .bind(role)
        .bind(name)
        .bind(hash.0.as_slice())
        .bind(created_by)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn token(&self, id: &str) -> Result<TokenInfo, StoreError> {
        let row = sqlx::query("SELECT * FROM mgmt_tokens WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound("token"))?;
        Ok(token_of(&row)?)
    }

    pub async fn list_tokens(&self, account_id: &str) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = sqlx::query("SELECT * FROM mgmt_tokens WHERE account_id = $1 AND status = 'active' ORDER BY created_ms")
            .bind(account_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(token_of).collect::<Result<_, _>>()?)
    }

    pub async fn revoke_token(&self, id: &str) -> Result<(), StoreError> {
        let done = sqlx::query("UPDATE mgmt_tokens SET status = 'revoked', secret_hash = NULL WHERE id = $1 AND status = 'active'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("token"));
        }
        Ok(())
    }

    pub async fn touch_token(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE mgmt_tokens SET last_used_ms = $1 WHERE id = $2")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn append_audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO audit_log (ts_ms, account_id, actor_kind, actor_id, action, target_id, client_ip)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.ts_ms)
        .bind(e.account_id.as_deref())
        .bind(&e.actor_kind)
        .bind(e.actor_id.as_deref())
        .bind(&e.action)
        .bind(e.target_id.as_deref())
        .bind(e.client_ip.as_deref())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn audit(
        &self,
        account_id: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = match account_id {
            Some(a) => {
                sqlx::query(
                    "SELECT * FROM audit_log WHERE account_id = $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(a)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query("SELECT * FROM audit_log ORDER BY id DESC LIMIT $1")
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    ts_ms: row.try_get("ts_ms")?,
                    account_id: row.try_get("account_id")?,
                    actor_kind: row.try_get("actor_kind")?,
                    actor_id: row.try_get("actor_id")?,
                    action: row.try_get("action")?,
                    target_id: row.try_get("target_id")?,
                    client_ip: row.try_get("client_ip")?,
                })
            })
            .collect()
    }

    pub async fn add_security_events(&self, events: &[SecurityEvent]) -> Result<(), StoreError> {
        // Upserted in primary-key order, so concurrent instances lock rows in one order.
        let mut sorted: Vec<&SecurityEvent> = events.iter().collect();
        sorted.sort_by(|a, b| {
            (a.bucket_ms, &a.kind, &a.key_id, &a.client_ip).cmp(&(
                b.bucket_ms,
                &b.kind,
                &b.key_id,
                &b.client_ip,
            ))
        });
        let mut tx = self.pool.begin().await?;
        for e in sorted {
            sqlx::query(
                // Events of an account erased meanwhile are dropped, not resurrected.
                "INSERT INTO security_events AS s (bucket_ms, kind, key_id, client_ip, account_id, count)
                 SELECT $1, $2, $3, $4, $5, $6
                 WHERE CAST($5 AS TEXT) IS NULL OR EXISTS (SELECT 1 FROM accounts WHERE id = $5 AND status != 'deleted')
                 ON CONFLICT (bucket_ms, kind, key_id, client_ip) DO UPDATE SET count = s.count + excluded.count",
            )
            .bind(e.bucket_ms)
            .bind(&e.kind)
            .bind(e.key_id.as_deref().unwrap_or(""))
            .bind(e.client_ip.as_deref().unwrap_or(""))
            .bind(e.account_id.as_deref())
            .bind(e.count)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn security_events(
        &self,
        account_id: Option<&str>,
        since_ms: i64,
    ) -> Result<Vec<SecurityEvent>, StoreError> {
        let rows = match account_id {
            Some(a) => sqlx::query(
                "SELECT * FROM security_events WHERE account_id = $1 AND bucket_ms >= $2 ORDER BY bucket_ms DESC, kind",
            )
            .bind(a)
            .bind(since_ms)
            .fetch_all(&self.pool)
            .await?,
            None => sqlx::query("SELECT * FROM security_events WHERE bucket_ms >= $1 ORDER BY bucket_ms DESC, kind LIMIT 1000")
                .bind(since_ms)
                .fetch_all(&self.pool)
                .await?,
        };
        rows.iter()
            .map(|row| {
                let key_id: String = row.try_get("key_id")?;
                let ip: String = row.try_get("client_ip")?;
                Ok(SecurityEvent {
                    bucket_ms: row.try_get("bucket_ms")?,
                    kind: row.try_get("kind")?,
                    key_id: (!key_id.is_empty()).then_some(key_id),
                    client_ip: (!ip.is_empty()).then_some(ip),
                    account_id: row.try_get("account_id")?,
                    count: row.try_get("count")?,
                })
            })
            .collect()
    }
}
