//! Access keys and management tokens: create, update, rotate, disable, delete, revoke.

use serde::Serialize;

use super::{Actor, audit, invalid};
use super::{check_description, check_limits, check_models, check_name};
use crate::config::Secret;
use crate::keys::KeyHasher;
use crate::store::{KeyInfo, KeySpec, KeyStatus, KeyUpdate, Role, Store, StoreError};
use crate::time::now_ms;

/// A key or token just created or rotated: the only moment its secret exists in plaintext.
#[derive(Serialize)]
pub struct CreatedKey {
    pub id: String,
    pub account_id: String,
    pub name: String,
    /// The full `ig-…` key, shown once.
    #[serde(serialize_with = "expose")]
    pub secret: Secret,
    /// After a rotation: until when the previous secret keeps working.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_valid_until_ms: Option<i64>,
}

pub(super) fn expose<S: serde::Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose())
}

/// Keys an account may hold (not counting deleted ones) unless configured otherwise.
pub const DEFAULT_MAX_KEYS_PER_ACCOUNT: usize = 1_000;

/// Creates a key under the default per-account cap.
pub async fn create_key(
    store: &Store,
    hasher: &KeyHasher,
    actor: &Actor,
    account_id: &str,
    spec: KeySpec,
) -> Result<CreatedKey, StoreError> {
    create_key_capped(
        store,
        hasher,
        actor,
        account_id,
        spec,
        DEFAULT_MAX_KEYS_PER_ACCOUNT,
    )
    .await
}

/// Creates a key unless the account already holds `max_keys` live keys (409 `key_limit`).
pub async fn create_key_capped(
    store: &Store,
    hasher: &KeyHasher,
    actor: &Actor,
    account_id: &str,
    spec: KeySpec,
    max_keys: usize,
) -> Result<CreatedKey, StoreError> {
    let spec = KeySpec {
        name: check_name("name", &spec.name, 128)?,
        description: check_description(&spec.description)?,
        ..spec
    };
    check_models(&spec.allowed_models)?;
    check_models(&spec.allowed_regions)
        .map_err(|_| invalid("allowed_regions", "at most 256 non-empty region names"))?;
    check_limits(&spec.limits)?;
    let account = store.account(account_id).await?;
    let key = hasher
        .generate()
        .map_err(|e| StoreError::Setup(e.to_string()))?;
    store
        .insert_key(&account.id, &key.id, &key.hash, &spec, max_keys)
        .await?;
    audit(store, actor, Some(&account.id), "key.create", Some(&key.id)).await;
    Ok(CreatedKey {
        id: key.id,
        account_id: account.id,
        name: spec.name,
        secret: key.plaintext,
        previous_secret_valid_until_ms: None,
    })
}

pub async fn update_key(
    store: &Store,
    actor: &Actor,
    account_id: &str,
    key_id: &str,
    mut update: KeyUpdate,
) -> Result<KeyInfo, StoreError> {
    if let Some(n) = &update.name {
        update.name = Some(check_name("name", n, 128)?);
    }
    if let Some(d) = &update.description {
        update.description = Some(check_description(d)?);
    }
    if let Some(r) = &update.allowed_regions {
        check_models(r)
            .map_err(|_| invalid("allowed_regions", "at most 256 non-empty region names"))?;
    }
    if let Some(m) = &update.allowed_models {
        check_models(m)?;
    }
    if let Some(l) = &update.limits {
        check_limits(l)?;
    }
    store.update_key(account_id, key_id, &update).await?;
    audit(store, actor, Some(account_id), "key.update", Some(key_id)).await;
    store.key(account_id, key_id).await
}

/// Default grace period for the old secret after a rotation.
pub const DEFAULT_ROTATION_GRACE_SECS: i64 = 24 * 3600;

pub async fn rotate_key(
    store: &Store,
    hasher: &KeyHasher,
    actor: &Actor,
    account_id: &str,
    key_id: &str,
    grace_secs: i64,
) -> Result<CreatedKey, StoreError> {
    if !(0..=30 * 24 * 3600).contains(&grace_secs) {
        return Err(invalid(
            "grace_seconds",
            "must be between 0 and 2592000 (30 days)",
        ));
    }
    let current = store.key(account_id, key_id).await?;
    let key = hasher
        .regenerate(key_id)
        .map_err(|e| StoreError::Setup(e.to_string()))?;
    let until = (grace_secs > 0).then(|| now_ms() + grace_secs * 1000);
    store
        .rotate_key(account_id, key_id, &key.hash, until)
        .await?;
    audit(store, actor, Some(account_id), "key.rotate", Some(key_id)).await;
    Ok(CreatedKey {
        id: key.id,
        account_id: account_id.to_owned(),
        name: current.name,
        secret: key.plaintext,
        previous_secret_valid_until_ms: until,
    })
}

pub async fn set_key_status(
    store: &Store,
    actor: &Actor,
    account_id: &str,
    key_id: &str,
    status: KeyStatus,
) -> Result<(), StoreError> {
    store.set_key_status(account_id, key_id, status).await?;
    let action = match status {
        KeyStatus::Active => "key.enable",
        KeyStatus::Disabled => "key.disable",
        KeyStatus::Deleted => "key.delete",
    };
    audit(store, actor, Some(account_id), action, Some(key_id)).await;
    Ok(())
}

/// A management token just created: its secret is shown once.
#[derive(Serialize)]
pub struct CreatedToken {
    pub id: String,
    pub account_id: Option<String>,
    pub role: String,
    pub name: String,
    #[serde(serialize_with = "expose")]
    pub secret: Secret,
}

/// Creates a management token for `account_id` with `role`, or a global operator token
/// when `account_id` is `None`.
pub async fn create_token(
    store: &Store,
    hasher: &KeyHasher,
    actor: &Actor,
    account_id: Option<&str>,
    role: &str,
    name: &str,
    created_by: Option<&str>,
) -> Result<CreatedToken, StoreError> {
    let name = check_name("name", name, 128)?;
    match (account_id, role) {
        (None, "operator") => {}
        (Some(a), r) if Role::parse(r).is_some() => {
            store.account(a).await?;
        }
        _ => {
            return Err(invalid(
                "role",
                "must be owner, member or viewer (operator tokens have no account)",
            ));
        }
    }
    let token = hasher
        .generate_token()
        .map_err(|e| StoreError::Setup(e.to_string()))?;
    store
        .insert_token(&token.id, account_id, role, &name, &token.hash, created_by)
        .await?;
    audit(store, actor, account_id, "token.create", Some(&token.id)).await;
    Ok(CreatedToken {
        id: token.id,
        account_id: account_id.map(str::to_owned),
        role: role.to_owned(),
        name,
        secret: token.plaintext,
    })
}

pub async fn revoke_token(
    store: &Store,
    actor: &Actor,
    account_id: &str,
    token_id: &str,
) -> Result<(), StoreError> {
    let t = store.token(token_id).await?;
    if t.account_id.as_deref() != Some(account_id) {
        return Err(StoreError::NotFound("token"));
    }
    store.revoke_token(token_id).await?;
    audit(
        store,
        actor,
        Some(account_id),
        "token.revoke",
        Some(token_id),
    )
    .await;
    Ok(())
}
