
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
    