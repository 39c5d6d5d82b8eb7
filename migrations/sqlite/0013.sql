
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
    