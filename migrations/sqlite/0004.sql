
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
    