//! How both backends encode domain values in columns: lists as JSON text, hashes as
//! 32-byte blobs, unsigned counters as `i64`, spend limits as nano-dollars, and which
//! database errors mean "already exists". No SQL and nothing backend-specific belongs here.

use crate::billing::Money;
use crate::keys::KeyHash;
use crate::store::{KeyLimits, StoreError, UsageStats};

/// A stored 32-byte hash; anything else (NULL, a wrong length) reads as none.
pub(super) fn hash_of(blob: Option<Vec<u8>>) -> Option<KeyHash> {
    blob.and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .map(KeyHash)
}

pub(super) fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Whether a database error is a uniqueness violation (maps to `Conflict`).
pub(super) fn conflict(e: sqlx::Error, what: &'static str) -> StoreError {
    match e {
        sqlx::Error::Database(d) if d.is_unique_violation() => StoreError::Conflict(what),
        e => StoreError::Db(e),
    }
}

/// A list of model ids or regions as stored: JSON text, NULL for "any".
pub(super) fn models_json(models: &Option<Vec<String>>) -> Option<String> {
    models.as_ref().and_then(|m| serde_json::to_string(m).ok())
}

pub(super) fn models_of(text: Option<String>) -> Option<Vec<String>> {
    text.and_then(|t| serde_json::from_str(&t).ok())
}

/// A stored limit: `None` (or a non-positive value) means unlimited.
pub(super) fn positive(v: Option<i64>) -> Option<u64> {
    v.and_then(|n| u64::try_from(n).ok()).filter(|n| *n > 0)
}

pub(super) fn stats(requests: i64, input: i64, output: i64, cost: i64) -> UsageStats {
    UsageStats {
        requests,
        input_tokens: input,
        output_tokens: output,
        cost_nanos: cost,
        cost_usd: Money::from_nanos(cost).to_string(),
    }
}

pub(super) fn spend_limit_usd(nanos: Option<i64>) -> Option<String> {
    nanos.map(|n| Money::from_nanos(n).to_string())
}

/// Parses a USD spend limit into nano-dollars, naming the field on error.
pub(super) fn spend_nanos(limits: &KeyLimits) -> Result<Option<i64>, StoreError> {
    limits
        .spend_limit_usd
        .as_deref()
        .map(|t| {
            Money::parse_usd(t)
                .map(Money::nanos)
                .map_err(|e| StoreError::invalid("limits.spend_limit_usd", e))
        })
        .transpose()
}
