//! The queries written once for both stores. Each backend (`sqlite.rs`, `postgres.rs`)
//! includes this folder as its own `shared` module, so every file here compiles against
//! that backend's types and hooks (`DbConn`, `DbRow`, `DbQuery`, `ThisStore`, the locking
//! functions, and dialect constants such as `BYTEWISE`), which it reaches through `super`.

// The backend's types and hooks, for the files below (`super::DbRow` and so on).
#[allow(unused_imports)]
use super::*;

pub(super) mod accounts;
pub(super) mod alerts;
pub(super) mod invitations;
pub(super) mod keys;
pub(super) mod ledger;
pub(super) mod migrations_applied;
pub(super) mod providers;
pub(super) mod rights;
pub(super) mod usage_queries;
