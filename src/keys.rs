//! Access keys: format, generation, keyed hashing, the server secret, and authentication.
//!
//! A key is `ig-<public id>-<secret>`. Only the public id and an HMAC-SHA-256 of the
//! secret (keyed with the server secret) are stored; the plaintext exists once, when
//! it is created. Authentication is an in-memory lookup refreshed from the store in
//! the background: the request path never awaits the database. Management tokens
//! (`igm-…`) share the format and hashing but are checked by the management API only.

mod cache;
mod events;
mod format;

pub use cache::{AuthFailure, AuthedKey, KeyCache};
pub use events::{SecurityEvents, spawn_flusher, truncate_ip};
pub use format::{
    KEY_PREFIX, KeyHash, KeyHasher, NewKey, ParsedKey, TOKEN_PREFIX, hex, load_or_create_secret,
    push_hex, random_id,
};

/// Why a presented key was refused. Every variant is a 401 to the client.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    #[error("missing access key: send `Authorization: Bearer ig-…`")]
    Missing,
    #[error("malformed access key")]
    Malformed,
    #[error("invalid access key")]
    Unknown,
    #[error("this access key is disabled")]
    Disabled,
    #[error("this access key has expired")]
    Expired,
    #[error("this access key has been revoked")]
    Revoked,
    #[error("the account that owns this access key is suspended")]
    AccountSuspended,
    #[error("management tokens (igm-…) cannot call the inference API; use an access key (ig-…)")]
    WrongKind,
}

impl KeyError {
    /// A short, content-free name for logs and the security-event trail.
    pub fn kind(self) -> &'static str {
        match self {
            KeyError::Missing => "key_missing",
            KeyError::Malformed => "key_malformed",
            KeyError::Unknown => "key_unknown",
            KeyError::Disabled => "key_disabled",
            KeyError::Expired => "key_expired",
            KeyError::Revoked => "key_revoked",
            KeyError::AccountSuspended => "account_suspended",
            KeyError::WrongKind => "wrong_credential_kind",
        }
    }
}
