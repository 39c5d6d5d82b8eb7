//! PostgreSQL schema migrations, applied in order exactly once. Never edit a shipped entry;
//! append. Entry N means what SQLite's entry N means (`store/sqlite/migrations.rs`), written
//! for PostgreSQL: BIGINT integers, BYTEA blobs, BOOLEAN flags, identity columns and a
//! sequence where SQLite has `rowid`, plpgsql functions where it has trigger bodies.

pub const MIGRATIONS: &[&str] = &[
    // 1: accounts, keys, usage records (metadata only: no column can hold content).
    //    `api_keys_version_seq` numbers key changes (the key cache polls by version);
    //    `usage_records.seq` is the insertion order SQLite keeps as `rowid`.
    r#"
    CREATE TABLE accounts (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        created_ms  BIGINT NOT NULL
    );
    CREATE SEQUENCE api_keys_version_seq;
    CREATE TABLE api_keys (
        id           TEXT PRIMARY KEY,
        account_id   TEXT NOT NULL REFERENCES accounts(id),
        name         TEXT NOT NULL,
        description  TEXT NOT NULL DEFAULT '',
        secret_hash  BYTEA,
        status       TEXT NOT NULL CHECK (status IN ('active','disabled','deleted')),
        created_ms   BIGINT NOT NULL,
        version      BIGINT NOT NULL
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
        started_ms          BIGINT NOT NULL,
        finished_ms         BIGINT NOT NULL,
        status              BIGINT NOT NULL,
        error_kind          TEXT,
        stream              BOOLEAN NOT NULL,
        input_tokens        BIGINT NOT NULL,
        cached_input_tokens BIGINT NOT NULL,
        output_tokens       BIGINT NOT NULL,
        estimated           BOOLEAN NOT NULL,
        cost_nanos          BIGINT NOT NULL,
        latency_us          BIGINT NOT NULL,
        ttft_us             BIGINT,
        seq                 BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE
    );
    CREATE INDEX usage_account_time ON usage_records(account_id, started_ms);
    CREATE INDEX usage_key_time ON usage_records(key_id, started_ms);
    "#,
    // 2: users, roles, sessions, management tokens, audit log, security events, the key
    //    lifecycle (expiry, allowed models, limits, rotation grace) and per-key usage rollups
    //    maintained by a trigger, so key statistics never scan the usage log. The trigger
    //    runs once per INSERT statement over its transition table (only the rows actually
    //    inserted: a skipped duplicate counts nothing) and upserts in key order, so
    //    concurrent batches lock rollup rows in the same order.
    r#"
    ALTER TABLE accounts ADD COLUMN status TEXT NOT NULL DEFAULT 'active';
    ALTER TABLE api_keys ADD COLUMN allowed_models TEXT;
    ALTER TABLE api_keys ADD COLUMN expires_ms BIGINT;
    ALTER TABLE api_keys ADD COLUMN rpm BIGINT;
    ALTER TABLE api_keys ADD COLUMN tpm BIGINT;
    ALTER TABLE api_keys ADD COLUMN max_concurrent BIGINT;
    ALTER TABLE api_keys ADD COLUMN spend_limit_nanos BIGINT;
    ALTER TABLE api_keys ADD COLUMN spend_limit_period TEXT;
    ALTER TABLE api_keys ADD COLUMN previous_hash BYTEA;
    ALTER TABLE api_keys ADD COLUMN previous_expires_ms BIGINT;
    ALTER TABLE api_keys ADD COLUMN updated_ms BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE api_keys ADD COLUMN deleted_ms BIGINT;
    CREATE TABLE users (
        id            TEXT PRIMARY KEY,
        email         TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        is_operator   BOOLEAN NOT NULL DEFAULT false,
        created_ms    BIGINT NOT NULL
    );
    CREATE TABLE memberships (
        account_id TEXT NOT NULL REFERENCES accounts(id),
        user_id    TEXT NOT NULL REFERENCES users(id),
        role       TEXT NOT NULL CHECK (role IN ('owner','member','viewer')),
        created_ms BIGINT NOT NULL,
        PRIMARY KEY (account_id, user_id)
    );
    CREATE INDEX memberships_user ON memberships(user_id);
    CREATE TABLE sessions (
        token_hash BYTEA PRIMARY KEY,
        user_id    TEXT NOT NULL REFERENCES users(id),
        csrf_hash  BYTEA NOT NULL,
        created_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL
    );
    CREATE TABLE mgmt_tokens (
        id           TEXT PRIMARY KEY,
        account_id   TEXT REFERENCES accounts(id),
        role         TEXT NOT NULL CHECK (role IN ('owner','member','viewer','operator')),
        name         TEXT NOT NULL,
        secret_hash  BYTEA,
        created_by   TEXT,
        created_ms   BIGINT NOT NULL,
        last_used_ms BIGINT,
        status       TEXT NOT NULL DEFAULT 'active'
    );
    CREATE TABLE audit_log (
        id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        ts_ms      BIGINT NOT NULL,
        account_id TEXT,
        actor_kind TEXT NOT NULL,
        actor_id   TEXT,
        action     TEXT NOT NULL,
        target_id  TEXT,
        client_ip  TEXT
    );
    CREATE INDEX audit_account ON audit_log(account_id, id);
    CREATE TABLE security_events (
        bucket_ms  BIGINT NOT NULL,
        kind       TEXT NOT NULL,
        key_id     TEXT NOT NULL DEFAULT '',
        client_ip  TEXT NOT NULL DEFAULT '',
        account_id TEXT,
        count      BIGINT NOT NULL,
        PRIMARY KEY (bucket_ms, kind, key_id, client_ip)
    );
    CREATE INDEX security_account ON security_events(account_id, bucket_ms);
    CREATE TABLE key_usage_hourly (
        key_id        TEXT NOT NULL,
        hour_ms       BIGINT NOT NULL,
        requests      BIGINT NOT NULL,
        input_tokens  BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        cost_nanos    BIGINT NOT NULL,
        PRIMARY KEY (key_id, hour_ms)
    );
    CREATE TABLE key_usage_totals (
        key_id        TEXT PRIMARY KEY,
        requests      BIGINT NOT NULL,
        input_tokens  BIGINT NOT NULL,
        output_tokens BIGINT NOT NULL,
        cost_nanos    BIGINT NOT NULL,
        last_used_ms  BIGINT NOT NULL
    );
    INSERT INTO key_usage_hourly
        SELECT key_id, (started_ms / 3600000) * 3600000, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost_nanos)
        FROM usage_records GROUP BY 1, 2;
    INSERT INTO key_usage_totals
        SELECT key_id, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost_nanos), MAX(started_ms)
        FROM usage_records GROUP BY key_id;
    CREATE FUNCTION usage_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO key_usage_hourly AS h (key_id, hour_ms, requests, input_tokens, output_tokens, cost_nanos)
            SELECT key_id, (started_ms / 3600000) * 3600000, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost_nanos)
            FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (key_id, hour_ms) DO UPDATE SET
            requests = h.requests + excluded.requests,
            input_tokens = h.input_tokens + excluded.input_tokens,
            output_tokens = h.output_tokens + excluded.output_tokens,
            cost_nanos = h.cost_nanos + excluded.cost_nanos;
        INSERT INTO key_usage_totals AS t (key_id, requests, input_tokens, output_tokens, cost_nanos, last_used_ms)
            SELECT key_id, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost_nanos), MAX(started_ms)
            FROM new_rows GROUP BY 1 ORDER BY 1
        ON CONFLICT (key_id) DO UPDATE SET
            requests = t.requests + excluded.requests,
            input_tokens = t.input_tokens + excluded.input_tokens,
            output_tokens = t.output_tokens + excluded.output_tokens,
            cost_nanos = t.cost_nanos + excluded.cost_nanos,
            last_used_ms = GREATEST(t.last_used_ms, excluded.last_used_ms);
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER usage_rollup AFTER INSERT ON usage_records
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION usage_rollup();
    "#,
    // 3: usage rollups per minute, hour and day × account × key × model, maintained by a
    //    trigger on insert (so journal replays never double-count), for analytics that
    //    never scan the per-request log; and an index for retention purges. Buckets are
    //    integer arithmetic on the *_ms columns, exactly as in SQLite.
    r#"
    CREATE TABLE usage_rollups (
        account_id          TEXT NOT NULL,
        granularity         TEXT NOT NULL CHECK (granularity IN ('minute','hour','day')),
        bucket_ms           BIGINT NOT NULL,
        key_id              TEXT NOT NULL,
        model               TEXT NOT NULL,
        requests            BIGINT NOT NULL,
        input_tokens        BIGINT NOT NULL,
        cached_input_tokens BIGINT NOT NULL,
        output_tokens       BIGINT NOT NULL,
        cost_nanos          BIGINT NOT NULL,
        estimated_requests  BIGINT NOT NULL,
        error_requests      BIGINT NOT NULL,
        PRIMARY KEY (account_id, granularity, bucket_ms, key_id, model)
    );
    CREATE INDEX usage_rollups_bucket ON usage_rollups(granularity, bucket_ms);
    CREATE INDEX usage_started ON usage_records(started_ms);
    INSERT INTO usage_rollups
        SELECT u.account_id, g.name, (u.started_ms / g.ms) * g.ms, u.key_id, COALESCE(u.model, ''),
               COUNT(*), SUM(u.input_tokens), SUM(u.cached_input_tokens), SUM(u.output_tokens), SUM(u.cost_nanos),
               SUM(CASE WHEN u.estimated THEN 1 ELSE 0 END), SUM(CASE WHEN u.status >= 400 THEN 1 ELSE 0 END)
        FROM usage_records u
             CROSS JOIN (VALUES ('minute', 60000::BIGINT), ('hour', 3600000::BIGINT), ('day', 86400000::BIGINT)) AS g(name, ms)
        GROUP BY 1, 2, 3, 4, 5;
    CREATE FUNCTION usage_rollups_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO usage_rollups AS r (account_id, granularity, bucket_ms, key_id, model, requests, input_tokens,
                                        cached_input_tokens, output_tokens, cost_nanos, estimated_requests, error_requests)
            SELECT n.account_id, g.name, (n.started_ms / g.ms) * g.ms, n.key_id, COALESCE(n.model, ''),
                   COUNT(*), SUM(n.input_tokens), SUM(n.cached_input_tokens), SUM(n.output_tokens), SUM(n.cost_nanos),
                   SUM(CASE WHEN n.estimated THEN 1 ELSE 0 END), SUM(CASE WHEN n.status >= 400 THEN 1 ELSE 0 END)
            FROM new_rows n
                 CROSS JOIN (VALUES ('minute', 60000::BIGINT), ('hour', 3600000::BIGINT), ('day', 86400000::BIGINT)) AS g(name, ms)
            GROUP BY 1, 2, 3, 4, 5 ORDER BY 1, 2, 3, 4, 5
        ON CONFLICT (account_id, granularity, bucket_ms, key_id, model) DO UPDATE SET
            requests = r.requests + excluded.requests,
            input_tokens = r.input_tokens + excluded.input_tokens,
            cached_input_tokens = r.cached_input_tokens + excluded.cached_input_tokens,
            output_tokens = r.output_tokens + excluded.output_tokens,
            cost_nanos = r.cost_nanos + excluded.cost_nanos,
            estimated_requests = r.estimated_requests + excluded.estimated_requests,
            error_requests = r.error_requests + excluded.error_requests;
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER usage_rollups_insert AFTER INSERT ON usage_records
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION usage_rollups_insert();
    "#,
    // 4: billing — an opaque billing id per account (the ledger never names the account, so
    //    it survives account deletion pseudonymised), the hash-chained append-only ledger,
    //    and the cursor of usage already posted to it (by `usage_records.seq`, so late
    //    records are never missed or posted twice).
    r#"
    ALTER TABLE accounts ADD COLUMN billing_id TEXT;
    UPDATE accounts SET billing_id = 'bill_' || substr(replace(gen_random_uuid()::text, '-', ''), 1, 20)
        WHERE billing_id IS NULL;
    CREATE UNIQUE INDEX accounts_billing ON accounts(billing_id);
    CREATE TABLE ledger (
        seq             BIGINT PRIMARY KEY,
        ts_ms           BIGINT NOT NULL,
        billing_id      TEXT NOT NULL,
        kind            TEXT NOT NULL CHECK (kind IN ('credit','usage','adjustment')),
        amount_nanos    BIGINT NOT NULL,
        period_start_ms BIGINT,
        period_end_ms   BIGINT,
        memo            TEXT NOT NULL DEFAULT '',
        prev_hash       TEXT NOT NULL,
        hash            TEXT NOT NULL
    );
    CREATE INDEX ledger_billing ON ledger(billing_id, seq);
    CREATE TABLE billing_cursor (
        id          BIGINT PRIMARY KEY CHECK (id = 1),
        posted_seq  BIGINT NOT NULL,
        posted_ms   BIGINT NOT NULL
    );
    INSERT INTO billing_cursor VALUES (1, 0, 0);
    "#,
    // 5: how many upstream attempts served each request (failover).
    r#"
    ALTER TABLE usage_records ADD COLUMN attempts BIGINT NOT NULL DEFAULT 1;
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
        credential  BYTEA,
        created_ms  BIGINT NOT NULL,
        updated_ms  BIGINT NOT NULL
    );
    CREATE TABLE providers_version (
        id       BIGINT PRIMARY KEY CHECK (id = 1),
        version  BIGINT NOT NULL
    );
    INSERT INTO providers_version VALUES (1, 0);
    "#,
    // 9: account-wide rate limits (requests and tokens per minute), set by operators.
    r#"
    ALTER TABLE accounts ADD COLUMN rpm BIGINT;
    ALTER TABLE accounts ADD COLUMN tpm BIGINT;
    "#,
    // 10: the version of the operator's privacy policy each user last acknowledged (NULL:
    //     none yet); the console asks again when the configured version differs.
    r#"
    ALTER TABLE users ADD COLUMN privacy_seen_version TEXT;
    "#,
    // 11: nothing here (SQLite's 11 replaced its per-row rollup triggers with per-batch
    //     upserts, which PostgreSQL's statement-level triggers already are); kept so both
    //     lists number the same change alike.
    r#"
    SELECT 1;
    "#,
    // 12: no query reads usage records by key (key figures come from the rollups), so the
    //     (key_id, started_ms) index only cost an index write per record.
    r#"
    DROP INDEX usage_key_time;
    "#,
    // 13: running sums behind balances, which the budget tracker reads every second:
    //     each billing id's ledger total, kept by a trigger on append, and usage not yet posted,
    //     summed per account by a statement trigger on insert (triggers, so an instance
    //     still on older code keeps them right during a rolling upgrade). Balances and the posting
    //     read one row per account instead of the whole ledger and every record since the
    //     last posting. Seeded while holding the ledger and posting locks exclusively (as
    //     posting does), so an append or a batch committing meanwhile counts exactly once.
    r#"
    SELECT pg_advisory_xact_lock(7597136565108146179), pg_advisory_xact_lock(7597136565108146180);
    CREATE TABLE ledger_totals (
        billing_id    TEXT PRIMARY KEY,
        amount_nanos  BIGINT NOT NULL
    );
    INSERT INTO ledger_totals (billing_id, amount_nanos)
        SELECT billing_id, SUM(amount_nanos) FROM ledger GROUP BY billing_id;
    CREATE FUNCTION ledger_totals_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO ledger_totals AS t (billing_id, amount_nanos) VALUES (NEW.billing_id, NEW.amount_nanos)
        ON CONFLICT (billing_id) DO UPDATE SET amount_nanos = t.amount_nanos + excluded.amount_nanos;
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER ledger_totals_insert AFTER INSERT ON ledger
        FOR EACH ROW EXECUTE FUNCTION ledger_totals_insert();
    CREATE TABLE usage_unposted (
        account_id  TEXT PRIMARY KEY,
        requests    BIGINT NOT NULL,
        cost_nanos  BIGINT NOT NULL
    );
    INSERT INTO usage_unposted (account_id, requests, cost_nanos)
        SELECT account_id, COUNT(*), SUM(cost_nanos) FROM usage_records
        WHERE seq > (SELECT posted_seq FROM billing_cursor WHERE id = 1) GROUP BY account_id;
    CREATE FUNCTION usage_unposted_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO usage_unposted AS p (account_id, requests, cost_nanos)
            SELECT account_id, COUNT(*), SUM(cost_nanos) FROM new_rows GROUP BY 1 ORDER BY 1
        ON CONFLICT (account_id) DO UPDATE SET
            requests = p.requests + excluded.requests,
            cost_nanos = p.cost_nanos + excluded.cost_nanos;
        RETURN NULL;
    END
    $$;
    CREATE TRIGGER usage_unposted_insert AFTER INSERT ON usage_records
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION usage_unposted_insert();
    "#,
    // 14: invitations: joining an account needs the invitee's consent. Only the token's
    //     keyed hash is kept; rows go when accepted, revoked or expired, and with the account.
    r#"
    CREATE TABLE invitations (
        id          TEXT PRIMARY KEY,
        account_id  TEXT NOT NULL REFERENCES accounts(id),
        email       TEXT NOT NULL,
        role        TEXT NOT NULL CHECK (role IN ('owner','member','viewer')),
        token_hash  BYTEA NOT NULL UNIQUE,
        invited_by  TEXT,
        created_ms  BIGINT NOT NULL,
        expires_ms  BIGINT NOT NULL
    );
    CREATE INDEX invitations_email ON invitations(email);
    CREATE INDEX invitations_account ON invitations(account_id);
    "#,
    // 15: names and emails sort by byte, as on SQLite, so both stores share their queries.
    r#"
    ALTER TABLE providers ALTER COLUMN name TYPE TEXT COLLATE "C";
    ALTER TABLE accounts ALTER COLUMN name TYPE TEXT COLLATE "C";
    ALTER TABLE users ALTER COLUMN email TYPE TEXT COLLATE "C";
    ALTER TABLE security_events ALTER COLUMN kind TYPE TEXT COLLATE "C";
    "#,
];
