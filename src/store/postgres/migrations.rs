//! PostgreSQL schema migrations, applied in order exactly once. The SQL lives in
//! `migrations/postgres/NNNN.sql`; never edit a shipped file (its checksum is recorded and an
//! edited one is refused at start): append. Entry N means what SQLite's entry N means,
//! written for PostgreSQL: BIGINT integers, BYTEA blobs, BOOLEAN flags, identity columns and a
//! sequence where SQLite has `rowid`, plpgsql functions where it has trigger bodies.

pub const MIGRATIONS: &[&str] = &[
    // 1: accounts, keys, usage records (metadata only: no column can hold content).
    //    `api_keys_version_seq` numbers key changes (the key cache polls by version);
    //    `usage_records.seq` is the insertion order SQLite keeps as `rowid`.
    include_str!("../../../migrations/postgres/0001.sql"),
    // 2: users, roles, sessions, management tokens, audit log, security events, the key
    //    lifecycle (expiry, allowed models, limits, rotation grace) and per-key usage rollups
    //    maintained by a trigger, so key statistics never scan the usage log. The trigger
    //    runs once per INSERT statement over its transition table (only the rows actually
    //    inserted: a skipped duplicate counts nothing) and upserts in key order, so
    //    concurrent batches lock rollup rows in the same order.
    include_str!("../../../migrations/postgres/0002.sql"),
    // 3: usage rollups per minute, hour and day × account × key × model, maintained by a
    //    trigger on insert (so journal replays never double-count), for analytics that
    //    never scan the per-request log; and an index for retention purges. Buckets are
    //    integer arithmetic on the *_ms columns, exactly as in SQLite.
    include_str!("../../../migrations/postgres/0003.sql"),
    // 4: billing — an opaque billing id per account (the ledger never names the account, so
    //    it survives account deletion pseudonymised), the hash-chained append-only ledger,
    //    and the cursor of usage already posted to it (by `usage_records.seq`, so late
    //    records are never missed or posted twice).
    include_str!("../../../migrations/postgres/0004.sql"),
    // 5: how many upstream attempts served each request (failover).
    include_str!("../../../migrations/postgres/0005.sql"),
    // 6: jurisdictions — a key may be restricted to provider regions; each record keeps
    //    the region that processed it.
    include_str!("../../../migrations/postgres/0006.sql"),
    // 7: an account may be restricted to provider regions too (its keys inherit it).
    include_str!("../../../migrations/postgres/0007.sql"),
    // 8: providers managed through the operator API. `settings` is the provider's
    //    non-secret config as JSON; `credential` its API key sealed with AES-256-GCM under
    //    the master key (never plaintext). `providers_version` counts changes so every
    //    instance notices one within a second.
    include_str!("../../../migrations/postgres/0008.sql"),
    // 9: account-wide rate limits (requests and tokens per minute), set by operators.
    include_str!("../../../migrations/postgres/0009.sql"),
    // 10: the version of the operator's privacy policy each user last acknowledged (NULL:
    //     none yet); the console asks again when the configured version differs.
    include_str!("../../../migrations/postgres/0010.sql"),
    // 11: nothing here (SQLite's 11 replaced its per-row rollup triggers with per-batch
    //     upserts, which PostgreSQL's statement-level triggers already are); kept so both
    //     lists number the same change alike.
    include_str!("../../../migrations/postgres/0011.sql"),
    // 12: no query reads usage records by key (key figures come from the rollups), so the
    //     (key_id, started_ms) index only cost an index write per record.
    include_str!("../../../migrations/postgres/0012.sql"),
    // 13: running sums behind balances, which the budget tracker reads every second:
    //     each billing id's ledger total, kept by a trigger on append, and usage not yet posted,
    //     summed per account by a statement trigger on insert (triggers, so an instance
    //     still on older code keeps them right during a rolling upgrade). Balances and the posting
    //     read one row per account instead of the whole ledger and every record since the
    //     last posting. Seeded while holding the ledger and posting locks exclusively (as
    //     posting does), so an append or a batch committing meanwhile counts exactly once.
    include_str!("../../../migrations/postgres/0013.sql"),
    // 14: invitations: joining an account needs the invitee's consent. Only the token's
    //     keyed hash is kept; rows go when accepted, revoked or expired, and with the account.
    include_str!("../../../migrations/postgres/0014.sql"),
    // 15: names and emails sort by byte, as on SQLite, so both stores share their queries.
    include_str!("../../../migrations/postgres/0015.sql"),
    // 16: every kind of token billed at its own price: cache writes (5-minute and 1-hour)
    //     and reasoning, per record and in the rollups (the rollup trigger counts them).
    include_str!("../../../migrations/postgres/0016.sql"),
    // 17: alerts: an account's thresholds (what fired in which period, so each crossing
    //     alerts once across instances), the delivery log of webhooks and emails (metadata
    //     only, retried with backoff), and the privacy-policy versions users were told of.
    include_str!("../../../migrations/postgres/0017.sql"),
    // 18: when each key's usage total and each billing id's ledger total last changed
    //     (stamped by the rollup and ledger triggers, on the database clock), so the budget
    //     sync re-reads only the accounts and keys whose figures moved, not the whole
    //     tenant base every second.
    include_str!("../../../migrations/postgres/0018.sql"),
    // 19: usage rollups per hour and day × account × endpoint, folded with the others, so
    //     a breakdown by endpoint reads rollups (and the records only for the partial
    //     hours at its edges), not every record of its range; seeded from the records kept.
    include_str!("../../../migrations/postgres/0019.sql"),
];
