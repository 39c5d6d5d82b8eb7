//! Account, key and usage operations shared by the CLI (and, later, the management API).
//!
//! Each function works on a [`Store`] and returns typed results; printing is the caller's.

use serde::Serialize;

use crate::billing::Money;
use crate::config::Secret;
use crate::keys::KeyHasher;
use crate::store::{Account, KeyInfo, KeyStatus, Store, StoreError};

/// A key just created: the only moment its secret exists in plaintext.
#[derive(Serialize)]
pub struct CreatedKey {
    pub id: String,
    pub account_id: String,
    pub name: String,
    /// The full `ig-…` key, shown once.
    #[serde(serialize_with = "expose")]
    pub secret: Secret,
}

fn expose<S: serde::Serializer>(s: &Secret, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.expose())
}

pub async fn create_account(store: &Store, name: &str) -> Result<Account, StoreError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 128 {
        return Err(StoreError::Setup(
            "account names are 1 to 128 characters".to_owned(),
        ));
    }
    store.create_account(name).await
}

pub async fn create_key(
    store: &Store,
    hasher: &KeyHasher,
    account: &str,
    name: &str,
    description: &str,
) -> Result<CreatedKey, StoreError> {
    if name.trim().is_empty() || name.len() > 128 || description.len() > 1024 {
        return Err(StoreError::Setup(
            "key names are 1 to 128 characters and descriptions at most 1024".to_owned(),
        ));
    }
    let account = store.account_by_name(account).await?;
    let key = hasher
        .generate()
        .map_err(|e| StoreError::Setup(e.to_string()))?;
    store
        .insert_key(&account.id, &key.id, name, description, &key.hash)
        .await?;
    Ok(CreatedKey {
        id: key.id,
        account_id: account.id,
        name: name.to_owned(),
        secret: key.plaintext,
    })
}

pub async fn list_keys(store: &Store, account: &str) -> Result<Vec<KeyInfo>, StoreError> {
    let account = store.account_by_name(account).await?;
    store.list_keys(&account.id).await
}

pub async fn set_key_status(store: &Store, id: &str, status: KeyStatus) -> Result<(), StoreError> {
    store.set_key_status(id, status).await
}

/// Totals and a per-model breakdown, with exact USD strings.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct UsageSummary {
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: String,
    pub models: Vec<ModelUsage>,
}

#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct ModelUsage {
    pub model: String,
    pub requests: i64,
    pub input_tokens: i64,
    pub output_tokens: i64,
    pub cost_usd: String,
}

pub async fn usage_summary(
    store: &Store,
    account: &str,
    from_ms: i64,
    to_ms: i64,
) -> Result<UsageSummary, StoreError> {
    let account = store.account_by_name(account).await?;
    let rows = store.usage_by_model(&account.id, from_ms, to_ms).await?;
    let mut total = Money::ZERO;
    let mut summary = UsageSummary {
        requests: 0,
        input_tokens: 0,
        output_tokens: 0,
        cost_usd: String::new(),
        models: Vec::with_capacity(rows.len()),
    };
    for r in rows {
        summary.requests += r.requests;
        summary.input_tokens += r.input_tokens;
        summary.output_tokens += r.output_tokens;
        let cost = Money::from_nanos(r.cost_nanos);
        total = total
            .checked_add(cost)
            .unwrap_or(Money::from_nanos(i64::MAX));
        summary.models.push(ModelUsage {
            model: if r.model.is_empty() {
                "(unrouted)".to_owned()
            } else {
                r.model
            },
            requests: r.requests,
            input_tokens: r.input_tokens,
            output_tokens: r.output_tokens,
            cost_usd: cost.to_string(),
        });
    }
    summary.cost_usd = total.to_string();
    Ok(summary)
}
