
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
    