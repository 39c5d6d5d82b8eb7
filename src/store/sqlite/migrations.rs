//! SQLite schema migrations, applied in order exactly once. The SQL lives in
//! `migrations/sqlite/NNNN.sql`; never edit a shipped file (its checksum is recorded and an
//! edited one is refused at start): append.

pub const MIGRATIONS: &[&str] = &[
    // 1: accounts, keys, usage records (metadata only: no column can hold content).
    include_str!("../../../migrations/sqlite/0001.sql"),
    // 2: users, roles, sessions, management tokens, audit log, security events, the key
    //    lifecycle (expiry, allowed models, limits, rotation grace) and per-key usage rollups
    //    maintained by a trigger, so key statistics never scan the usage log.
    include_str!("../../../migrations/sqlite/0002.sql"),
    // 3: usage rollups per minute, hour and day × account × key × model, maintained by a
    //    trigger on insert (so journal replays never double-count), for analytics that
    //    never scan the per-request log; and an index for retention purges.
    include_str!("../../../migrations/sqlite/0003.sql"),
    // 4: billing — an opaque billing id per account (the ledger never names the account, so
    //    it survives account deletion pseudonymised), the hash-chained append-only ledger,
    //    and the cursor of usage already posted to it (by insertion order, so late records
    //    are never missed or posted twice).
    include_str!("../../../migrations/sqlite/0004.sql"),
    // 5: how many upstream attempts served each request (failover).
    include_str!("../../../migrations/sqlite/0005.sql"),
    // 6: jurisdictions — a key may be restricted to provider regions; each record keeps
    //    the region that processed it.
    include_str!("../../../migrations/sqlite/0006.sql"),
    // 7: an account may be restricted to provider regions too (its keys inherit it).
    include_str!("../../../migrations/sqlite/0007.sql"),
    // 8: providers managed through the operator API. `settings` is the provider's
    //    non-secret config as JSON; `credential` its API key sealed with AES-256-GCM under
    //    the master key (never plaintext). `providers_version` counts changes so every
    //    instance notices one within a second.
    include_str!("../../../migrations/sqlite/0008.sql"),
    // 9: account-wide rate limits (requests and tokens per minute), set by operators.
    include_str!("../../../migrations/sqlite/0009.sql"),
    // 10: the version of the operator's privacy policy each user last acknowledged (NULL:
    //     none yet); the console asks again when the configured version differs.
    include_str!("../../../migrations/sqlite/0010.sql"),
    // 11: rollups move from per-row triggers to one aggregated upsert per batch, run by
    //     the usage insert in the same transaction (see `sqlite/usage.rs`): per row, the
    //     triggers cost five upserts and a temporary table, most of the gateway's CPU.
    include_str!("../../../migrations/sqlite/0011.sql"),
    // 12: no query reads usage records by key (key figures come from the rollups), so the
    //     (key_id, started_ms) index only cost an index write per record.
    include_str!("../../../migrations/sqlite/0012.sql"),
    // 13: running sums behind balances, which the budget tracker reads every second:
    //     each billing id's ledger total, kept by a trigger on append, and usage not yet posted,
    //     summed per account by the usage insert in the same transaction. Balances and the
    //     posting read one row per account instead of the whole ledger and every record
    //     since the last posting. Seeded from the ledger and from the records after the
    //     posting cursor.
    include_str!("../../../migrations/sqlite/0013.sql"),
    // 14: running sums stay INTEGER. SQLite turns an overflowing `a + b` into a REAL
    //     silently (SUM() at least raises); a sum that no longer fits must fail its
    //     statement instead, so the usage writer can set the record that overflowed aside
    //     (the quarantine) rather than store a float that breaks every later read.
    include_str!("../../../migrations/sqlite/0014.sql"),
    // 15: invitations: joining an account needs the invitee's consent. Only the token's
    //     keyed hash is kept; rows go when accepted, revoked or expired, and with the account.
    include_str!("../../../migrations/sqlite/0015.sql"),
    // 16: every kind of token billed at its own price: cache writes (5-minute and 1-hour)
    //     and reasoning, per record and in the rollups.
    include_str!("../../../migrations/sqlite/0016.sql"),
    // 17: alerts: an account's thresholds (what fired in which period, so each crossing
    //     alerts once across instances), the delivery log of webhooks and emails (metadata
    //     only, retried with backoff), and the privacy-policy versions users were told of.
    include_str!("../../../migrations/sqlite/0017.sql"),
    // 18: when each key's usage total and each billing id's ledger total last changed
    //     (the writer stamps key totals, a trigger the ledger totals), so the budget
    //     sync re-reads only the accounts and keys whose figures moved, not the whole
    //     tenant base every second.
    include_str!("../../../migrations/sqlite/0018.sql"),
    // 19: usage rollups per hour and day × account × endpoint, folded with the others, so
    //     a breakdown by endpoint reads rollups (and the records only for the partial
    //     hours at its edges), not every record of its range; seeded from the records kept.
    include_str!("../../../migrations/sqlite/0019.sql"),
];
