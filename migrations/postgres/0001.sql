
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
    