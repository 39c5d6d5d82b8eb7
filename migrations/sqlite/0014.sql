
    CREATE TRIGGER usage_unposted_integer_insert BEFORE INSERT ON usage_unposted
        WHEN typeof(NEW.requests) <> 'integer' OR typeof(NEW.cost_nanos) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    CREATE TRIGGER usage_unposted_integer_update BEFORE UPDATE ON usage_unposted
        WHEN typeof(NEW.requests) <> 'integer' OR typeof(NEW.cost_nanos) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    CREATE TRIGGER ledger_totals_integer_insert BEFORE INSERT ON ledger_totals
        WHEN typeof(NEW.amount_nanos) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    CREATE TRIGGER ledger_totals_integer_update BEFORE UPDATE ON ledger_totals
        WHEN typeof(NEW.amount_nanos) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    CREATE TRIGGER key_usage_hourly_integer_insert BEFORE INSERT ON key_usage_hourly
        WHEN typeof(NEW.input_tokens) <> 'integer' OR typeof(NEW.output_tokens) <> 'integer' OR typeof(NEW.cost_nanos) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    CREATE TRIGGER key_usage_hourly_integer_update BEFORE UPDATE ON key_usage_hourly
        WHEN typeof(NEW.input_tokens) <> 'integer' OR typeof(NEW.output_tokens) <> 'integer' OR typeof(NEW.cost_nanos) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    CREATE TRIGGER key_usage_totals_integer_insert BEFORE INSERT ON key_usage_totals
        WHEN typeof(NEW.input_tokens) <> 'integer' OR typeof(NEW.output_tokens) <> 'integer' OR typeof(NEW.cost_nanos) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    CREATE TRIGGER key_usage_totals_integer_update BEFORE UPDATE ON key_usage_totals
        WHEN typeof(NEW.input_tokens) <> 'integer' OR typeof(NEW.output_tokens) <> 'integer' OR typeof(NEW.cost_nanos) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    CREATE TRIGGER usage_rollups_integer_insert BEFORE INSERT ON usage_rollups
        WHEN typeof(NEW.input_tokens) <> 'integer' OR typeof(NEW.cached_input_tokens) <> 'integer' OR typeof(NEW.output_tokens) <> 'integer' OR typeof(NEW.cost_nanos) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    CREATE TRIGGER usage_rollups_integer_update BEFORE UPDATE ON usage_rollups
        WHEN typeof(NEW.input_tokens) <> 'integer' OR typeof(NEW.cached_input_tokens) <> 'integer' OR typeof(NEW.output_tokens) <> 'integer' OR typeof(NEW.cost_nanos) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    