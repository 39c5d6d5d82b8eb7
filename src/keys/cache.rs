//! The in-memory key table that authenticates requests without touching the store.
//!
//! It holds every key's public id, account and hash. A background task calls
//! [`KeyCache::refresh`] a few times a second and applies only rows whose version
//! moved, so a key created, disabled or deleted by the CLI or another instance is
//! seen within a second.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use super::{KeyError, KeyHash, KeyHasher, ParsedKey};
use crate::store::{KeyRow, KeyStatus, Store, StoreError};

/// An authenticated key, as the rest of the request sees it.
#[derive(Debug)]
pub struct AuthedKey {
    pub key_id: String,
    pub account_id: String,
}

struct Entry {
    hash: KeyHash,
    active: bool,
    authed: Arc<AuthedKey>,
}

pub struct KeyCache {
    hasher: KeyHasher,
    entries: RwLock<HashMap<Box<str>, Entry>>,
    version: AtomicI64,
}

impl KeyCache {
    pub fn new(hasher: KeyHasher) -> Self {
        Self {
            hasher,
            entries: RwLock::new(HashMap::new()),
            version: AtomicI64::new(0),
        }
    }

    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// Authenticates an `Authorization` header value.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Arc<AuthedKey>, KeyError> {
        let value = authorization.ok_or(KeyError::Missing)?.trim();
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(KeyError::Missing)?
            .trim();
        let parsed = ParsedKey::parse(token).ok_or(KeyError::Malformed)?;
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let entry = entries.get(parsed.id).ok_or(KeyError::Unknown)?;
        if !self.hasher.verify(&parsed, &entry.hash) {
            return Err(KeyError::Unknown);
        }
        if !entry.active {
            return Err(KeyError::Disabled);
        }
        Ok(entry.authed.clone())
    }

    /// Applies changed rows from the store; returns how many changed.
    pub async fn refresh(&self, store: &Store) -> Result<usize, StoreError> {
        let since = self.version.load(Ordering::Acquire);
        let rows = store.keys_changed_since(since).await?;
        let n = rows.len();
        if n > 0 {
            self.apply(rows);
        }
        Ok(n)
    }

    fn apply(&self, rows: Vec<KeyRow>) {
        let mut max = self.version.load(Ordering::Acquire);
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        for row in rows {
            max = max.max(row.version);
            match (row.status, row.hash) {
                (KeyStatus::Deleted, _) | (_, None) => {
                    entries.remove(row.id.as_str());
                }
                (status, Some(hash)) => {
                    let authed = Arc::new(AuthedKey {
                        key_id: row.id.clone(),
                        account_id: row.account_id,
                    });
                    entries.insert(
                        row.id.into_boxed_str(),
                        Entry {
                            hash,
                            active: status == KeyStatus::Active,
                            authed,
                        },
                    );
                }
            }
        }
        self.version.store(max, Ordering::Release);
    }
}
