//! Maps keyed by ids the server issues or an operator configures (key ids, account ids,
//! model names), looked up on every request: hashed with foldhash, several times cheaper
//! than std's SipHash on a short id, and seeded per process. A map whose keys a client
//! chooses and inserts freely (addresses, in `limits`) keeps SipHash.

/// A `HashMap` hashed with foldhash; build it with `IdMap::default()`.
pub type IdMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
