//! SQLite schema migrations, applied in order exactly once. Never edit a shipped entry; append.

pub const MIGRATIONS: &[&str] = &[
    // 1: accounts, keys, usage records (metadata only: no column can hold content).
    r#"
    CREATE TABLE accounts (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        created_ms  INTEGER NOT NULL
    );
    CREATE TABLE api_keys (
        id           TEXT PRIMARY KEY,
        account_id   TEXT NOT NULL REFERENCES accounts(id),
        name         TEXT NOT NULL,
        description  TEXT NOT NULL DEFAULT '',
        secret_hash  BLOB,
        status       TEXT NOT NULL CHECK (status IN ('active','disabled','deleted')),
        created_ms   INTEGER NOT NULL,
        version      INTEGER NOT NULL
    );
    CREATE INDEX api_keys_version ON api_keys(version);
    CREATE INDEX api_keys_account ON api_keys(account_id);
    CREATE TABLE usage_records (
        request_id          TEXT PRIMARY KEY,
        account_id          TEXT NOT NULL,
        key_id              TEXT NOT NULL,
        endpoint            TEXT NOT NULL,
        model               TEXT,
        provider            TEXT,
        started_ms          INTEGER NOT NULL,
        finished_ms         INTEGER NOT NULL,
        status              INTEGER NOT NULL,
        error_kind          TEXT,
        stream              INTEGER NOT NULL,
        input_tokens        INTEGER NOT NULL,
        cached_input_tokens INTEGER NOT NULL,
        output_tokens       INTEGER NOT NULL,
        estimated           INTEGER NOT NULL,
        cost_nanos          INTEGER NOT NULL,
        latency_us          INTEGER NOT NULL,
        ttft_us             INTEGER
    );
    CREATE INDEX usage_account_time ON usage_records(account_id, started_ms);
    CREATE INDEX usage_key_time ON usage_records(key_id, started_ms);
    "#,
    // 2: users, roles, sessions, management tokens, audit log, security events, the key
    //    lifecycle (expiry, allowed models, limits, rotation grace) and per-key usage rollups
    //    maintained by a trigger, so key statistics never scan the usage log.
    r#"
    ALTER TABLE accounts ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
    ALTER TABLE api_keys ADD COLUMN allowed_models TEXT;
    ALTER TABLE api_keys ADD COLUMN expires_ms INTEGER;
    ALTER TABLE api_keys ADD COLUMN rpm INTEGER;
    ALTER TABLE api_keys ADD COLUMN tpm INTEGER;
    ALTER TABLE api_keys ADD COLUMN max_concurrent INTEGER;
    ALTER TABLE api_keys ADD COLUMN spend_limit_nanos INTEGER;
    ALTER TABLE api_keys ADD COLUMN spend_limit_period TEXT;
    ALTER TABLE api_keys ADD COLUMN previous_hash BLOB;
    ALTER TABLE api_keys ADD COLUMN previous_expires_ms INTEGER;
    ALTER TABLE api_keys ADD COLUMN updated_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE api_keys ADD COLUMN deleted_ms INTEGER;
    CREATE TABLE users (
        id            TEXT PRIMARY KEY,
        email         TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        is_operator   INTEGER NOT NULL DEFAULT 0,
        created_ms    INTEGER NOT NULL
    );
    CREATE TABLE memberships (
        account_id TEXT NOT NULL REFERENCES accounts(id),
        user_id    TEXT NOT NULL REFERENCES users(id),
        role       TEXT NOT NULL CHECK (role IN ('owner','member','viewer')),
        created_ms INTEGER NOT NULL,
        PRIMARY KEY (account_id, user_id)
    );
    CREATE INDEX memberships_user ON memberships(user_id);
    CREATE TABLE sessions (
        token_hash BLOB PRIMARY KEY,
        user_id    TEXT NOT NULL REFERENCES users(id),
        csrf_hash  BLOB NOT NULL,
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL
    );
    CREATE TABLE mgmt_tokens (
        id           TEXT PRIMARY KEY,
        account_id   TEXT REFERENCES accounts(id),
        role         TEXT NOT NULL CHECK (role IN ('owner','member','viewer','operator')),
        name         TEXT NOT NULL,
        secret_hash  BLOB,
        created_by   TEXT,
        created_ms   INTEGER NOT NULL,
        last_used_ms INTEGER,
        status       TEXT NOT NULL DEFAULT 'active'
    );
    CREATE TABLE audit_log (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        ts_ms      INTEGER NOT NULL,
        account_id TEXT,
        actor_kind TEXT NOT NULL,
        actor_id   TEXT,
        action     TEXT NOT NULL,
        target_id  TEXT,
        client_ip  TEXT
    );
    CREATE INDEX audit_account ON audit_log(account_id, id);
    CREATE TABLE security_events (
        bucket_ms  INTEGER NOT NULL,
        kind       TEXT NOT NULL,
        key_id     TEXT NOT NULL DEFAULT '',
        client_ip  TEXT NOT NULL DEFAULT '',
        account_id TEXT,
        count      INTEGER NOT NULL,
        PRIMARY KEY (bucket_ms, kind, key_id, client_ip)
    );
    CREATE INDEX security_account ON security_events(account_id, bucket_ms);
    CREATE TABLE key_usage_hourly (
        key_id        TEXT NOT NULL,
        hour_ms       INTEGER NOT NULL,
        requests      INTEGER NOT NULL,
        input_tokens  INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cost_nanos    INTEGER NOT NULL,
        PRIMARY KEY (key_id, hour_ms)
    );
    CREATE TABLE key_usage_totals (
        key_id        TEXT PRIMARY KEY,
        requests      INTEGER NOT NULL,
        input_tokens  INTEGER NOT NULL,
        output_tokens INTEGER NOT NULL,
        cost_nanos    INTEGER NOT NULL,
        last_used_ms  INTEGER NOT NULL
    );
    INSERT INTO key_usage_hourly
        SELECT key_id, (started_ms / 3600000) * 3600000, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost_nanos)
        FROM usage_records GROUP BY 1, 2;
    INSERT INTO key_usage_totals
        SELECT key_id, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost_nanos), MAX(started_ms)
        FROM usage_records GROUP BY key_id;
    CREATE TRIGGER usage_rollup AFTER INSERT ON usage_records BEGIN
        INSERT INTO key_usage_hourly VALUES
            (NEW.key_id, (NEW.started_ms / 3600000) * 3600000, 1, NEW.input_tokens, NEW.output_tokens, NEW.cost_nanos)
        ON CONFLICT (key_id, hour_ms) DO UPDATE SET
            requests = requests + 1,
            input_tokens = input_tokens + excluded.input_tokens,
            output_tokens = output_tokens + excluded.output_tokens,
            cost_nanos = cost_nanos + excluded.cost_nanos;
        INSERT INTO key_usage_totals VALUES
            (NEW.key_id, 1, NEW.input_tokens, NEW.output_tokens, NEW.cost_nanos, NEW.started_ms)
        ON CONFLICT (key_id) DO UPDATE SET
            requests = requests + 1,
            input_tokens = input_tokens + excluded.input_tokens,
            output_tokens = output_tokens + excluded.output_tokens,
            cost_nanos = cost_nanos + excluded.cost_nanos,
            last_used_ms = MAX(last_used_ms, excluded.last_used_ms);
    END;
    "#,
    // 3: usage rollups per minute, hour and day × account × key × model, maintained by a
    //    trigger on insert (so journal replays never double-count), for analytics that
    //    never scan the per-request log; and an index for retention purges.
    r#"
    CREATE TABLE usage_rollups (
        account_id          TEXT NOT NULL,
        granularity         TEXT NOT NULL CHECK (granularity IN ('minute','hour','day')),
        bucket_ms           INTEGER NOT NULL,
        key_id              TEXT NOT NULL,
        model               TEXT NOT NULL,
        requests            INTEGER NOT NULL,
        input_tokens        INTEGER NOT NULL,
        cached_input_tokens INTEGER NOT NULL,
        output_tokens       INTEGER NOT NULL,
        cost_nanos          INTEGER NOT NULL,
        estimated_requests  INTEGER NOT NULL,
        error_requests      INTEGER NOT NULL,
        PRIMARY KEY (account_id, granularity, bucket_ms, key_id, model)
    );
    CREATE INDEX usage_rollups_bucket ON usage_rollups(granularity, bucket_ms);
    CREATE INDEX usage_started ON usage_records(started_ms);
    INSERT INTO usage_rollups
        SELECT account_id, g.name, (started_ms / g.ms) * g.ms, key_id, COALESCE(model, ''),
               COUNT(*), SUM(input_tokens), SUM(cached_input_tokens), SUM(output_tokens), SUM(cost_nanos),
               SUM(estimated), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END)
        FROM usage_records,
             (SELECT 'minute' AS name, 60000 AS ms UNION ALL SELECT 'hour', 3600000 UNION ALL SELECT 'day', 86400000) g
        GROUP BY 1, 2, 3, 4, 5;
    CREATE TRIGGER usage_rollups_insert AFTER INSERT ON usage_records BEGIN
        INSERT INTO usage_rollups
            SELECT NEW.account_id, g.name, (NEW.started_ms / g.ms) * g.ms, NEW.key_id, COALESCE(NEW.model, ''),
                   1, NEW.input_tokens, NEW.cached_input_tokens, NEW.output_tokens, NEW.cost_nanos,
                   NEW.estimated, CASE WHEN NEW.status >= 400 THEN 1 ELSE 0 END
            FROM (SELECT 'minute' AS name, 60000 AS ms UNION ALL SELECT 'hour', 3600000 UNION ALL SELECT 'day', 86400000) g
            WHERE true
        ON CONFLICT (account_id, granularity, bucket_ms, key_id, model) DO UPDATE SET
            requests = requests + 1,
            input_tokens = input_tokens + excluded.input_tokens,
            cached_input_tokens = cached_input_tokens + excluded.cached_input_tokens,
            output_tokens = output_tokens + excluded.output_tokens,
            cost_nanos = cost_nanos + excluded.cost_nanos,
            estimated_requests = estimated_requests + excluded.estimated_requests,
            error_requests = error_requests + excluded.error_requests;
    END;
    "#,
    // 4: billing — an opaque billing id per account (the ledger never names the account, so
    //    it survives account deletion pseudonymised), the hash-chained append-only ledger,
    //    and the cursor of usage already posted to it (by insertion order, so late records
    //    are never missed or posted twice).
    r#"
    ALTER TABLE accounts ADD COLUMN billing_id TEXT;
    UPDATE accounts SET billing_id = 'bill_' || lower(hex(randomblob(10))) WHERE billing_id IS NULL;
    CREATE UNIQUE INDEX accounts_billing ON accounts(billing_id);
    CREATE TABLE ledger (
        seq             INTEGER PRIMARY KEY,
        ts_ms           INTEGER NOT NULL,
        billing_id      TEXT NOT NULL,
        kind            TEXT NOT NULL CHECK (kind IN ('credit','usage','adjustment')),
        amount_nanos    INTEGER NOT NULL,
        period_start_ms INTEGER,
        period_end_ms   INTEGER,
        memo            TEXT NOT NULL DEFAULT '',
        prev_hash       TEXT NOT NULL,
        hash            TEXT NOT NULL
    );
    CREATE INDEX ledger_billing ON ledger(billing_id, seq);
    CREATE TABLE billing_cursor (
        id             INTEGER PRIMARY KEY CHECK (id = 1),
        posted_rowid   INTEGER NOT NULL,
        posted_ms      INTEGER NOT NULL
    );
    INSERT INTO billing_cursor VALUES (1, 0, 0);
    "#,
    // 5: how many upstream attempts served each request (failover).
    r#"
    ALTER TABLE usage_records ADD COLUMN attempts INTEGER NOT NULL DEFAULT 1;
    "#,
    // 6: jurisdictions — a key may be restricted to provider regions; each record keeps
    //    the region that processed it.
    r#"
    ALTER TABLE api_keys ADD COLUMN allowed_regions TEXT;
    ALTER TABLE usage_records ADD COLUMN region TEXT;
    "#,
    // 7: an account may be restricted to provider regions too (its keys inherit it).
    r#"
    ALTER TABLE accounts ADD COLUMN allowed_regions TEXT;
    "#,
    // 8: providers managed through the operator API. `settings` is the provider's
    //    non-secret config as JSON; `credential` its API key sealed with AES-256-GCM under
    //    the master key (never plaintext). `providers_version` counts changes so every
    //    instance notices one within a second.
    r#"
    CREATE TABLE providers (
        name        TEXT PRIMARY KEY,
        settings    TEXT NOT NULL,
        credential  BLOB,
        created_ms  INTEGER NOT NULL,
        updated_ms  INTEGER NOT NULL
    );
    CREATE TABLE providers_version (
        id       INTEGER PRIMARY KEY CHECK (id = 1),
        version  INTEGER NOT NULL
    );
    INSERT INTO providers_version VALUES (1, 0);
    "#,
    // 9: account-wide rate limits (requests and tokens per minute), set by operators.
    r#"
    ALTER TABLE accounts ADD COLUMN rpm INTEGER;
    ALTER TABLE accounts ADD COLUMN tpm INTEGER;
    "#,
    // 10: the version of the operator's privacy policy each user last acknowledged (NULL:
    //     none yet); the console asks again when the configured version differs.
    r#"
    ALTER TABLE users ADD COLUMN privacy_seen_version TEXT;
    "#,
    // 11: rollups move from per-row triggers to one aggregated upsert per batch, run by
    //     the usage insert in the same transaction (see `sqlite/usage.rs`): per row, the
    //     triggers cost five upserts and a temporary table, most of the gateway's CPU.
    r#"
    DROP TRIGGER usage_rollup;
    DROP TRIGGER usage_rollups_insert;
    "#,
    // 12: no query reads usage records by key (key figures come from the rollups), so the
    //     (key_id, started_ms) index only cost an index write per record.
    r#"
    DROP INDEX usage_key_time;
    "#,
    // 13: running sums behind balances, which the budget tracker reads every second:
    //     each billing id's ledger total, kept by a trigger on append, and usage not yet posted,
    //     summed per account by the usage insert in the same transaction. Balances and the
    //     posting read one row per account instead of the whole ledger and every record
    //     since the last posting. Seeded from the ledger and from the records after the
    //     posting cursor.
    r#"
    CREATE TABLE ledger_totals (
        billing_id    TEXT PRIMARY KEY,
        amount_nanos  INTEGER NOT NULL
    );
    INSERT INTO ledger_totals (billing_id, amount_nanos)
        SELECT billing_id, SUM(amount_nanos) FROM ledger GROUP BY billing_id;
    CREATE TRIGGER ledger_totals_insert AFTER INSERT ON ledger BEGIN
        INSERT INTO ledger_totals (billing_id, amount_nanos) VALUES (new.billing_id, new.amount_nanos)
        ON CONFLICT (billing_id) DO UPDATE SET amount_nanos = amount_nanos + excluded.amount_nanos;
    END;
    CREATE TABLE usage_unposted (
        account_id  TEXT PRIMARY KEY,
        requests    INTEGER NOT NULL,
        cost_nanos  INTEGER NOT NULL
    );
    INSERT INTO usage_unposted (account_id, requests, cost_nanos)
        SELECT account_id, COUNT(*), SUM(cost_nanos) FROM usage_records
        WHERE rowid > (SELECT posted_rowid FROM billing_cursor WHERE id = 1) GROUP BY account_id;
    "#,
    // 14: running sums stay INTEGER. SQLite turns an overflowing `a + b` into a REAL
    //     silently (SUM() at least raises); a sum that no longer fits must fail its
    //     statement instead, so the usage writer can set the record that overflowed aside
    //     (the quarantine) rather than store a float that breaks every later read.
    r#"
    CREATE TRIGGER usage_unposted_integer_insert BEFORE INSERT ON usage_unposted
        WHEN typeof(NEW.requests) <> 'integer' OR typeof(NEW.cost_nanos) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    CREATE TRIGGER usage_unposted_integer_update BEFORE UPDATE ON usage_unposted
        WHEN typeof(NEW.requests) <> 'integer' OR typeof(NEW.cost_nanos) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    CREATE TRIGGER ledger_totals_integer_insert BEFORE INSERT ON ledger_totals
        WHEN typeof(NEW.amount_nanos) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    CREATE TRIGGER ledger_totals_integer_update BEFORE UPDATE ON ledger_totals
        WHEN typeof(NEW.amount_nanos) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    CREATE TRIGGER key_usage_hourly_integer_insert BEFORE INSERT ON key_usage_hourly
        WHEN typeof(NEW.input_tokens) <> 'integer' OR typeof(NEW.output_tokens) <> 'integer' OR typeof(NEW.cost_nanos) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    CREATE TRIGGER key_usage_hourly_integer_update BEFORE UPDATE ON key_usage_hourly
        WHEN typeof(NEW.input_tokens) <> 'integer' OR typeof(NEW.output_tokens) <> 'integer' OR typeof(NEW.cost_nanos) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    CREATE TRIGGER key_usage_totals_integer_insert BEFORE INSERT ON key_usage_totals
        WHEN typeof(NEW.input_tokens) <> 'integer' OR typeof(NEW.output_tokens) <> 'integer' OR typeof(NEW.cost_nanos) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    CREATE TRIGGER key_usage_totals_integer_update BEFORE UPDATE ON key_usage_totals
        WHEN typeof(NEW.input_tokens) <> 'integer' OR typeof(NEW.output_tokens) <> 'integer' OR typeof(NEW.cost_nanos) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    CREATE TRIGGER usage_rollups_integer_insert BEFORE INSERT ON usage_rollups
        WHEN typeof(NEW.input_tokens) <> 'integer' OR typeof(NEW.cached_input_tokens) <> 'integer' OR typeof(NEW.output_tokens) <> 'integer' OR typeof(NEW.cost_nanos) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    CREATE TRIGGER usage_rollups_integer_update BEFORE UPDATE ON usage_rollups
        WHEN typeof(NEW.input_tokens) <> 'integer' OR typeof(NEW.cached_input_tokens) <> 'integer' OR typeof(NEW.output_tokens) <> 'integer' OR typeof(NEW.cost_nanos) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    "#,
    // 15: invitations: joining an account needs the invitee's consent. Only the token's
    //     keyed hash is kept; rows go when accepted, revoked or expired, and with the account.
    r#"
    CREATE TABLE invitations (
        id          TEXT PRIMARY KEY,
        account_id  TEXT NOT NULL REFERENCES accounts(id),
        email       TEXT NOT NULL,
        role        TEXT NOT NULL CHECK (role IN ('owner','member','viewer')),
        token_hash  BLOB NOT NULL UNIQUE,
        invited_by  TEXT,
        created_ms  INTEGER NOT NULL,
        expires_ms  INTEGER NOT NULL
    );
    CREATE INDEX invitations_email ON invitations(email);
    CREATE INDEX invitations_account ON invitations(account_id);
    "#,
];
