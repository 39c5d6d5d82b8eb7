//! The in-memory key table that authenticates `/v1` requests without touching the store.
//!
//! It holds every key's public id, account, hashes (current and, during a rotation's
//! grace period, previous), status, expiry and allowed models. A background task calls
//! [`KeyCache::refresh`] a few times a second and applies only rows whose version moved,
//! so a change made by the CLI, the management API or another instance is seen within
//! a second. Deleted keys stay as hash-less entries so failed attempts with them can be
//! attributed to their account.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use super::{KeyError, KeyHash, KeyHasher, ParsedKey, TOKEN_PREFIX};
use crate::idmap::IdMap;
use crate::store::{KeyRow, KeyStatus, Store, StoreError};

/// Rows read per query by [`KeyCache::refresh`].
const REFRESH_PAGE: i64 = 1_000;

/// An authenticated key, as the rest of the request sees it.
#[derive(Debug)]
pub struct AuthedKey {
    /// Shared: every usage record of the key carries them without a copy.
    pub key_id: Arc<str>,
    pub account_id: Arc<str>,
    /// Model ids this key may use; `None` means all.
    pub allowed_models: Option<Vec<String>>,
    /// Spend cap for the key's period (nano-USD), enforced by the budget tracker.
    pub spend_limit_nanos: Option<i64>,
    /// Provider regions this key's requests may be processed in; `None` means any.
    pub allowed_regions: Option<Vec<String>>,
    /// Rate limits of the key and of its account.
    pub limits: crate::limits::KeyQuotas,
    /// Cancelled when the key stops being usable (disabled, deleted, its account suspended
    /// or erased): requests still running with it are cut, streams included.
    pub revoked: tokio_util::sync::CancellationToken,
}

/// A key restricted by its own list and its account's may use only regions on both.
fn effective_regions(
    key: Option<Vec<String>>,
    account: Option<Vec<String>>,
) -> Option<Vec<String>> {
    match (key, account) {
        (Some(k), Some(a)) => Some(k.into_iter().filter(|r| a.contains(r)).collect()),
        (k, a) => k.or(a),
    }
}

impl AuthedKey {
    /// Whether a provider in `region` may process this key's requests.
    pub fn may_process_in(&self, region: Option<&str>) -> bool {
        match (&self.allowed_regions, region) {
            (None, _) => true,
            (Some(allowed), Some(r)) => allowed.iter().any(|a| a == r),
            (Some(_), None) => false,
        }
    }

    pub fn may_use(&self, model: &str) -> bool {
        self.allowed_models
            .as_ref()
            .is_none_or(|m| m.iter().any(|x| x == model))
    }
}

/// A refused authentication, with what is known of whose key it was.
#[derive(Debug, Clone)]
pub struct AuthFailure {
    pub error: KeyError,
    pub key_id: Option<String>,
    pub account_id: Option<String>,
}

impl AuthFailure {
    fn anonymous(error: KeyError) -> Self {
        Self {
            error,
            key_id: None,
            account_id: None,
        }
    }
}

struct Entry {
    hash: Option<KeyHash>,
    previous: Option<(KeyHash, i64)>,
    status: KeyStatus,
    account_active: bool,
    expires_ms: Option<i64>,
    authed: Arc<AuthedKey>,
}

pub struct KeyCache {
    hasher: KeyHasher,
    entries: RwLock<IdMap<Box<str>, Entry>>,
    version: AtomicI64,
}

impl KeyCache {
    pub fn new(hasher: KeyHasher) -> Self {
        Self {
            hasher,
            entries: RwLock::new(IdMap::default()),
            version: AtomicI64::new(0),
        }
    }

    pub fn hasher(&self) -> &KeyHasher {
        &self.hasher
    }

    /// Authenticates an `Authorization` header value at time `now_ms`.
    pub fn authenticate(
        &self,
        authorization: Option<&str>,
        now_ms: i64,
    ) -> Result<Arc<AuthedKey>, AuthFailure> {
        let value = authorization
            .ok_or(AuthFailure::anonymous(KeyError::Missing))?
            .trim();
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(AuthFailure::anonymous(KeyError::Missing))?;
        self.authenticate_token(token, now_ms)
    }

