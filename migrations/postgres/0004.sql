
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
    