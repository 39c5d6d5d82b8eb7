
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
    