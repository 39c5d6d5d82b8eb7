//! Access keys: format, generation, keyed hashing, the server secret, and authentication.
//!
//! A key is `ig-<public id>-<secret>`. Only the public id and an HMAC-SHA-256 of the
//! secret (keyed with the server secret) are stored; the plaintext exists once, when
//! it is created. Authentication is an in-memory lookup refreshed from the store in
//! the background: the request path never awaits the database. Management tokens,
//! rotation and scopes come later and build on these types.

mod cache;
mod format;

pub use cache::{AuthedKey, KeyCache};
pub use format::{KeyHash, KeyHasher, NewKey, ParsedKey, load_or_create_secret, random_id};

/// Why a presented key was refused. Every variant is a 401 to the client.
#[derive(Debug, thiserror::Error, Clone, Copy, PartialEq, Eq)]
pub enum KeyError {
    #[error("missing access key: send `Authorization: Bearer ig-…`")]
    Missing,
    #[error("malformed access key")]
    Malformed,
    #[error("unknown or deleted access key")]
    Unknown,
    #[error("this access key is disabled")]
    Disabled,
}

impl KeyError {
    /// A short, content-free name for logs and the security-event trail.
    pub fn kind(self) -> &'static str {
        match self {
            KeyError::Missing => "key_missing",
            KeyError::Malformed => "key_malformed",
            KeyError::Unknown => "key_unknown",
            KeyError::Disabled => "key_disabled",
        }
    }
}