    /// Authenticates a bare key (the `x-api-key` header of the Anthropic SDKs).
    pub fn authenticate_token(
        &self,
        token: &str,
        now_ms: i64,
    ) -> Result<Arc<AuthedKey>, AuthFailure> {
        let token = token.trim();
        if token.starts_with(TOKEN_PREFIX) {
            return Err(AuthFailure::anonymous(KeyError::WrongKind));
        }
        let parsed = ParsedKey::parse(token).ok_or(AuthFailure::anonymous(KeyError::Malformed))?;
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        let entry = entries
            .get(parsed.id)
            .ok_or(AuthFailure::anonymous(KeyError::Unknown))?;
        let fail = |error| AuthFailure {
            error,
            key_id: Some(entry.authed.key_id.to_string()),
            account_id: Some(entry.authed.account_id.to_string()),
        };
        if entry.status == KeyStatus::Deleted {
            return Err(fail(KeyError::Revoked));
        }
        let current = entry.hash.is_some_and(|h| self.hasher.verify(&parsed, &h));
        let previous = !current
            && entry
                .previous
                .is_some_and(|(h, until)| now_ms < until && self.hasher.verify(&parsed, &h));
        if !current && !previous {
            return Err(fail(KeyError::Unknown));
        }
        if entry.status == KeyStatus::Disabled {
            return Err(fail(KeyError::Disabled));
        }
        if entry.expires_ms.is_some_and(|t| now_ms >= t) {
            return Err(fail(KeyError::Expired));
        }
        if !entry.account_active {
            return Err(fail(KeyError::AccountSuspended));
        }
        Ok(entry.authed.clone())
    }

    /// Applies changed rows from the store; returns how many changed. Reads them a page
    /// at a time, so loading a large key table at start never holds every row at once
    /// (the allocator would keep that peak as resident memory).
    pub async fn refresh(&self, store: &Store) -> Result<usize, StoreError> {
        let mut n = 0;
        loop {
            let since = self.version.load(Ordering::Acquire);
            let rows = store.keys_changed_since(since, REFRESH_PAGE).await?;
            let got = rows.len();
            n += got;
            if got > 0 {
                self.apply(rows);
            }
            if got < REFRESH_PAGE as usize {
                return Ok(n);
            }
        }
    }

    fn apply(&self, rows: Vec<KeyRow>) {
        let mut max = self.version.load(Ordering::Acquire);
        let mut entries = self.entries.write().unwrap_or_else(|p| p.into_inner());
        for row in rows {
            max = max.max(row.version);
            let usable =
                row.status == KeyStatus::Active && row.account_active && row.hash.is_some();
            // One token for the key's whole usable life, carried across edits (new limits,
            // a rotation), so every request that started under it is cut when it ends.
            let revoked = match entries.get(row.id.as_str()) {
                Some(old) if !old.authed.revoked.is_cancelled() => old.authed.revoked.clone(),
                _ => tokio_util::sync::CancellationToken::new(),
            };
            if !usable {
                revoked.cancel();
            }
            let authed = Arc::new(AuthedKey {
                key_id: Arc::from(row.id.as_str()),
                account_id: Arc::from(row.account_id),
                allowed_models: row.allowed_models,
                spend_limit_nanos: row.spend_limit_nanos,
                allowed_regions: effective_regions(row.allowed_regions, row.account_regions),
                limits: row.quotas,
                revoked,
            });
            let previous = row.previous_hash.zip(row.previous_expires_ms);
            entries.insert(
                row.id.into_boxed_str(),
                Entry {
                    hash: row.hash,
                    previous,
                    status: row.status,
                    account_active: row.account_active,
                    expires_ms: row.expires_ms,
                    authed,
                },
            );
        }
        self.version.store(max, Ordering::Release);
    }
}

#[cfg(test)]
mod revocation_tests {
    use super::*;
    use crate::store::KeyRow;

    fn row(status: KeyStatus, version: i64) -> KeyRow {
        KeyRow {
            id: "k1".into(),
            account_id: "a1".into(),
            hash: Some(KeyHash([1; 32])),
            previous_hash: None,
            previous_expires_ms: None,
            status,
            account_active: true,
            expires_ms: None,
            allowed_models: None,
            spend_limit_nanos: None,
            allowed_regions: None,
            account_regions: None,
            quotas: Default::default(),
            version,
        }
    }

    #[test]
    fn requests_started_before_an_edit_are_still_cut_when_the_key_is_disabled() {
        let cache = KeyCache::new(KeyHasher::new(&[7u8; 32]));
        cache.apply(vec![row(KeyStatus::Active, 1)]);
        let first = cache.entries.read().unwrap()["k1"].authed.clone();
        // An edit (new limits, a rotation) replaces the entry but keeps the token.
        cache.apply(vec![row(KeyStatus::Active, 2)]);
        assert!(!first.revoked.is_cancelled());
        cache.apply(vec![row(KeyStatus::Disabled, 3)]);
        assert!(
            first.revoked.is_cancelled(),
            "the request from before the edit is cut"
        );
        // Enabled again: a fresh token for the new requests.
        cache.apply(vec![row(KeyStatus::Active, 4)]);
        let again = cache.entries.read().unwrap()["k1"].authed.clone();
        assert!(!again.revoked.is_cancelled());
    }
}
