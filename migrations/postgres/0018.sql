
    ALTER TABLE key_usage_totals ADD COLUMN changed_ms BIGINT NOT NULL DEFAULT 0;
    CREATE INDEX key_usage_totals_changed ON key_usage_totals(changed_ms);
    ALTER TABLE ledger_totals ADD COLUMN changed_ms BIGINT NOT NULL DEFAULT 0;
    CREATE INDEX ledger_totals_changed ON ledger_totals(changed_ms);
    CREATE OR REPLACE FUNCTION ledger_totals_insert() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO ledger_totals AS t (billing_id, amount_nanos, changed_ms)
            VALUES (NEW.billing_id, NEW.amount_nanos, (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT)
        ON CONFLICT (billing_id) DO UPDATE SET
            amount_nanos = t.amount_nanos + excluded.amount_nanos,
            changed_ms = excluded.changed_ms;
        RETURN NULL;
    END
    $$;
    CREATE OR REPLACE FUNCTION usage_rollup() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO key_usage_hourly AS h (key_id, hour_ms, requests, input_tokens, output_tokens, cost_nanos)
            SELECT key_id, (started_ms / 3600000) * 3600000, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost_nanos)
            FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (key_id, hour_ms) DO UPDATE SET
            requests = h.requests + excluded.requests,
            input_tokens = h.input_tokens + excluded.input_tokens,
            output_tokens = h.output_tokens + excluded.output_tokens,
            cost_nanos = h.cost_nanos + excluded.cost_nanos;
        INSERT INTO key_usage_totals AS t (key_id, requests, input_tokens, output_tokens, cost_nanos, last_used_ms, changed_ms)
            SELECT key_id, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cost_nanos), MAX(started_ms),
                   (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT
            FROM new_rows GROUP BY 1 ORDER BY 1
        ON CONFLICT (key_id) DO UPDATE SET
            requests = t.requests + excluded.requests,
            input_tokens = t.input_tokens + excluded.input_tokens,
            output_tokens = t.output_tokens + excluded.output_tokens,
            cost_nanos = t.cost_nanos + excluded.cost_nanos,
            last_used_ms = GREATEST(t.last_used_ms, excluded.last_used_ms),
            changed_ms = excluded.changed_ms;
        RETURN NULL;
    END
    $$;
