
    ALTER TABLE usage_records ADD COLUMN cache_write_5m_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_records ADD COLUMN cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_records ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_rollups ADD COLUMN cache_write_5m_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_rollups ADD COLUMN cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE usage_rollups ADD COLUMN reasoning_tokens INTEGER NOT NULL DEFAULT 0;
    DROP TRIGGER usage_rollups_integer_insert;
    DROP TRIGGER usage_rollups_integer_update;
    CREATE TRIGGER usage_rollups_integer_insert BEFORE INSERT ON usage_rollups
        WHEN typeof(NEW.input_tokens) <> 'integer' OR typeof(NEW.cached_input_tokens) <> 'integer' OR typeof(NEW.output_tokens) <> 'integer' OR typeof(NEW.cost_nanos) <> 'integer'
          OR typeof(NEW.cache_write_5m_tokens) <> 'integer' OR typeof(NEW.cache_write_1h_tokens) <> 'integer' OR typeof(NEW.reasoning_tokens) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    CREATE TRIGGER usage_rollups_integer_update BEFORE UPDATE ON usage_rollups
        WHEN typeof(NEW.input_tokens) <> 'integer' OR typeof(NEW.cached_input_tokens) <> 'integer' OR typeof(NEW.output_tokens) <> 'integer' OR typeof(NEW.cost_nanos) <> 'integer'
          OR typeof(NEW.cache_write_5m_tokens) <> 'integer' OR typeof(NEW.cache_write_1h_tokens) <> 'integer' OR typeof(NEW.reasoning_tokens) <> 'integer'
        BEGIN SELECT RAISE(ABORT, 'integer overflow'); END;
    
