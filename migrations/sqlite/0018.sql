
    ALTER TABLE key_usage_totals ADD COLUMN changed_ms INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX key_usage_totals_changed ON key_usage_totals(changed_ms);
    ALTER TABLE ledger_totals ADD COLUMN changed_ms INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX ledger_totals_changed ON ledger_totals(changed_ms);
    DROP TRIGGER ledger_totals_insert;
    CREATE TRIGGER ledger_totals_insert AFTER INSERT ON ledger BEGIN
        INSERT INTO ledger_totals (billing_id, amount_nanos, changed_ms)
            VALUES (new.billing_id, new.amount_nanos, CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
        ON CONFLICT (billing_id) DO UPDATE SET
            amount_nanos = amount_nanos + excluded.amount_nanos,
            changed_ms = excluded.changed_ms;
    END;
