
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
    